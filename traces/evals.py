"""Reads over eval sets and attention probes (docs/evals.md): what the gates count, what
agents fetch, what the owner's eval page and the workflow page show."""

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import Count, Max, Q
from django.utils import timezone

from ladder.gates import Count as Tally
from ladder.gates import EvalPass
from ladder.models import Workflow
from traces.models import Decider, EvalCase, EvalResult, Run, RunStatus

# An action type with fewer active cases than this is flagged as thin: the eval set is
# what covers the tail that traffic rarely shows.
EVAL_TAIL_MIN = 5
AGENT_PAGE_SIZE = 100


def _active(workflow: Workflow):
    return EvalCase.objects.filter(workflow=workflow, retired_at=None)


def eval_tallies(*, workflow: Workflow) -> tuple[dict[str, int], EvalPass | None]:
    """What the L2 -> L3 gate counts (ladder.gates.Tallies.eval_cases_by_type and
    .eval_pass): active cases per expected action type, and the latest eval pass (the
    one holding the newest submission) as matched of results per expected action type
    of its cases. Results of cases retired since are left out."""
    return eval_tallies_many(workflow_ids=[workflow.pk])[workflow.pk]


def eval_tallies_many(
    *, workflow_ids: list[int]
) -> dict[int, tuple[dict[str, int], EvalPass | None]]:
    """eval_tallies for many workflows at once (the nightly recompute): four queries,
    whatever their number."""
    out: dict[int, tuple[dict[str, int], EvalPass | None]] = {pk: ({}, None) for pk in workflow_ids}
    cases = (
        EvalCase.objects.filter(workflow_id__in=workflow_ids, retired_at=None)
        .values_list("workflow_id", "expected_action")
        .annotate(n=Count("id"))
        .order_by()
    )
    for workflow_id, action, n in cases:
        out[workflow_id][0][action] = n
    newest_at = dict(
        EvalResult.objects.filter(workflow_id__in=workflow_ids)
        .values_list("workflow_id")
        .annotate(at=Max("submitted_at"))
        .values_list("workflow_id", "at")
        .order_by()
    )
    if not newest_at:
        return out
    latest: dict[int, tuple[str, datetime]] = {}
    newest = Q()
    for workflow_id, at in newest_at.items():
        newest |= Q(workflow_id=workflow_id, submitted_at=at)
    # Two results submitted in the same microsecond: the higher id is the newer.
    for workflow_id, label, at in (
        EvalResult.objects.filter(newest)
        .order_by("workflow_id", "id")
        .values_list("workflow_id", "pass_label", "submitted_at")
    ):
        latest[workflow_id] = (label, at)
    which = Q()
    for workflow_id, (label, _) in latest.items():
        which |= Q(workflow_id=workflow_id, pass_label=label)
    by_type: dict[int, dict[str, Tally]] = {pk: {} for pk in latest}
    rows = (
        EvalResult.objects.filter(which, case__retired_at=None)
        .values_list("workflow_id", "case__expected_action")
        .annotate(k=Count("id", filter=Q(matched=True)), n=Count("id"))
        .order_by()
    )
    for workflow_id, action, k, n in rows:
        by_type[workflow_id][action] = Tally(k=k, n=n)
    for workflow_id, (label, at) in latest.items():
        out[workflow_id] = (
            out[workflow_id][0],
            EvalPass(label=label, at=at, by_type=by_type[workflow_id]),
        )
    return out


def eval_cases_for_agent(
    *, workflow: Workflow, after: int = 0, limit: int = AGENT_PAGE_SIZE
) -> tuple[list[dict], int | None]:
    """One page of active cases as an agent gets them (id, input, the action types it
    may choose from; never the expected answer), and the cursor of the next page."""
    rows = list(
        _active(workflow).filter(pk__gt=after).order_by("pk").values("pk", "input")[: limit + 1]
    )
    more = len(rows) > limit
    rows = rows[:limit]
    names = sorted(workflow.action_types.values_list("name", flat=True))
    cases = [{"id": r["pk"], "input": r["input"], "action_types": names} for r in rows]
    return cases, (rows[-1]["pk"] if more else None)


@dataclass(frozen=True)
class TypeRow:
    action: str
    cases: int
    wrong: int
    flag: str  # "" | "no case" | "thin"


@dataclass(frozen=True)
class PassRow:
    label: str
    at: datetime
    agent: str
    total: Tally
    by_type: list[tuple[str, Tally]]


def eval_overview(*, workflow: Workflow, passes: int = 10) -> dict:
    """The owner's eval page: cases per action type (with the known-wrong ones usable as
    probes), coverage of every action type, thin types flagged, and the latest passes,
    newest first, matched/n per expected action type."""
    types = sorted(workflow.action_types.values_list("name", flat=True))
    counts = {
        row["expected_action"]: row
        for row in _active(workflow)
        .values("expected_action")
        .annotate(n=Count("id"), wrong=Count("id", filter=~Q(wrong_action="")))
    }
    rows = []
    for action in sorted(set(types) | set(counts)):
        n = counts.get(action, {}).get("n", 0)
        flag = "no case" if n == 0 else "thin" if n < EVAL_TAIL_MIN else ""
        rows.append(TypeRow(action, n, counts.get(action, {}).get("wrong", 0), flag))
    recent = list(
        EvalResult.objects.filter(workflow=workflow)
        .values("pass_label")
        .annotate(at=Max("submitted_at"), agent=Max("agent"))
        .order_by("-at")[:passes]
    )
    labels = [p["pass_label"] for p in recent]
    per = {}
    for label, action, k, n in (
        EvalResult.objects.filter(workflow=workflow, pass_label__in=labels)
        .values_list("pass_label", "case__expected_action")
        .annotate(k=Count("id", filter=Q(matched=True)), n=Count("id"))
    ):
        per.setdefault(label, {})[action] = Tally(k=k, n=n)
    pass_rows = [
        PassRow(
            label=p["pass_label"],
            at=p["at"],
            agent=p["agent"],
            total=Tally(
                k=sum(t.k for t in per.get(p["pass_label"], {}).values()),
                n=sum(t.n for t in per.get(p["pass_label"], {}).values()),
            ),
            by_type=sorted(per.get(p["pass_label"], {}).items()),
        )
        for p in recent
    ]
    total = sum(r.cases for r in rows)
    return {
        "types": rows,
        "total": total,
        "covered": sum(1 for r in rows if r.cases and r.action in types),
        "type_count": len(types),
        "missing": [r.action for r in rows if r.flag == "no case"],
        "passes": pass_rows,
        "cases": list(_active(workflow).order_by("-pk")[:50]),
    }


def probe_catch(*, workflow: Workflow, now: datetime | None = None) -> Tally:
    """The attention probes' catch rate as the gates count it (traces/gates.py): over the
    workflow's gate window at its current rung, k = probes a person rejected, n = probes
    a person decided. Per workflow, never per person."""
    since = (now or timezone.now()) - timedelta(days=workflow.gate_window_days)
    counts = Run.objects.filter(
        workflow=workflow,
        rung=workflow.rung,
        probe=True,
        decider=Decider.PERSON,
        decided_at__gte=since,
    ).aggregate(n=Count("id"), k=Count("id", filter=Q(status=RunStatus.REJECTED)))
    return Tally(k=counts["k"], n=counts["n"])
