"""The SQL that turns runs into gate tallies (docs/gates.md defines every count).

One statement for every workflow at once: each workflow's window and rung arrive as a
small VALUES table, each window is one range of the covering index run_gate_idx, and the
runs are grouped by their typed gate columns (Run.decider, status, probe, audit, outcome,
shadow_outcome; light_edit, matched and replay_ok are counted with FILTER). No JSON is
read. Python then sums the groups into the counts docs/gates.md defines. The same
statement runs on PostgreSQL and on SQLite (the embedded default; FILTER since 3.30).
"""

from __future__ import annotations

from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db import connection, transaction

from ladder.gates import Count
from traces.gate_code import gate_code_decode
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


# Each row of the statement is one combination of the run's gate categories (decider,
# status, probe, audit, outcome, shadow outcome, light edit, match, replay check: packed by
# the database into Run.gate_code, traces/gate_code.py) per workflow, proposed action
# type and shadow version, with how many runs have it and where audited runs fall in the
# window. One narrow integer key keeps the pass close to a bare count.
def _sql(n_windows: int) -> str:
    rows = ", ".join(["(%s, %s, %s, %s, %s, %s)"] * n_windows)
    keys = "r.workflow_id, r.action_type_id, r.shadow_version, r.gate_code"
    # The join reads each window as one range of run_gate_idx (workflow, rung, decided_at),
    # an index-only scan: the index carries every column counted here.
    return f"""
WITH b(workflow_id, rung, since, t1, t2, until) AS (VALUES {rows})
SELECT {keys}, COUNT(*),
  COUNT(*) FILTER (WHERE r.decided_at < b.t1),
  COUNT(*) FILTER (WHERE r.decided_at >= b.t2)
FROM b
JOIN traces_run r ON r.workflow_id = b.workflow_id AND r.rung = b.rung
  AND r.decided_at >= b.since AND r.decided_at < b.until
WHERE r.decided_at IS NOT NULL
GROUP BY {keys}
"""  # noqa: S608 (built from this module's constants; every value is a parameter)


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
    # Finished runs whose replay was never checked (Run.replay_ok null).
    unchecked: int = 0


# Below this many windows one statement is faster than two connections' set-up.
SPLIT_MIN_WINDOWS = 8


def _rows(windows: list[Window]) -> list[tuple]:
    params: list = []
    at = connection.ops.adapt_datetimefield_value  # SQLite compares stored text
    for w in windows:
        params += [w.workflow_id, w.rung, at(w.since), at(w.third(1)), at(w.third(2)), at(w.until)]
    with transaction.atomic(), connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # Compiling this statement just in time costs more than running it.
            cursor.execute("SET LOCAL jit = off")
        cursor.execute(_sql(len(windows)), params)
        return cursor.fetchall()


def _rows_in_thread(windows: list[Window]) -> list[tuple]:
    try:
        return _rows(windows)
    finally:
        connection.close()  # this thread's own connection


def _parallel(windows: list[Window]) -> bool:
    """Two halves on two connections at once, as PostgreSQL's own parallel workers would
    do for a plain scan (a nested loop over an index is not parallelised). Only outside
    a transaction: another connection cannot see what this one has not committed."""
    return (
        connection.vendor == "postgresql"
        and not connection.in_atomic_block
        and len(windows) >= SPLIT_MIN_WINDOWS
    )


def run_tallies(windows: list[Window]) -> dict[int, RunTallies]:
    """Every workflow's run counts over its window (docs/gates.md)."""
    if not windows:
        return {}
    if _parallel(windows):
        with ThreadPoolExecutor(max_workers=2) as pool:
            halves = pool.map(_rows_in_thread, [windows[0::2], windows[1::2]])
            rows = [row for half in halves for row in half]
    else:
        rows = _rows(windows)
    acc = {w.workflow_id: _Acc(w.rung) for w in windows}
    for workflow_id, action_type_id, shadow_version, code, n, first, last in rows:
        keys = gate_code_decode(code)
        acc[workflow_id].add(keys, action_type_id, shadow_version, n=n, first=first, last=last)
    return {w.workflow_id: acc[w.workflow_id].tallies() for w in windows}


_APPROVED = frozenset(APPROVED_STATUSES)
_FINISHED = frozenset(FINISHED_STATUSES)


class _Acc:
    """Sums one workflow's rows into the counts docs/gates.md defines."""

    def __init__(self, rung: int):
        self.rung = rung
        self.unchecked = 0
        self.c: dict[str, int] = defaultdict(int)
        self.by_type: dict = defaultdict(lambda: [0, 0])
        self.shadow: dict = defaultdict(lambda: [0, 0])

    def add(self, keys, action_type_id, shadow_version, *, n, first, last):
        c = self.c
        light = n if keys["light_edit"] is True else 0
        matched = n if keys["matched"] is True else 0
        replayed = n if keys["replay_ok"] is True else 0
        decider, status, probe = keys["decider"], keys["status"], bool(keys["probe"])
        audit, outcome = keys["audit"], keys["outcome"]
        if probe:
            # A probe is evidence of reviewers' attention only (caught = rejected).
            if decider == "person":
                c["probes"] += n
                c["caught"] += n if status == RunStatus.REJECTED else 0
            return
        if decider in ("person", "policy"):
            c["volume"] += n
        if decider == "person":
            c["by_person"] += n
            c["light"] += light
            c["matched"] += matched
            if status in _APPROVED:
                c["approved"] += n
            elif status == RunStatus.REJECTED:
                c["rejected"] += n
            pair = self.by_type[action_type_id]
            pair[0] += matched
            pair[1] += n
            if shadow_version is not None and keys["shadow_outcome"] in ("allow", "deny"):
                pair = self.shadow[shadow_version]
                pair[1] += n
                if keys["shadow_outcome"] == "deny" and status == RunStatus.REJECTED:
                    pair[0] += n
                elif keys["shadow_outcome"] == "allow" and status in _APPROVED:
                    # Approved as proposed: an L3 approval, or an L2 pick of the first choice.
                    pair[0] += matched if self.rung == 2 else n
        if audit in ("correct", "wrong"):
            c[f"audit_{audit}_0"] += first
            c[f"audit_{audit}_2"] += last
            c[f"audit_{audit}_1"] += n - first - last
        if status in _FINISHED:
            if keys["replay_ok"] is None:
                self.unchecked += n
            c["executed"] += n
            c["replayed"] += replayed
            if status == RunStatus.FAILED or outcome == "wrong" or audit == "wrong":
                c["failed"] += n

    def tallies(self) -> RunTallies:
        c = self.c
        thirds = tuple(
            Count(c[f"audit_correct_{i}"], c[f"audit_correct_{i}"] + c[f"audit_wrong_{i}"])
            for i in range(3)
        )
        return RunTallies(
            volume=c["volume"],
            light_edit=Count(c["light"], c["by_person"]),
            match=Count(c["matched"], c["by_person"]),
            match_by_type={t: Count(k, n) for t, (k, n) in self.by_type.items()},
            approval=Count(c["approved"], c["approved"] + c["rejected"]),
            audit=Count(sum(t.k for t in thirds), sum(t.n for t in thirds)),
            audit_thirds=thirds,
            failure=Count(c["failed"], c["executed"]),
            replay=Count(c["replayed"], c["executed"]),
            probes=Count(c["caught"], c["probes"]),
            shadow_by_version={v: Count(k, n) for v, (k, n) in self.shadow.items()},
            unchecked=self.unchecked,
        )
