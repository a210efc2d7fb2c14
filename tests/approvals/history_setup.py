"""The history tests' runs: every field the history's filters read, varied."""

from datetime import UTC, datetime, timedelta

from approvals.roles import role_grant
from ladder.models import ActionType
from tests.factories import UserFactory, WorkflowFactory
from traces.models import Run

T0 = datetime(2026, 10, 1, 12, 0, tzinfo=UTC)


def make_run(workflow, *, n, at, action=None, **fields) -> Run:
    run = Run.objects.create(
        workflow=workflow,
        idempotency_key=f"h-{workflow.slug}-{n}",
        request_hash="0" * 64,
        rung=fields.pop("rung", workflow.rung),
        status=fields.pop("status", "executed"),
        action_type=action,
        summary=fields.pop("summary", f"run {n}"),
        **fields,
    )
    # created_at is auto_now_add: the history's order and date filters need set times.
    Run.objects.filter(pk=run.pk).update(created_at=at)
    run.refresh_from_db()
    return run


def build_world(people, flows):
    """Runs of the three flows (every field the filters read varied), and a workflow
    nobody of `people` holds a role on."""
    other = WorkflowFactory(slug="elsewhere", rung=3)
    outsider = UserFactory(username="outsider")
    role_grant(workflow=other, user=outsider, role="owner", by=None)
    act = {
        "reply": ActionType.objects.get(workflow=flows["l1"], name="reply.send"),
        "refund": ActionType.objects.get(workflow=flows["l3"], name="refund.issue"),
        "voucher": ActionType.objects.get(workflow=flows["l2"], name="voucher.issue"),
    }
    rev, rev2 = people["rev"], people["rev2"]
    runs = {
        "draft_by_rev": make_run(
            flows["l1"],
            n=1,
            at=T0,
            action=act["reply"],
            rung=1,
            status="executed",
            decider="person",
            decided_by=rev,
            decided_at=T0,
            outcome="correct",
        ),
        "pick_by_rev2": make_run(
            flows["l2"],
            n=2,
            at=T0 + timedelta(days=1),
            action=act["voucher"],
            rung=2,
            status="approved",
            decider="person",
            decided_by=rev2,
            decided_at=T0,
        ),
        "failed_policy": make_run(
            flows["l3"],
            n=3,
            at=T0 + timedelta(days=2),
            action=act["refund"],
            rung=4,
            status="failed",
            decider="policy",
            decided_at=T0,
        ),
        "wrong_outcome": make_run(
            flows["l3"],
            n=4,
            at=T0 + timedelta(days=3),
            action=act["refund"],
            rung=3,
            status="executed",
            decider="person",
            decided_by=rev,
            decided_at=T0,
            outcome="wrong",
        ),
        "audit_wrong": make_run(
            flows["l3"],
            n=5,
            at=T0 + timedelta(days=4),
            action=act["refund"],
            rung=4,
            status="executed",
            decider="policy",
            decided_at=T0,
            audit="wrong",
        ),
        "by_deadline": make_run(
            flows["l3"],
            n=6,
            at=T0 + timedelta(days=5),
            action=act["refund"],
            rung=3,
            status="rejected",
            decider="deadline",
            decided_at=T0,
        ),
        "waiting": make_run(
            flows["l3"],
            n=7,
            at=T0 + timedelta(days=6),
            action=act["refund"],
            rung=3,
            status="pending_review",
        ),
        "elsewhere": make_run(other, n=8, at=T0 + timedelta(days=2), rung=3, status="executed"),
    }
    return {"runs": runs, "other": other, "outsider": outsider}


def ids(world, *names) -> set[str]:
    return {str(world["runs"][name].id) for name in names}


MINE = ("draft_by_rev", "pick_by_rev2", "failed_policy", "wrong_outcome", "audit_wrong",
        "by_deadline", "waiting")  # fmt: skip
