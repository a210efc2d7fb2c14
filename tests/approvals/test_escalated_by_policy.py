"""An L4 run the policy escalates: a person sees why, decides, and the agent carries it out."""

import json

import pytest

from approvals.roles import role_grant
from tests.factories import ActionTypeFactory, WorkflowFactory
from traces.models import Run
from traces.services.policy import policy_set
from traces.services.tokens import token_create

pytestmark = pytest.mark.django_db

POLICY = {
    "audit_sample_rate": 0,
    "rules": [
        {"id": "refunds", "kind": "allow_actions", "actions": ["refund.issue"],
         "control": "allowed_tools"},
        {"id": "cap", "kind": "value_cap", "action": "refund.issue", "max": "200.00",
         "currency": "EUR", "then": "escalate", "control": "value_cap"},
    ],
}  # fmt: skip


def test_an_escalated_run_shows_its_reason_and_a_persons_approval_lets_the_agent_act(
    client, people, login, seen
):
    wf = WorkflowFactory(slug="l4-refunds", rung=4)
    ActionTypeFactory(workflow=wf, name="refund.issue")
    role_grant(workflow=wf, user=people["rev"], role="reviewer", by=None)
    policy_set(workflow=wf, document=POLICY, by=None)
    _token, raw = token_create(name="agent", workflows=[wf])
    headers = {"Authorization": f"Bearer {raw}"}
    body = {
        "workflow": wf.slug,
        "idempotency_key": "big-1",
        "input": {"message": "refund my broken TV please"},
        "proposal": {
            "action": "refund.issue",
            "params": {"order_id": "A-9", "amount": "450.00", "currency": "EUR"},
        },
    }
    answer = client.post(
        "/api/v1/runs", json.dumps(body), content_type="application/json", headers=headers
    ).json()
    assert answer["status"] == "pending_review" and answer["queue"] == "escalated"
    run = Run.objects.get(pk=answer["id"])

    reviewer = login(people["rev"])
    queue = reviewer.get("/").content.decode()
    assert answer["id"] in queue
    page = reviewer.get(f"/runs/{run.id}/").content.decode()
    assert "Escalated:" in page and "refund.issue above 200.00 EUR" in page
    decided = reviewer.post(f"/runs/{run.id}/decide", {**seen(run), "verdict": "approve"})
    assert decided.status_code in (200, 302)

    now = client.get(f"/api/v1/runs/{run.id}", headers=headers).json()
    assert now["status"] == "approved" and now["decision"]["verdict"] == "approved"
    assert now["policy"]["outcome"] == "escalate"  # the policy's word stays on record
    claimed = client.post(f"/api/v1/runs/{run.id}/claim", headers=headers)
    assert claimed.status_code == 200 and claimed.json()["status"] == "executing"
    replay = client.get(f"/api/v1/runs/{run.id}/replay", headers=headers).json()
    assert replay["complete"] and replay["verified"]
    assert replay["run"]["policy"]["decision"] == "escalate"
    assert replay["run"]["decision"]["verdict"] == "approved"
