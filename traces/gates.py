"""The SQL that turns runs into gate tallies (docs/gates.md defines every count).

One pass over the runs table for every workflow at once: each workflow's window and
rung arrive as a small VALUES table, every count is a `COUNT(*) FILTER (...)` over the
typed gate columns (Run.decider, light_edit, matched, audit, outcome, probe, replay_ok,
shadow_outcome, shadow_version), grouped by workflow, proposed action type and shadow
version. No JSON is read. The same statement runs on PostgreSQL and on SQLite (the
embedded default), which has FILTER since 3.30.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db import connection

from ladder.gates import Count
from traces.status import APPROVED_STATUSES, FINISHED_STATUSES, RunStatus


@dataclass(frozen=True)
class Window:
    """One workflow's window: runs handled at `rung` and decided in [since, until)."""

    workflow_id: int
    rung: int
    since: datetime
    until: datetime

    def third(self, k: int) -> datetime:
        return self.since + (self.until - self.since) * k / 3


def window_for(*, workflow_id: int, rung: int, days: int, now: datetime) -> Window:
    return Window(workflow_id, rung, now - timedelta(days=days), now)


def _in(statuses) -> str:
    return "(" + ", ".join(f"'{s}'" for s in sorted(statuses)) + ")"


_LIVE = "r.decider = 'person' AND NOT r.probe"
_APPROVED = f"r.status IN {_in(APPROVED_STATUSES)}"
_EXECUTED = f"NOT r.probe AND r.status IN {_in(FINISHED_STATUSES)}"
# Each count, by name; the order is the SELECT's.
COUNTS = {
    "volume": "r.decider IN ('person', 'policy') AND NOT r.probe",
    "by_person": _LIVE,
    "light": f"{_LIVE} AND r.light_edit",
    "matched": f"{_LIVE} AND r.matched",
    "approved": f"{_LIVE} AND {_APPROVED}",
    "rejected": f"{_LIVE} AND r.status = '{RunStatus.REJECTED}'",
    "audit_ok_0": "r.audit = 'correct' AND r.decided_at < b.t1",
    "audit_ok_1": "r.audit = 'correct' AND r.decided_at >= b.t1 AND r.decided_at < b.t2",
    "audit_ok_2": "r.audit = 'correct' AND r.decided_at >= b.t2",
    "audit_bad_0": "r.audit = 'wrong' AND r.decided_at < b.t1",
    "audit_bad_1": "r.audit = 'wrong' AND r.decided_at >= b.t1 AND r.decided_at < b.t2",
    "audit_bad_2": "r.audit = 'wrong' AND r.decided_at >= b.t2",
    "executed": _EXECUTED,
    "failed": (
        f"{_EXECUTED} AND (r.status = '{RunStatus.FAILED}' OR r.outcome = 'wrong' "
        "OR r.audit = 'wrong')"
    ),
    "replayed": f"{_EXECUTED} AND r.replay_ok",
    "probes": "r.probe AND r.decider = 'person'",
    "caught": f"r.probe AND r.decider = 'person' AND r.status = '{RunStatus.REJECTED}'",
    "shadow_n": f"{_LIVE} AND r.shadow_outcome IN ('allow', 'deny')",
    "shadow_agree": (
        f"{_LIVE} AND ((r.shadow_outcome = 'allow' AND {_APPROVED} "
        "AND (r.rung = 3 OR r.matched)) "
        f"OR (r.shadow_outcome = 'deny' AND r.status = '{RunStatus.REJECTED}'))"
    ),
}


def _sql(n_windows: int) -> str:
    rows = ", ".join(["(%s, %s, %s, %s, %s, %s)"] * n_windows)
    counts = ",\n  ".join(
        f"COUNT(*) FILTER (WHERE {cond}) AS {name}" for name, cond in COUNTS.items()
    )
    return f"""
WITH b(workflow_id, rung, since, t1, t2, until) AS (VALUES {rows})
SELECT r.workflow_id, r.action_type_id, r.shadow_version,
  {counts}
FROM traces_run r
JOIN b ON b.workflow_id = r.workflow_id AND b.rung = r.rung
WHERE r.decided_at >= b.since AND r.decided_at < b.until
GROUP BY r.workflow_id, r.action_type_id, r.shadow_version
"""  # noqa: S608


@dataclass
class RunTallies:
    """One workflow's counts from its runs (the rest of ladder.gates.Tallies comes from
    elsewhere: evals, metric points, the policy)."""

    volume: int = 0
    light_edit: Count = field(default_factory=Count)
    match: Count = field(default_factory=Count)
    match_by_type: dict[int | None, Count] | None = None
    approval: Count = field(default_factory=Count)
    audit: Count = field(default_factory=Count)
    audit_thirds: tuple[Count, ...] = ()
    failure: Count = field(default_factory=Count)
    replay: Count = field(default_factory=Count)
    probes: Count = field(default_factory=Count)
    # Agreement of each shadow version with people: {version: Count}.
    shadow_by_version: dict[int, Count] | None = None


def run_tallies(windows: list[Window]) -> dict[int, RunTallies]:
    """Every workflow's run counts over its window, in one statement."""
    if not windows:
        return {}
    params: list = []
    at = connection.ops.adapt_datetimefield_value  # SQLite compares stored text
    for w in windows:
        params += [w.workflow_id, w.rung, at(w.since), at(w.third(1)), at(w.third(2)), at(w.until)]
    sums: dict[int, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    by_type: dict[int, dict] = defaultdict(lambda: defaultdict(lambda: [0, 0]))
    shadow: dict[int, dict] = defaultdict(lambda: defaultdict(lambda: [0, 0]))
    names = list(COUNTS)
    with connection.cursor() as cursor:
        cursor.execute(_sql(len(windows)), params)
        for row in cursor.fetchall():
            workflow_id, action_type_id, shadow_version = row[:3]
            counts = dict(zip(names, (int(v or 0) for v in row[3:]), strict=True))
            total = sums[workflow_id]
            for name, value in counts.items():
                total[name] += value
            if counts["by_person"]:
                pair = by_type[workflow_id][action_type_id]
                pair[0] += counts["matched"]
                pair[1] += counts["by_person"]
            if shadow_version is not None and counts["shadow_n"]:
                pair = shadow[workflow_id][shadow_version]
                pair[0] += counts["shadow_agree"]
                pair[1] += counts["shadow_n"]
    out = {}
    for w in windows:
        s = sums.get(w.workflow_id, defaultdict(int))
        thirds = tuple(
            Count(s[f"audit_ok_{i}"], s[f"audit_ok_{i}"] + s[f"audit_bad_{i}"]) for i in range(3)
        )
        audit_ok = sum(c.k for c in thirds)
        out[w.workflow_id] = RunTallies(
            volume=s["volume"],
            light_edit=Count(s["light"], s["by_person"]),
            match=Count(s["matched"], s["by_person"]),
            match_by_type={t: Count(k, n) for t, (k, n) in by_type.get(w.workflow_id, {}).items()},
            approval=Count(s["approved"], s["approved"] + s["rejected"]),
            audit=Count(audit_ok, sum(c.n for c in thirds)),
            audit_thirds=thirds,
            failure=Count(s["failed"], s["executed"]),
            replay=Count(s["replayed"], s["executed"]),
            probes=Count(s["caught"], s["probes"]),
            shadow_by_version={
                v: Count(k, n) for v, (k, n) in shadow.get(w.workflow_id, {}).items()
            },
        )
    return out
