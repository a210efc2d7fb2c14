"""Drift checks of L4/L5 workflows (docs/drift.md): the counting; the statistics and the
bounds are ladder/drift.py.

A check compares the runs of a recent window with those of a baseline window before it,
stores a `ladder.DriftCheck` (append-only), and on a breach raises a drift alert (the
workflow page and the owners' mail) and, where the workflow's breaker bounds say
`drift_trips`, trips the breaker (one rung down). At L5 it also holds the workflow to
continuous evals (traces/services/breaker.py eval_check).

`manage.py drift_check` and the nightly beat task check every L4/L5 workflow; owners and
compliance check one on demand from its page.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import Count as DbCount
from django.db.models import Q
from django.utils import timezone

from ladder import breaker, drift
from ladder.gates import Count
from ladder.models import Alert, DriftCheck, Workflow
from ladder.notify import notify
from ladder.rungs import AuditState, Rung
from ladder.services import rung_since_many
from traces.evals import eval_tallies_many
from traces.models import Run
from traces.selectors import drift_check_latest
from traces.services.breaker import breaker_trip, eval_check

log = logging.getLogger(__name__)


def _runs(workflow: Workflow, start: datetime, end: datetime):
    """The window's runs: handled at L4 or L5, submitted in [start, end), no probes."""
    return Run.objects.filter(
        workflow_id=workflow.pk,
        rung__gte=Rung.L4,
        created_at__gte=start,
        created_at__lt=end,
        probe=False,
    ).order_by()


def drift_window(*, workflow: Workflow, start: datetime, end: datetime) -> drift.DriftWindow:
    """One window's figures (docs/drift.md, "What is counted"): three queries."""
    runs = _runs(workflow, start, end)
    actions = dict(
        runs.filter(action_type__isnull=False)
        .values_list("action_type__name")
        .annotate(n=DbCount("pk"))
        .values_list("action_type__name", "n")
    )
    values = tuple(
        float(v) for v in runs.filter(value__isnull=False).values_list("value", flat=True)
    )
    figures = runs.aggregate(
        decided=DbCount("pk", filter=Q(policy__isnull=False)),
        escalated=DbCount("pk", filter=Q(policy__outcome="escalate")),
        audited=DbCount("pk", filter=Q(audit__in=[AuditState.CORRECT, AuditState.WRONG])),
        correct=DbCount("pk", filter=Q(audit=AuditState.CORRECT)),
    )
    return drift.DriftWindow(
        actions=actions,
        values=values,
        escalation=Count(k=figures["escalated"], n=figures["decided"]),
        audit=Count(k=figures["correct"], n=figures["audited"]),
    )


def drift_windows(
    *, workflow: Workflow, bounds: dict, since: datetime, now: datetime
) -> tuple[tuple[datetime, datetime], tuple[datetime, datetime]]:
    """(baseline, recent) as [start, end) pairs. The recent window is the last
    `recent_days`, but never before the current rung began: after a demotion or a
    promotion the runs judged before it are not judged again at the new rung. The
    baseline is the `baseline_days` just before the last `recent_days`."""
    recent_from = now - timedelta(days=bounds["recent_days"])
    baseline = (recent_from - timedelta(days=bounds["baseline_days"]), recent_from)
    recent = (min(max(recent_from, since), now), now)
    return baseline, recent


def _repeats(previous: DriftCheck | None, check: DriftCheck) -> bool:
    """The same breach as the previous check at the same rung: its alert already stands,
    so the nightly task does not mail the same news every night."""
    if previous is None or not previous.breached or previous.rung != check.rung:
        return False
    names = {c["name"] for c in check.breached_checks}
    return names == {c["name"] for c in previous.breached_checks}


def _alert(workflow: Workflow, check: DriftCheck, result: drift.DriftResult, trips: bool) -> None:
    breaches = result.breaches()
    labels = ", ".join(c.label.lower() for c in breaches)
    notify(
        workflow=workflow,
        kind=Alert.Kind.DRIFT,
        subject=f"{workflow.name} drifted at L{check.rung}: {labels}",
        body=(
            f"The drift check of {workflow.name} at L{check.rung} compared the runs of "
            f"{check.recent_start:%Y-%m-%d %H:%M} to {check.recent_end:%Y-%m-%d %H:%M} UTC "
            f"with those of {check.baseline_start:%Y-%m-%d} to "
            f"{check.baseline_end:%Y-%m-%d %H:%M} UTC.\n\n"
            + "\n".join(f"- {c.label}: {c.sentence}" for c in breaches)
            + "\n\n"
            + (
                "The workflow's breaker bounds say drift trips the breaker: it drops one rung."
                if trips
                else "The workflow stays on its rung (its breaker bounds do not make drift "
                "trip the breaker); an owner or compliance user may demote it by hand."
            )
        ),
        evidence={
            "drift_check": check.pk,
            "breached": [c.name for c in breaches],
            "checks": {c.name: {"value": c.value, "bound": c.bound} for c in breaches},
        },
    )


def _trip(workflow: Workflow, check: DriftCheck, result: drift.DriftResult) -> breaker.Trip:
    breaches = result.breaches()
    return breaker.Trip(
        bound="drift",
        reason="drift check: " + "; ".join(f"{c.label.lower()}: {c.sentence}" for c in breaches),
        evidence={
            "drift_check": check.pk,
            "breached": [c.name for c in breaches],
            "checks": {c.name: {"value": c.value, "bound": c.bound} for c in breaches},
        },
    )


def drift_check(
    *,
    workflow: Workflow,
    trigger: str,
    by=None,
    now: datetime | None = None,
) -> DriftCheck | None:
    """Check one workflow now: store the check, alert on a breach (not again for the same
    breach), trip the breaker when its bounds say so, and at L5 hold it to continuous
    evals. None below L4: nothing runs unattended there to drift."""
    now = now or timezone.now()
    workflow = Workflow.objects.get(pk=workflow.pk)  # the rung as it stands
    if workflow.rung < Rung.L4:
        return None
    since = rung_since_many(workflows=[workflow])[workflow.pk]
    bounds = drift.drift_bounds_for(workflow.drift_bounds)
    trips = breaker.bounds_for(workflow.breaker_bounds)["drift_trips"]
    (b_start, b_end), (r_start, r_end) = drift_windows(
        workflow=workflow, bounds=bounds, since=since, now=now
    )
    result = drift.drift_judge(
        drift_window(workflow=workflow, start=b_start, end=b_end),
        drift_window(workflow=workflow, start=r_start, end=r_end),
        bounds,
    )
    with transaction.atomic():
        previous = drift_check_latest(workflow=workflow)
        check = DriftCheck.objects.create(
            workflow=workflow,
            computed_at=now,
            rung=workflow.rung,
            baseline_start=b_start,
            baseline_end=b_end,
            recent_start=r_start,
            recent_end=r_end,
            bounds=bounds,
            checks=[c.as_json() for c in result.checks],
            breached=result.breached,
            trigger=trigger,
            requested_by=by,
        )
        if result.breached and not _repeats(previous, check):
            _alert(workflow, check, result, trips)
    if result.breached:
        log.warning("drift in workflow %s: %s", workflow.slug, [c.name for c in result.breaches()])
        if trips:
            breaker_trip(workflow=workflow, trip=_trip(workflow, check, result))
    evals_check(workflow=workflow, now=now)
    return check


def evals_check(*, workflow: Workflow, now: datetime | None = None):
    """L5 needs continuous evals: the latest eval pass older than the workflow's bound, or
    below the eval bar, drops it to L4 (ladder.breaker.judge_evals). Returns the rung
    change, or None."""
    workflow = Workflow.objects.get(pk=workflow.pk)
    if workflow.rung < Rung.L5:
        return None
    now = now or timezone.now()
    _cases, latest = eval_tallies_many(workflow_ids=[workflow.pk])[workflow.pk]
    if latest is None or latest.at is None:
        return eval_check(workflow=workflow, age_days=None, matched=0, total=0)
    return eval_check(
        workflow=workflow,
        age_days=max(0.0, (now - latest.at).total_seconds() / 86400),
        matched=sum(c.k for c in latest.by_type.values()),
        total=sum(c.n for c in latest.by_type.values()),
    )


def drift_check_all(*, trigger: str, workflows: list[Workflow] | None = None) -> list[DriftCheck]:
    """A drift check of every L4/L5 workflow (or of those given that stand there). One
    workflow failing is logged and does not stop the others. Safe to run twice: it adds
    checks, alerts once per breach, and a breaker trip is a guarded rung change."""
    now = timezone.now()
    if workflows is None:
        workflows = list(Workflow.objects.filter(rung__gte=Rung.L4).order_by("pk"))
    checks = []
    for workflow in workflows:
        try:
            check = drift_check(workflow=workflow, trigger=trigger, now=now)
        except Exception:
            log.exception("drift check of workflow %s failed", workflow.slug)
            continue
        if check is not None:
            checks.append(check)
    return checks
