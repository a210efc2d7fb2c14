"""Approval deadlines (docs/deadlines.md): a run nobody decided in time is decided by its
deadline, so that no agent waits forever.

At `deadline_at` a run still waiting for a person is denied (the workflow's
`deadline_action` "deny", the default) or moved to the escalated queue with a fresh
deadline of the same length ("escalate"); a run the deadline escalated once is denied at
its next deadline. Either way no person is named: the decision says `by: "deadline"`
and a `deadline` event (actor "system") goes into the trace.

Three places apply it, all through `deadline_apply` under the run's row lock: the beat
sweep (traces.tasks.apply_deadlines, every 30 s), the agent's GET /runs/{id} (lazily, and
a long poll ends at the deadline), and a person's decision that arrives too late.
"""

import json
import uuid
from datetime import datetime, timedelta

from django.db import transaction
from django.utils import timezone

from ladder.durations import duration_text
from ladder.errors import Conflict
from ladder.rungs import DeadlineAction, Queue
from traces.models import Decider, Run, RunStatus, TraceEvent
from traces.services.trace import EventSpec, trace_append

BY_DEADLINE = "deadline"  # `decision.by` of a run the deadline decided
DEADLINE_PASSED = "deadline_passed"  # the error code a too-late decision gets
SWEEP_BATCH = 200


def deadline_due(run: Run, now: datetime | None = None) -> bool:
    """The run waits for a person and its deadline has passed (read as loaded, no lock)."""
    return (
        run.status == RunStatus.PENDING_REVIEW
        and run.deadline_at is not None
        and run.deadline_at <= (now or timezone.now())
    )


def decided_by_deadline(run: Run) -> bool:
    return (run.decision or {}).get("by") == BY_DEADLINE


def deadline_apply(*, run_id: uuid.UUID, now: datetime | None = None):
    """Decide one run by its deadline if it is due, under its row lock, in a transaction
    of its own: a caller that then refuses something (a late decision) keeps it.

    Returns the changed run, or None when there was nothing to do (not due, or decided
    meanwhile). The run's version is bumped, so a reviewer's open screen is stale.
    """
    now = now or timezone.now()
    with transaction.atomic():
        locked = (
            Run.objects.select_for_update(of=("self",))
            .select_related("workflow", "action_type")
            .filter(pk=run_id)
            .first()
        )
        if locked is None or not deadline_due(locked, now):
            return None
        _decide(locked, now)
    return locked


def _decide(locked: Run, now: datetime) -> None:
    """Deny or escalate a due run whose row lock the caller holds."""
    earlier = _earlier_escalation(locked)
    if earlier is None and locked.workflow.deadline_action == DeadlineAction.ESCALATE:
        _escalate(locked, now)
    else:
        _deny(locked, now, earlier)


def _earlier_escalation(run: Run) -> dict | None:
    """The `deadline` event of an earlier escalation by the deadline, if there was one:
    such a run is denied at its next deadline, never escalated again."""
    document = (
        TraceEvent.objects.filter(run_id=run.id, type=TraceEvent.Type.DEADLINE)
        .order_by("-seq")
        .values_list("document", flat=True)
        .first()
    )
    return None if document is None else json.loads(document)["payload"]


def _window(run: Run) -> int:
    # The run's own wait, as the gateway set it: a later change of the workflow's
    # setting does not rewrite what this run was promised.
    return round((run.deadline_at - run.created_at).total_seconds())


def _event(run: Run, now: datetime, passed: datetime, **payload) -> None:
    trace_append(
        run=run,
        specs=[
            EventSpec(
                TraceEvent.Type.DEADLINE,
                {
                    **payload,
                    "deadline_at": passed.isoformat(),
                    "waited_seconds": round((now - run.created_at).total_seconds()),
                },
                "system",
            )
        ],
        bump_version=True,
    )


def _deny(run: Run, now: datetime, earlier: dict | None) -> None:
    if earlier is None:
        window = _window(run)
        reason = f"no decision within {duration_text(window)}"
    else:
        window = int(earlier["window_seconds"])
        reason = (
            f"no decision within {duration_text(window)}, "
            f"nor in the {duration_text(window)} after it was escalated"
        )
    run.status = RunStatus.DENIED
    run.decision = {"verdict": "denied", "reason": reason, "by": BY_DEADLINE, "at": now.isoformat()}
    run.decided_at = now
    run.decider = Decider.DEADLINE
    run.save(update_fields=["status", "decision", "decided_at", "decider", "updated_at"])
    _event(run, now, run.deadline_at, outcome="denied", reason=reason, window_seconds=window)


def _escalate(run: Run, now: datetime) -> None:
    window = _window(run)
    reason = f"waited past the {duration_text(window)} deadline"
    if run.escalation_reason:  # escalated by the policy before: the reviewer keeps why
        reason += f" (escalated before: {run.escalation_reason})"
    passed = run.deadline_at
    run.queue = Queue.ESCALATED
    run.escalation_reason = reason[:300]
    run.deadline_at = now + timedelta(seconds=window)
    run.save(update_fields=["queue", "escalation_reason", "deadline_at", "updated_at"])
    _event(
        run,
        now,
        passed,
        outcome="escalated",
        reason=run.escalation_reason,
        window_seconds=window,
        next_deadline_at=run.deadline_at.isoformat(),
    )


def run_after_deadline(run: Run) -> Run:
    """The run as it stands once a due deadline was applied (lazily, on a read): the run
    itself when nothing was due."""
    if not deadline_due(run):
        return run
    applied = deadline_apply(run_id=run.pk)
    if applied is not None:
        return applied
    return Run.objects.select_related("workflow", "action_type").get(pk=run.pk)


def too_late(run: Run) -> Conflict:
    """What a person's decision that arrived after the run's deadline is told, once the
    deadline was applied (`run` as it stands now)."""
    if run.status == RunStatus.PENDING_REVIEW:
        message = (
            "the deadline passed; the run was escalated: reload to decide it in the escalated queue"
        )
    else:
        message = "the deadline passed; the run was denied"
    return Conflict(message, code=DEADLINE_PASSED)


def wait_seconds(run: Run, seconds: float, now: datetime | None = None) -> float:
    """A long poll on a waiting run ends at its deadline at the latest, so that the
    view reads the run again then and the agent is told what the deadline decided."""
    if run.status != RunStatus.PENDING_REVIEW or run.deadline_at is None:
        return seconds
    left = (run.deadline_at - (now or timezone.now())).total_seconds()
    return max(0.0, min(seconds, left))


def deadline_next(run: Run) -> str:
    """What the deadline will do to this waiting run: "denied" or "escalated"."""
    if run.workflow.deadline_action != DeadlineAction.ESCALATE:
        return "denied"
    return "denied" if _earlier_escalation(run) is not None else "escalated"


def runs_past_deadline(*, now: datetime, skipped=()):
    """Ids of the waiting runs whose deadline passed by `now`, earliest deadline first,
    but for `skipped`: a range scan of run_deadline_idx in its own order."""
    due = Run.objects.filter(status=RunStatus.PENDING_REVIEW, deadline_at__lte=now)
    if skipped:
        due = due.exclude(pk__in=list(skipped))
    return due.order_by("deadline_at").values_list("id", flat=True)


def deadlines_sweep(*, now: datetime | None = None, batch: int = SWEEP_BATCH) -> int:
    """Apply every due deadline (the beat task): `batch` runs at a time, each batch in one
    transaction (a commit per run cost more than deciding it), its rows locked with SKIP
    LOCKED. A row someone holds (a reviewer deciding that very run) is left to the next
    sweep or read; every decided or escalated run leaves the set that is read, so every
    batch makes progress. Returns how many runs the deadline denied or escalated."""
    now = now or timezone.now()
    applied = 0
    skipped: set[uuid.UUID] = set()
    while True:
        run_ids = list(runs_past_deadline(now=now, skipped=skipped)[:batch])
        with transaction.atomic():
            locked = list(
                Run.objects.select_for_update(of=("self",), skip_locked=True)
                .select_related("workflow", "action_type")
                .filter(pk__in=run_ids)
                .order_by("deadline_at")
            )
            for run in locked:
                if deadline_due(run, now):  # else decided since it was read: left alone
                    _decide(run, now)
                    applied += 1
        skipped.update(set(run_ids) - {run.pk for run in locked})
        if len(run_ids) < batch:
            return applied
