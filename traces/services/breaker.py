"""The breaker, checked on every execution result, outcome label and audit verdict of an
L4/L5 workflow (docs/breaker.md): the counting; the bounds are ladder/breaker.py.

A check runs once the write that called it commits, in the same request or task, so the
agent's very next submission already meets the lower rung: the demotion is a guarded
rung change (ladder.services.rung_change) whose rules_version bump reaches every gateway
process. Of results racing, exactly one demotes; the others find the rung moved.
"""

import logging

from django.db import transaction

from ladder import breaker, gates
from ladder.errors import Conflict
from ladder.models import Alert, RungChange, Workflow
from ladder.notify import notify
from ladder.rungs import Rung
from ladder.services import rung_change, rung_since_many
from traces.models import Run
from traces.status import FINISHED_STATUSES

log = logging.getLogger(__name__)


def breaker_window(*, workflow: Workflow, size: int) -> breaker.Window:
    """The latest `size` executed runs handled at the workflow's current rung since that
    rung began, by decision time (the run_gate_idx range, newest first)."""
    since = rung_since_many(workflows=[workflow])[workflow.pk]
    rows = list(
        Run.objects.filter(
            workflow_id=workflow.pk,
            rung=workflow.rung,
            decided_at__gte=since,
            status__in=sorted(FINISHED_STATUSES),
            probe=False,
        )
        .order_by("-decided_at")
        .values_list("status", "outcome", "audit", "replay_ok")[:size]
    )
    failures = sum(
        1 for status, outcome, audit, _ in rows if status == "failed" or "wrong" in (outcome, audit)
    )
    checked = [ok for *_, ok in rows if ok is not None]
    return breaker.Window(
        executed=len(rows), failures=failures, replay_checked=len(checked), replay_ok=sum(checked)
    )


def breaker_check_later(*, run: Run) -> None:
    """Check the breaker of the run's workflow once the current transaction commits. A
    run handled below L4 is never in a breaker's window: nothing to check."""
    if breaker.demoted_rung(run.rung) is None:
        return
    workflow_id = run.workflow_id
    transaction.on_commit(lambda: breaker_check(workflow_id=workflow_id))


def breaker_check(*, workflow_id: int) -> RungChange | None:
    """Judge the workflow's latest executions against its bounds; demote it one rung when
    one breaks. Returns the rung change, or None (below L4, within bounds, or another
    check demoted it first). Never raises: a result already stored stays stored."""
    try:
        workflow = Workflow.objects.get(pk=workflow_id)
        if breaker.demoted_rung(workflow.rung) is None:
            return None
        bounds = breaker.bounds_for(workflow.breaker_bounds)
        window = breaker_window(workflow=workflow, size=bounds["window_runs"])
        trip = breaker.judge(window, bounds)
        if trip is None:
            return None
        return breaker_trip(workflow=workflow, trip=trip)
    except Exception:
        log.exception("breaker check of workflow %s failed", workflow_id)
        return None


def breaker_check_all() -> list[RungChange]:
    """Check every L4/L5 workflow's breaker (the nightly task)."""
    ids = Workflow.objects.filter(rung__gte=Rung.L4).values_list("pk", flat=True)
    return [change for pk in ids if (change := breaker_check(workflow_id=pk)) is not None]


def breaker_trip(*, workflow: Workflow, trip: breaker.Trip) -> RungChange | None:
    """Drop the workflow one rung for `trip`, record why with its numbers, and tell its
    people. None when it is below L4 or its rung moved meanwhile (a racing trip won)."""
    to_rung = breaker.demoted_rung(workflow.rung)
    if to_rung is None:
        return None
    evidence = {"cause": "breaker", "breaker": trip.bound, **trip.evidence}
    try:
        with transaction.atomic():
            change = rung_change(
                workflow=workflow,
                from_rung=workflow.rung,
                to_rung=to_rung,
                kind=RungChange.Kind.DEMOTION,
                reason=f"breaker tripped: {trip.reason}",
                evidence=evidence,
                actor=None,
            )
            notify(
                workflow=workflow,
                kind=Alert.Kind.DEMOTION,
                subject=f"{workflow.name} dropped to L{to_rung}: the breaker tripped",
                body=(
                    f"The breaker moved {workflow.name} from L{change.from_rung} to "
                    f"L{to_rung}: {trip.reason}. From now on "
                    + (
                        "a person approves each action"
                        if to_rung == Rung.L3
                        else "it runs under its policy with humans on exceptions at L4"
                    )
                    + ". Promotion back goes through the gates again."
                ),
                evidence=evidence,
            )
    except Conflict:  # another result demoted it first
        return None
    log.warning("workflow %s demoted to L%s: %s", workflow.slug, to_rung, trip.reason)
    return change


def eval_check(*, workflow: Workflow, age_days: float | None, matched: int, total: int):
    """L5's continuous evals (the nightly task and each eval pass call this)."""
    bounds = breaker.bounds_for(workflow.breaker_bounds)
    # The eval bar the workflow climbed L2 -> L3 on (the bar its eval passes are held to).
    bar = gates.thresholds_for(
        target_rung=Rung.L3, risk_class=workflow.risk_class, overrides=workflow.gate_thresholds
    )["eval_match_rate"]
    trip = breaker.judge_evals(
        rung=workflow.rung,
        age_days=age_days,
        matched=matched,
        total=total,
        bar=bar,
        bounds=bounds,
    )
    return breaker_trip(workflow=workflow, trip=trip) if trip else None
