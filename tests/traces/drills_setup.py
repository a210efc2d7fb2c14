"""A refunds workflow whose refunds a server executor issues and reverses, and executed
runs made the way people make them: the agent API, then a reviewer's approval through the
review service the queue's forms call (tests/traces/test_drills*.py)."""

from approvals import services
from approvals.roles import role_grant
from ladder.models import ActionType
from tests.factories import UserFactory, WorkflowFactory
from traces.models import Run

REVERSE = "traces.demo_executors.refund_reverse"


def refunds_workflow(*, slug="refunds", reverse_path=REVERSE, rung=3):
    wf = WorkflowFactory(slug=slug, rung=rung)
    ActionType.objects.create(
        workflow=wf,
        name="refund.issue",
        value_param="amount",
        currency_param="currency",
        executor="server",
        executor_path="traces.demo_executors.refund_issue",
        reversible=True,
        compensating_action="refund.reverse",
        param_schema={"amount": {"type": "number", "required": True}},
    )
    ActionType.objects.create(
        workflow=wf, name="refund.reverse", executor="server", executor_path=reverse_path
    )
    people = {n: UserFactory(username=f"{slug}-{n}") for n in ("rev", "owner", "compliance")}
    role_grant(workflow=wf, user=people["rev"], role="reviewer", by=None)
    role_grant(workflow=wf, user=people["owner"], role="owner", by=None)
    role_grant(workflow=wf, user=people["compliance"], role="compliance", by=None)
    return wf, people


def refund_body(wf, key: str) -> dict:
    return {
        "workflow": wf.slug,
        "idempotency_key": key,
        "input": {"message": f"Refund request for order {key}, item damaged"},
        "proposal": {
            "action": "refund.issue",
            "params": {"amount": 20, "currency": "EUR", "order": key},
        },
    }


def approve(run_id, reviewer) -> None:
    run = Run.objects.select_related("workflow").get(pk=run_id)
    view = services.review_open(run=run, user=reviewer)
    services.review_decide(
        run=run,
        reviewer=reviewer,
        seen_hash=view.hash,
        seen_version=run.version,
        decision=services.Approval(approve=True),
    )
