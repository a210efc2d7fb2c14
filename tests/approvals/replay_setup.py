"""Runs whose traces hold every kind of step, made through the services the app uses:
the gateway, the stop button, the deadline, the review screen and its decision, the
server executor, the agent's outcome label and a rollback drill
(tests/approvals/test_replay_readable.py, tests/browser/test_replay_page.py)."""

from ladder.services import workflow_stop
from tests.traces.drills_setup import approve, refunds_workflow
from traces.auth import authenticate
from traces.models import Run
from traces.services import drills
from traces.services.agent import run_record_outcome
from traces.services.deadlines import deadline_apply
from traces.services.gateway import run_submit
from traces.services.policy import policy_set
from traces.services.stop import workflow_resume_release
from traces.services.tokens import token_create

# Refunds up to 200 EUR go through; above, a person decides.
POLICY = {
    "audit_sample_rate": 0,
    "rules": [
        {"id": "actions", "kind": "allow_actions", "actions": ["refund.issue"],
         "control": "allowed_tools"},
        {"id": "cap", "kind": "value_cap", "action": "refund.issue", "max": "200.00",
         "currency": "EUR", "then": "escalate", "control": "value_cap"},
    ],
}  # fmt: skip

DEADLINE_SECONDS = 3600


def refund_request(wf, key: str, amount=500) -> dict:
    return {
        "workflow": wf.slug,
        "idempotency_key": key,
        "input": {"message": f"Order {key} arrived broken, I want my money back"},
        "tool_calls": [
            {"name": "orders.lookup", "arguments": {"order": key}, "result": {"paid": amount}}
        ],
        "output": "The order was paid in full; a refund fits the policy.",
        "proposal": {
            "action": "refund.issue",
            "summary": f"Refund order {key} in full",
            "params": {"amount": amount, "currency": "EUR", "order": key},
        },
    }


def every_step_run(*, capture, clock, slug: str = "refunds") -> tuple[Run, dict]:
    """An L4 refund that meets every kind of step: it arrives while the workflow is
    stopped (hold), the resume hands it to the policy (policy_decision: escalate, over the
    cap), its deadline passes (deadline: escalated again), a reviewer opens and approves
    it (review_shown, review_decision), the server executes it (execution), the agent
    labels it (outcome) and a drill reverses it (rollback). Returns (run, people)."""
    wf, people = refunds_workflow(slug=slug, rung=4)
    wf.name = "Refunds"
    wf.deadline_action = "escalate"
    wf.review_deadline_seconds = DEADLINE_SECONDS
    wf.save(update_fields=["name", "deadline_action", "review_deadline_seconds"])
    policy_set(workflow=wf, document=POLICY, by=None)
    _token, raw = token_create(name="refund agent", workflows=[wf])
    auth = authenticate(raw)

    workflow_stop(workflow=wf, actor=people["owner"], reason="Checking the payment provider")
    run, _ = run_submit(auth=auth, body=refund_request(wf, "A-1001"))
    with capture(execute=True):
        workflow_resume_release(workflow=wf, actor=people["owner"], reason="Provider fixed")
    clock.advance(DEADLINE_SECONDS + 60)
    deadline_apply(run_id=run.pk)
    with capture(execute=True):
        approve(run.pk, people["rev"])
    run = Run.objects.get(pk=run.pk)
    run_record_outcome(actor=auth.actor, run=run, label="correct", source="customer survey")
    with capture(execute=True):
        drills.drill_start(workflow=wf, batch=1, actor=people["owner"])
    return Run.objects.select_related("workflow").get(pk=run.pk), people


def shadow_run(*, slug: str = "refunds-l3") -> tuple[Run, dict]:
    """An L3 refund with a draft policy: the draft judges it in shadow (policy_shadow);
    the run waits for a reviewer."""
    wf, people = refunds_workflow(slug=slug, rung=3)
    policy_set(workflow=wf, document=POLICY, by=None)
    _token, raw = token_create(name="refund agent", workflows=[wf])
    run, _ = run_submit(auth=authenticate(raw), body=refund_request(wf, "B-2002", amount=120))
    return Run.objects.select_related("workflow").get(pk=run.pk), people
