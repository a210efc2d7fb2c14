"""Decisions by people (approvals calls run_decide): a waiting run becomes approved or
rejected exactly once, before its deadline, and an approved server action is queued for
execution."""

import uuid
from dataclasses import dataclass

from django.db import transaction
from django.db.models import F, OuterRef, Q, Subquery
from django.db.models.functions import Coalesce
from django.utils import timezone

from ladder.errors import Conflict, NotFound
from ladder.models import ActionType
from ladder.rungs import Executor
from traces.models import Decider, Run, RunStatus, TraceEvent
from traces.services.deadlines import DEADLINE_PASSED, decided_by_deadline
from traces.services.execution import execution_enqueue
from traces.services.trace import EventSpec, trace_append


@dataclass(frozen=True)
class DecisionInput:
    verdict: str  # "approved" | "rejected"
    action: str
    params: dict
    extra: dict  # what the review stored (edit distance, match, chosen option...)
    reason: str = ""


def run_decide(
    *,
    run_id: uuid.UUID,
    user_id: int,
    actor_name: str,
    seen_version: int,
    seen_hash: str,
    decision: DecisionInput,
) -> Run:
    """Move a waiting run to approved/rejected exactly once.

    The guarded UPDATE is the arbiter: it matches only while the run still waits, is
    still the version the reviewer saw and its deadline has not passed, so of two racing
    reviewers (or a reviewer and the deadline) exactly one wins. The loser learns who won
    (or that the run changed under them, or that the deadline passed: `deadline_passed`,
    and the caller applies the deadline, traces.services.deadlines).
    """
    now = timezone.now()
    stored = {
        "verdict": decision.verdict,
        "action": decision.action,
        "params": decision.params,
        "reason": decision.reason,
        "by": actor_name,
        "at": now.isoformat(),
        **decision.extra,
    }
    status = RunStatus.APPROVED if decision.verdict == "approved" else RunStatus.REJECTED
    extra = decision.extra
    # What is carried out is the decided action, by its own executor: a picked
    # alternative or a reviewer's own action of another type moves the run to that type,
    # in the same guarded UPDATE (the proposal's type stays in the trace's proposal event).
    decided_type = {}
    if status == RunStatus.APPROVED and decision.action:
        same_workflow = ActionType.objects.filter(
            workflow_id=OuterRef("workflow_id"), name=decision.action
        ).values("pk")[:1]
        decided_type = {"action_type_id": Coalesce(Subquery(same_workflow), F("action_type_id"))}
    with transaction.atomic():
        changed = (
            Run.objects.filter(pk=run_id, status=RunStatus.PENDING_REVIEW, version=seen_version)
            .filter(Q(deadline_at__isnull=True) | Q(deadline_at__gt=now))
            .update(
                **decided_type,
                status=status,
                decision=stored,
                decided_by_id=user_id,
                decided_at=now,
                decider=Decider.PERSON,
                light_edit=extra.get("light_edit") if extra.get("kind") == "draft" else None,
                matched=extra.get("matched") if extra.get("kind") == "pick" else None,
                version=F("version") + 1,
                updated_at=now,
            )
        )
        if changed != 1:
            _explain_lost_decision(run_id, now=now)
        run = (
            Run.objects.select_for_update(of=("self",))
            .select_related("action_type", "workflow")
            .get(pk=run_id)
        )
        trace_append(
            run=run,
            specs=[
                EventSpec(
                    TraceEvent.Type.REVIEW_DECISION,
                    {**stored, "seen_hash": seen_hash},
                    f"user:{user_id}",
                )
            ],
        )
        if (
            status == RunStatus.APPROVED
            and run.action_type
            and (run.action_type.executor == Executor.SERVER)
            # An attention probe is a known-wrong action: approving it shows a reviewer
            # missed it, and nothing is ever carried out (traces/services/probes.py).
            and not run.probe
        ):
            execution_enqueue(run_id=run_id)
    return run


def already_decided(run: Run) -> Conflict:
    """What a decision on a run that no longer waits is told: who decided it (a person,
    the policy, the deadline)."""
    if decided_by_deadline(run):
        return Conflict("the deadline passed; the run was denied", code=DEADLINE_PASSED)
    who = run.decided_by.get_username() if run.decided_by else "the system"
    return Conflict(
        f"already decided by {who} ({run.get_status_display().lower()})",
        code="already_decided",
        details={"decided_by": who, "status": run.status},
    )


def _explain_lost_decision(run_id: uuid.UUID, *, now) -> None:
    current = Run.objects.filter(pk=run_id).select_related("decided_by").first()
    if current is None:
        raise NotFound("no such run", code="unknown_run")
    if current.status != RunStatus.PENDING_REVIEW:
        raise already_decided(current)
    if current.deadline_at is not None and current.deadline_at <= now:
        raise Conflict("the deadline passed", code=DEADLINE_PASSED)
    raise Conflict(
        "this run changed since you opened it; reload to see the current version",
        code="stale_view",
    )
