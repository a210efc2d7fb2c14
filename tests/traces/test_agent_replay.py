"""The agent's replay shows what was decided, never who decided it; the people's replay
page keeps the names (security review, finding 10)."""

import json

import pytest

from approvals import services as approvals
from approvals.review import snapshot_hash
from approvals.roles import role_grant
from tests.factories import UserFactory
from traces.models import Run, TraceEvent
from traces.selectors import replay_for_agent, run_replay

pytestmark = pytest.mark.django_db

REVIEWER_NAME = "ana.reviewer"


def _decided_run(make_workflow, agent, client, *, verdict="approve", reason=""):
    wf = make_workflow(rung=3)
    person = UserFactory(username=REVIEWER_NAME)
    role_grant(workflow=wf, user=person, role="reviewer")
    a = agent(wf)
    run_id = a.post(
        "/runs",
        {
            "workflow": wf.slug,
            "idempotency_key": "r-1",
            # The agent's own data may use any key, "by" included: it stays as sent.
            "input": {"message": "refund A-1", "by": "the customer"},
            "proposal": {"action": "refund.issue", "params": {"order_id": "A-1", "amount": 5}},
        },
    ).json()["id"]
    client.force_login(person)
    assert client.get(f"/runs/{run_id}/").status_code == 200  # writes review_shown
    fresh = Run.objects.select_related("workflow").get(pk=run_id)
    resp = client.post(
        f"/runs/{run_id}/decide",
        {
            "verdict": verdict,
            "reason": reason,
            "seen_version": fresh.version,
            "seen_hash": snapshot_hash(approvals.run_snapshot(run=fresh)),
        },
    )
    assert resp.status_code == 302
    return a, run_id, person


def test_the_agents_replay_names_no_reviewer_but_keeps_the_decision(make_workflow, agent, client):
    a, run_id, person = _decided_run(make_workflow, agent, client)
    resp = a.get(f"/runs/{run_id}/replay")
    assert resp.status_code == 200
    text = resp.content.decode()
    assert REVIEWER_NAME not in text
    assert f"user:{person.pk}" not in text
    data = resp.json()
    assert data["verified"] is True and data["complete"] is True
    rebuilt = data["run"]
    assert rebuilt["approver"] == "reviewer"
    assert rebuilt["decision"]["by"] == "reviewer"
    assert rebuilt["decision"]["verdict"] == "approved"
    assert rebuilt["decision"]["params"] == {"order_id": "A-1", "amount": 5}
    assert [shown["by"] for shown in rebuilt["shown"]] == ["reviewer"]
    assert rebuilt["input"] == {"message": "refund A-1", "by": "the customer"}
    stored = TraceEvent.objects.filter(run_id=run_id).count()
    assert len(data["steps"]) == stored
    people_steps = [s for s in data["steps"] if s["type"] in ("review_shown", "review_decision")]
    assert [s["actor"] for s in people_steps] == ["reviewer", "reviewer"]
    assert all(s["payload"]["by"] == "reviewer" for s in people_steps)


def test_a_rejection_reaches_the_agent_with_its_reason_and_without_a_name(
    make_workflow, agent, client
):
    a, run_id, _ = _decided_run(
        make_workflow, agent, client, verdict="reject", reason="order was never paid"
    )
    data = a.get(f"/runs/{run_id}/replay").json()
    assert REVIEWER_NAME not in json.dumps(data)
    assert data["run"]["decision"]["verdict"] == "rejected"
    assert data["run"]["decision"]["reason"] == "order was never paid"


def test_the_peoples_replay_page_still_names_the_reviewer(make_workflow, agent, client):
    _, run_id, _ = _decided_run(make_workflow, agent, client)
    page = client.get(f"/runs/{run_id}/replay")
    assert page.status_code == 200
    assert REVIEWER_NAME in page.content.decode()
    assert run_replay(run=Run.objects.get(pk=run_id))["run"]["approver"] == REVIEWER_NAME


def test_get_run_tells_the_agent_the_decision_without_the_reviewer(make_workflow, agent, client):
    a, run_id, person = _decided_run(make_workflow, agent, client)
    text = a.get(f"/runs/{run_id}").content.decode()
    assert REVIEWER_NAME not in text and f"user:{person.pk}" not in text
    assert json.loads(text)["decision"]["verdict"] == "approved"


def test_masking_is_computed_after_the_verdicts_and_touches_only_people():
    replay = {
        "id": "r",
        "verified": False,
        "complete": True,
        "missing": [],
        "problems": [{"seq": 2, "problem": "hash mismatch"}],
        "run": {
            "input": {"by": "agent data"},
            "proposal": {"action": "x", "params": {"reviewer": "agent data"}},
            "decision": {"verdict": "approved", "by": "bob", "decided_by": "bob"},
            "approver": "bob",
            "shown": [{"by": "bob", "hash": "h"}],
            "policy": None,
        },
        "steps": [
            {"seq": 1, "actor": "agent:lat_x", "payload": {"by": "agent data"}},
            {"seq": 2, "actor": "user:7", "payload": {"by": "bob", "hash": "h"}},
            {"seq": 3, "actor": "system", "payload": {"decision": "escalate"}},
        ],
    }
    masked = replay_for_agent(replay)
    assert "bob" not in json.dumps(masked) and "user:7" not in json.dumps(masked)
    assert masked["verified"] is False and masked["problems"] == replay["problems"]
    assert masked["run"]["input"] == {"by": "agent data"}
    assert masked["run"]["proposal"]["params"] == {"reviewer": "agent data"}
    assert masked["run"]["decision"] == {
        "verdict": "approved",
        "by": "reviewer",
        "decided_by": "reviewer",
    }
    assert masked["steps"][0] == replay["steps"][0]
    assert masked["steps"][1]["actor"] == "reviewer"
    assert masked["steps"][2] == replay["steps"][2]
    assert replay["run"]["approver"] == "bob"  # the input is not changed in place
