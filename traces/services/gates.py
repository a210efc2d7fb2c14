"""Gate snapshots: the runs' tallies (traces/gates.py) judged by the ladder's gate rules
(ladder/gates.py) and kept, one row per workflow per recompute (docs/gates.md).

`manage.py recompute_gates` and the nightly beat task compute every workflow; a workflow
page recomputes its own on demand.
"""

from __future__ import annotations

import dataclasses
import logging
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import Avg, OuterRef, Q, Subquery
from django.db.models import Count as DbCount
from django.utils import timezone

from ladder import gates
from ladder.errors import LadderError
from ladder.models import ActionType, GateSnapshot, PolicyVersion, Workflow
from ladder.policies import problem_lines
from ladder.policy import parse_policy
from ladder.services import rung_since_many
from traces.evals import eval_tallies_many
from traces.gates import RunTallies, Window, run_tallies, window_for
from traces.models import MetricPoint, RollbackDrill, Run
from traces.services.drills import drill_latest_finished
from traces.services.trace import run_replay_mark
from traces.status import FINISHED_STATUSES

log = logging.getLogger(__name__)

# Finished runs whose replay was never checked (finished before the check existed, or
# whose check was interrupted) are checked before counting, at most this many per pass.
REPLAY_CHECK_BATCH = 5000


def replays_check_pending(*, windows: list[Window], limit: int = REPLAY_CHECK_BATCH) -> int:
    """Check the replay of the windows' finished runs not yet checked (Run.replay_ok null:
    finished before the check existed, or its check was interrupted)."""
    checked = 0
    for w in windows:
        pending = (
            Run.objects.filter(
                workflow_id=w.workflow_id,
                rung=w.rung,
                decided_at__gte=w.since,
                decided_at__lt=w.until,
                status__in=sorted(FINISHED_STATUSES),
                replay_ok__isnull=True,
            )
            .only("id", "status", "proposal", "trace_head", "trace_length")
            .order_by()[: limit - checked]
        )
        for run in pending:
            run_replay_mark(run=run)
            checked += 1
        if checked >= limit:
            break
    return checked


def _outcome(workflow: Workflow, *, since: datetime, window_start: datetime, now: datetime):
    """The business metric's mean and count before the rung began (the baseline) and
    since (within the window)."""
    if not workflow.outcome_metric:
        return None
    start = max(since, window_start)
    baseline_from = since - timedelta(days=workflow.outcome_baseline_days)
    points = MetricPoint.objects.filter(workflow=workflow, metric=workflow.outcome_metric)
    figures = points.aggregate(
        baseline_mean=Avg("value", filter=Q(at__gte=baseline_from, at__lt=since)),
        baseline_n=DbCount("pk", filter=Q(at__gte=baseline_from, at__lt=since)),
        current_mean=Avg("value", filter=Q(at__gte=start, at__lt=now)),
        current_n=DbCount("pk", filter=Q(at__gte=start, at__lt=now)),
    )
    return gates.Outcome(
        metric=workflow.outcome_metric, direction=workflow.outcome_direction, **figures
    )


def _policy(latest: PolicyVersion | None, actions: dict) -> tuple[int | None, tuple[str, ...]]:
    """The newest policy version (the one in force one rung up) and its problems against
    the workflow's action types as they are now."""
    if latest is None:
        return None, ()
    try:
        parse_policy(latest.document, actions=actions)
    except LadderError as exc:
        return latest.number, tuple(problem_lines(exc))
    return latest.number, ()


@dataclass(frozen=True)
class _Known:
    """What the snapshot needs of each workflow besides its runs, read for all at once."""

    types: dict[int, dict[int, tuple[str, str, str]]]  # workflow -> id -> (name, value, currency)
    latest: dict[int, PolicyVersion]
    evals: dict[int, tuple[dict[str, int], gates.EvalPass | None]]
    drills: dict[int, RollbackDrill]

    @classmethod
    def read(cls, workflows: list[Workflow]) -> _Known:
        types: dict = defaultdict(dict)
        rows = ActionType.objects.filter(workflow__in=workflows).values_list(
            "workflow_id", "id", "name", "value_param", "currency_param"
        )
        for workflow_id, type_id, name, value_param, currency_param in rows:
            types[workflow_id][type_id] = (name, value_param, currency_param)
        newest = PolicyVersion.objects.filter(workflow=OuterRef("workflow")).order_by("-number")
        latest = PolicyVersion.objects.filter(
            workflow__in=workflows, number=Subquery(newest.values("number")[:1])
        )
        return cls(
            types=types,
            latest={v.workflow_id: v for v in latest},
            evals=eval_tallies_many(workflow_ids=[w.pk for w in workflows]),
            drills=drill_latest_finished(workflow_ids=[w.pk for w in workflows]),
        )


def _tallies(
    workflow: Workflow, runs: RunTallies, known: _Known, *, since: datetime, window_start, now
) -> gates.Tallies:
    types = known.types.get(workflow.pk, {})
    names = {type_id: name for type_id, (name, _, _) in types.items()}
    policy_version, policy_problems = _policy(
        known.latest.get(workflow.pk), {name: (v, c) for name, v, c in types.values()}
    )
    shadow = (runs.shadow_by_version or {}).get(policy_version) if policy_version else None
    cases, latest_pass = known.evals[workflow.pk]
    return gates.Tallies(
        rung=workflow.rung,
        volume=runs.volume,
        light_edit=runs.light_edit,
        match=runs.match,
        match_by_type={
            names.get(t, "(no action)"): c for t, c in (runs.match_by_type or {}).items()
        },
        approval=runs.approval,
        audit=runs.audit,
        audit_thirds=runs.audit_thirds,
        failure=runs.failure,
        replay=runs.replay,
        probes=runs.probes,
        shadow=shadow,
        shadow_version=policy_version if shadow else None,
        eval_cases_by_type=cases,
        eval_pass=latest_pass,
        outcome=_outcome(workflow, since=since, window_start=window_start, now=now),
        policy_version=policy_version,
        policy_problems=policy_problems,
        drill=_drill(known.drills.get(workflow.pk)),
    )


def _drill(drill: RollbackDrill | None) -> dict | None:
    """The latest finished rollback drill as the gate reads it (docs/drills.md)."""
    if drill is None:
        return None
    return {
        "id": drill.pk,
        "at": drill.finished_at,
        "passed": drill.passed,
        "size": drill.picked,
        "duration_seconds": drill.duration_seconds,
        "under_load": drill.under_load,
    }


def tallies_json(tallies: gates.Tallies) -> dict:
    def plain(value):
        if isinstance(value, datetime):
            return value.isoformat()
        if isinstance(value, dict):
            return {str(k): plain(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        return value

    return plain(dataclasses.asdict(tallies))


def gates_recompute_all(
    *,
    trigger: str,
    workflows: list[Workflow] | None = None,
    by=None,
    now: datetime | None = None,
) -> list[GateSnapshot]:
    """A gate snapshot for each workflow (all of them by default), counted in one pass
    over the runs, stored append-only. Safe to run twice: it only adds snapshots."""
    now = now or timezone.now()
    if workflows is None:
        workflows = list(Workflow.objects.order_by("pk"))
    if not workflows:
        return []
    windows = {
        w.pk: window_for(workflow_id=w.pk, rung=w.rung, days=w.gate_window_days, now=now)
        for w in workflows
    }
    known = _Known.read(workflows)
    counted = run_tallies(list(windows.values()))
    stale = [windows[pk] for pk, t in counted.items() if t.unchecked]
    if stale and replays_check_pending(windows=stale):
        counted.update(run_tallies(stale))
    since = rung_since_many(workflows=workflows)
    snapshots = []
    for workflow in workflows:
        window = windows[workflow.pk]
        tallies = _tallies(
            workflow,
            counted.get(workflow.pk, RunTallies()),
            known,
            since=since[workflow.pk],
            window_start=window.since,
            now=now,
        )
        facts = gates.WorkflowFacts(
            rung=workflow.rung,
            max_rung=workflow.max_rung,
            risk_class=workflow.risk_class,
            action_types=tuple(sorted(n for n, _, _ in known.types.get(workflow.pk, {}).values())),
            has_owner=workflow.owner_id is not None,
            rung_since=since[workflow.pk],
            now=now,
            window_days=workflow.gate_window_days,
            thresholds=workflow.gate_thresholds,
        )
        judged = gates.gates_evaluate(facts, tallies)
        verdict = gates.eligibility(facts, judged)
        snapshots.append(
            GateSnapshot(
                workflow=workflow,
                computed_at=now,
                rung=workflow.rung,
                target_rung=verdict.target_rung,
                window_days=workflow.gate_window_days,
                window_start=window.since,
                window_end=window.until,
                eligible=verdict.eligible,
                reasons=list(verdict.reasons),
                tallies=tallies_json(tallies),
                gates=[g.as_json() for g in judged],
                trigger=trigger,
                requested_by=by,
            )
        )
    with transaction.atomic():
        GateSnapshot.objects.bulk_create(snapshots)
    return snapshots


def gates_recompute(*, workflow: Workflow, trigger: str, by=None, now=None) -> GateSnapshot:
    """One workflow's snapshot, now (the workflow page's "Recompute now", a promotion
    request)."""
    workflow = Workflow.objects.get(pk=workflow.pk)  # the rung as it stands
    return gates_recompute_all(trigger=trigger, workflows=[workflow], by=by, now=now)[0]
