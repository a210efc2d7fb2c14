"""The audit queue: runs the policy allowed, sampled at its audit rate and carried out,
marked correct or wrong by a reviewer. Runs go through the real gateway and the agent's
claim and result; marks through the audit screen's form."""

import json
import re

import pytest

from approvals.roles import role_grant
from tests.factories import UserFactory
from traces.models import Run, TraceEvent
from traces.services.policy import policy_set

pytestmark = pytest.mark.django_db

ENVELOPE = {
    "audit_sample_rate": 1,
    "rules": [
        {
            "id": "actions",
            "kind": "allow_actions",
            "actions": ["refund.issue"],
            "control": "allowed_tools",
        },
        {
            "id": "cap",
            "kind": "value_cap",
            "action": "refund.issue",
            "max": "200.00",
            "currency": "EUR",
            "then": "escalate",
            "control": "value_cap",
        },
    ],
}


@pytest.fixture
def l4(make_workflow, people):
    wf = make_workflow(rung=4, slug="auto-refunds", name="Auto refunds")
    policy_set(workflow=wf, document=ENVELOPE, by=None)
    role_grant(workflow=wf, user=people["rev"], role="reviewer", by=None)
    role_grant(workflow=wf, user=people["owner"], role="owner", by=None)
    return wf


@pytest.fixture
def executed(l4, agent):
    """`executed(key, amount, succeeded=True)`: an allowed run the agent claimed and
    reported on, as the API tells it."""
    client = agent(l4)

    def run(key, amount="20.00", *, succeeded=True):
        answer = client.post(
            "/runs",
            {
                "workflow": l4.slug,
                "idempotency_key": key,
                "input": {"message": f"refund order {key}"},
                "proposal": {
                    "action": "refund.issue",
                    "params": {"order_id": key, "amount": amount, "currency": "EUR"},
                },
            },
        ).json()
        assert answer["status"] == "approved", answer
        assert client.post(f"/runs/{answer['id']}/claim").status_code == 200
        report = {"status": "succeeded", "output": {"refund_id": f"R-{key}"}}
        if not succeeded:
            report = {"status": "failed", "error": "bank said no"}
        assert client.post(f"/runs/{answer['id']}/result", report).status_code == 200
        return answer["id"]

    run.client = client
    return run


def audit_rows(page: str) -> list[str]:
    return re.findall(r'data-href="/audit/([0-9a-f-]+)/"', page)


def menu_count(page: str) -> str | None:
    found = re.search(r'<a href="/audit/">Audit <span class="count">([^<]*)</span>', page)
    return found.group(1) if found else None


def test_an_executed_sampled_run_waits_in_the_audit_queue_oldest_first(
    l4, executed, agent, people, login
):
    waiting = (
        agent(l4)
        .post(
            "/runs",
            {
                "workflow": l4.slug,
                "idempotency_key": "not-done",
                "input": {"message": "refund"},
                "proposal": {
                    "action": "refund.issue",
                    "params": {"order_id": "B", "amount": 5, "currency": "EUR"},
                },
            },
        )
        .json()
    )
    assert waiting["status"] == "approved"  # allowed and sampled, not carried out yet
    first = executed("a-1")
    second = executed("a-2", succeeded=False)
    client = login(people["rev"])
    page = client.get("/audit/").content.decode()
    assert audit_rows(page) == [first, second]  # failed executions are audited too
    assert waiting["id"] not in page
    assert menu_count(page) == "2"


def test_the_audit_screen_shows_the_action_the_policy_and_the_result(executed, people, login, l4):
    run_id = executed("s-1", amount="150.00")
    page = login(people["rev"]).get(f"/audit/{run_id}/").content.decode()
    assert "<b>refund.issue</b>" in page
    assert "&quot;amount&quot;: &quot;150.00&quot;" in page
    assert "150.00 EUR" in page
    assert "Version <b>1</b>; no rule fired." in page
    assert "refund.issue above 200.00 EUR always goes to a person" in page
    assert "R-s-1" in page  # the execution result
    assert 'value="correct"' in page and 'value="wrong"' in page


def test_marking_correct_records_an_audit_outcome_once(executed, people, login):
    run_id = executed("c-1")
    client = login(people["rev"])
    done = client.post(f"/audit/{run_id}/", {"label": "correct", "note": "looks right"})
    assert done.status_code == 302 and done["Location"] == "/audit/"
    run = Run.objects.get(pk=run_id)
    assert (run.audit, run.outcome) == ("correct", "correct")
    outcome = TraceEvent.objects.get(run_id=run_id, type="outcome")
    assert outcome.actor == f"user:{people['rev'].pk}"
    assert outcome.payload == {
        "label": "correct",
        "source": "audit",
        "note": "looks right",
        "by": people["rev"].pk,
    }
    page = client.get("/audit/").content.decode()
    assert audit_rows(page) == [] and menu_count(page) == "0"

    again = client.post(f"/audit/{run_id}/", {"label": "wrong", "note": "changed my mind"})
    assert again.status_code == 409
    assert "this run was already audited: marked correct" in again.content.decode()
    run.refresh_from_db()
    assert (run.audit, run.outcome) == ("correct", "correct")
    assert TraceEvent.objects.filter(run_id=run_id, type="outcome").count() == 1


def test_wrong_needs_a_note_and_makes_the_run_a_silent_failure(executed, people, login):
    run_id = executed("w-1")
    client = login(people["rev"])
    refused = client.post(f"/audit/{run_id}/", {"label": "wrong", "note": "  "})
    assert refused.status_code == 422
    assert "say what was wrong" in refused.content.decode()
    assert Run.objects.get(pk=run_id).audit == "due"

    marked = client.post(f"/audit/{run_id}/", {"label": "wrong", "note": "refunded twice"})
    assert marked.status_code == 302
    run = Run.objects.get(pk=run_id)
    assert (run.status, run.audit, run.outcome) == ("executed", "wrong", "wrong")

    # The agent learns the label, never who gave it.
    got = executed.client.get(f"/runs/{run_id}").json()
    assert got["outcome"] == "wrong"
    replay = executed.client.get(f"/runs/{run_id}/replay").json()
    assert replay["complete"] and replay["verified"]
    assert replay["run"]["outcome"] == "wrong"
    step = next(s for s in replay["steps"] if s["type"] == "outcome")
    assert step["actor"] == "reviewer"
    assert step["payload"] == {
        "label": "wrong",
        "source": "audit",
        "note": "refunded twice",
        "by": "reviewer",
    }
    assert replay["run"]["outcomes"][0]["by"] == "reviewer"
    assert f"user:{people['rev'].pk}" not in json.dumps(replay)
    assert f'"by": {people["rev"].pk}' not in json.dumps(replay)


def test_an_unknown_mark_is_refused(executed, people, login):
    run_id = executed("u-1")
    resp = login(people["rev"]).post(f"/audit/{run_id}/", {"label": "maybe"})
    assert resp.status_code == 422
    assert "mark the action correct or wrong" in resp.content.decode()
    assert Run.objects.get(pk=run_id).audit == "due"


def test_audits_of_other_workflows_are_not_found(executed, people, login, flows):
    run_id = executed("x-1")
    other = UserFactory(username="other-reviewer")
    role_grant(workflow=flows["l3"], user=other, role="reviewer", by=None)
    client = login(other)
    assert client.get(f"/audit/{run_id}/").status_code == 404
    assert client.post(f"/audit/{run_id}/", {"label": "correct"}).status_code == 404
    assert run_id not in client.get("/audit/").content.decode()
    assert Run.objects.get(pk=run_id).audit == "due"
    # An owner who does not review the workflow does not audit it either.
    assert login(people["owner"]).get(f"/audit/{run_id}/").status_code == 404


def test_a_run_that_was_not_sampled_has_no_audit(l4, agent, people, login):
    unsampled = dict(ENVELOPE, audit_sample_rate=0)
    policy_set(workflow=l4, document=unsampled, by=None)
    client = agent(l4)
    answer = client.post(
        "/runs",
        {
            "workflow": l4.slug,
            "idempotency_key": "n-1",
            "input": {"message": "refund"},
            "proposal": {
                "action": "refund.issue",
                "params": {"order_id": "B", "amount": 5, "currency": "EUR"},
            },
        },
    ).json()
    client.post(f"/runs/{answer['id']}/claim")
    client.post(f"/runs/{answer['id']}/result", {"status": "succeeded"})
    assert login(people["rev"]).get(f"/audit/{answer['id']}/").status_code == 404


def test_the_menu_shows_the_audit_queue_to_reviewers_only(executed, people, login, flows):
    executed("m-1")
    assert menu_count(login(people["rev"]).get("/").content.decode()) == "1"
    only_owner = UserFactory(username="just-owner")
    role_grant(workflow=flows["l3"], user=only_owner, role="owner", by=None)
    page = login(only_owner).get("/").content.decode()
    assert 'href="/audit/"' not in page
