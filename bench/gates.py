"""Gate recompute over 1,000,000 runs across 100 workflows (PostgreSQL).

    .venv/bin/python bench/gates.py               # seed once, 3 rounds
    .venv/bin/python bench/gates.py --rounds 5 --reseed

Uses its own database, `ladder_bench_gates` (created and migrated if missing; the history
is seeded once in SQL and reused, `--reseed` redoes it). The history: 100 workflows,
20 on each rung L1-L5, three action types each; 1,000,000 runs spread over 120 days
(so about a quarter fall outside the default 90-day window), 90% handled at the
workflow's current rung and 10% at the one below (before a promotion). Every row is its
own: its own proposal amount, decision time, status drawn per rung (drafts light or not,
picks matched or not, approvals and rejections, policy allows and denials, audits,
executions that succeed or fail, outcome labels, shadow verdicts, probes at L3).

Measured, per round:
- `manage.py recompute_gates --quiet` in a fresh process-free call (the command's own
  function, as the nightly task runs it): all 100 snapshots, stored;
- a bare `SELECT workflow_id, COUNT(*) FROM traces_run GROUP BY workflow_id` over the
  same table, the floor any pass over it costs.
Targets: <= 60 s, and <= 3x the bare count.
"""

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _HERE]
sys.path.insert(0, str(ROOT))
DB = "ladder_bench_gates"
os.environ["DATABASE_URL"] = f"postgres://postgres@127.0.0.1:5432/{DB}"
os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/13")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ladder.settings")
os.environ.setdefault("LADDER_DEV_MODE", "1")

import psycopg  # noqa: E402

WORKFLOWS = 100
TARGET_SECONDS = 60.0
TARGET_RATIO = 3.0
DAYS = 120


def ensure_database() -> None:
    with psycopg.connect("postgres://postgres@127.0.0.1:5432/postgres", autocommit=True) as c:
        if not c.execute("SELECT 1 FROM pg_database WHERE datname = %s", [DB]).fetchone():
            c.execute(f'CREATE DATABASE "{DB}"')


# One INSERT ... SELECT per workflow: each row draws its own randomness (random() per
# row), so no two rows share a proposal, a time or an outcome by construction.
SEED_SQL = """
WITH g AS (
  SELECT n, random() AS u, random() AS v, random() AS w, random() AS x,
         (random() < 0.9) AS current_rung,
         now() - (random() * %(days)s) * interval '1 day' AS decided
  FROM generate_series(1, %(count)s) AS n
), r AS (
  SELECT g.*,
         CASE WHEN current_rung OR %(rung)s = 1 THEN %(rung)s ELSE %(rung)s - 1 END AS rung
  FROM g
)
INSERT INTO traces_run (
  id, workflow_id, idempotency_key, request_hash, rung, status, queue, action_type_id,
  proposal, summary, value, currency, flags, escalation_reason, decision, decided_at,
  execution_attempts, outcome, audit, version, trace_head, trace_length, created_at,
  updated_at, decider, light_edit, matched, shadow_outcome, shadow_version, probe, replay_ok)
SELECT
  gen_random_uuid(), %(wf)s, 'k-' || %(wf)s || '-' || n, md5(n::text || u::text), rung,
  CASE
    WHEN rung >= 4 AND v < 0.85 THEN (CASE WHEN x < 0.97 THEN 'executed' ELSE 'failed' END)
    WHEN rung >= 4 AND v < 0.95 THEN 'denied'
    WHEN v < 0.9 THEN (CASE WHEN rung = 3
                            THEN (CASE WHEN x < 0.98 THEN 'executed' ELSE 'failed' END)
                            ELSE 'approved' END)
    ELSE 'rejected' END,
  '', (%(actions)s)[1 + (n %% 3)],
  jsonb_build_object('action', 'refund.issue', 'params',
                     jsonb_build_object('amount', round((u * 250)::numeric, 2), 'order', n)),
  'refund ' || n, round((u * 250)::numeric, 2), 'EUR', '[]'::jsonb, '', NULL, decided,
  0,
  CASE WHEN w < 0.01 THEN 'wrong' WHEN w < 0.05 THEN 'correct' ELSE '' END,
  CASE WHEN rung >= 4 AND v < 0.85 AND w < 0.06
       THEN (CASE WHEN x < 0.99 THEN 'correct' ELSE 'wrong' END)
       ELSE '' END,
  2, md5(u::text), 4, decided - interval '3 minutes', decided,
  CASE WHEN rung >= 4 AND v < 0.95 THEN 'policy' ELSE 'person' END,
  CASE WHEN rung = 1 THEN (x < 0.85) END,
  CASE WHEN rung = 2 THEN (x < 0.93) END,
  CASE WHEN rung IN (2, 3)
       THEN (CASE WHEN u < 0.8 THEN 'allow' WHEN u < 0.9 THEN 'deny' ELSE 'escalate' END)
       ELSE '' END,
  CASE WHEN rung IN (2, 3) THEN 1 END,
  (rung = 3 AND n %% 97 = 0),
  CASE WHEN rung >= 3 AND v < 0.9 THEN (x > 0.0005) END
FROM r
"""


def seed(reseed: bool, per_workflow: int) -> None:
    from django.core.management import call_command
    from django.db import connection

    from ladder.models import ActionType, Workflow
    from traces.models import Run

    call_command("migrate", verbosity=0)
    if Run.objects.count() == per_workflow * WORKFLOWS and not reseed:
        print(f"reusing {per_workflow * WORKFLOWS:,} runs", file=sys.stderr)
        return
    started = time.perf_counter()
    with connection.cursor() as cur:
        cur.execute("ALTER TABLE traces_run DISABLE TRIGGER USER")
        cur.execute("DELETE FROM traces_run")
        cur.execute("ALTER TABLE traces_run ENABLE TRIGGER USER")
    for i in range(WORKFLOWS):
        rung = 1 + i % 5
        wf, _ = Workflow.objects.get_or_create(
            slug=f"bench-gates-{i:03d}", defaults={"name": f"bench {i}", "rung": rung}
        )
        actions = [
            ActionType.objects.get_or_create(workflow=wf, name=name)[0].id
            for name in ("refund.issue", "voucher.issue", "reply.send")
        ]
        with connection.cursor() as cur:
            cur.execute(
                SEED_SQL,
                {
                    "wf": wf.id,
                    "rung": rung,
                    "count": per_workflow,
                    "days": DAYS,
                    "actions": actions,
                },
            )
        print(f"\rseeded {i + 1}/{WORKFLOWS} workflows", end="", file=sys.stderr, flush=True)
    with connection.cursor() as cur:
        cur.execute("VACUUM ANALYZE traces_run")
    print(f"\nseeded in {time.perf_counter() - started:.1f} s", file=sys.stderr)


def measure(rounds: int) -> None:
    from django.core.management import call_command
    from django.db import connection

    from ladder.models import GateSnapshot

    total = connection.cursor()
    total.execute("SELECT COUNT(*) FROM traces_run")
    runs = total.fetchone()[0]
    bare, recompute = [], []
    for _ in range(rounds):
        started = time.perf_counter()
        with connection.cursor() as cur:
            cur.execute("SELECT workflow_id, COUNT(*) FROM traces_run GROUP BY workflow_id")
            assert len(cur.fetchall()) == WORKFLOWS
        bare.append(time.perf_counter() - started)
        before = GateSnapshot.objects.count()
        started = time.perf_counter()
        call_command("recompute_gates", "--quiet", stdout=open(os.devnull, "w"))  # noqa: SIM115
        recompute.append(time.perf_counter() - started)
        assert GateSnapshot.objects.count() == before + WORKFLOWS
    b, r = statistics.median(bare), statistics.median(recompute)
    print(f"runs: {runs:,} across {WORKFLOWS} workflows, {rounds} rounds (medians)")
    print(f"bare COUNT(*) GROUP BY workflow_id: {b:.2f} s")
    print(f"recompute_gates (100 snapshots stored): {r:.2f} s")
    print(f"ratio: {r / b:.2f}x (target <= {TARGET_RATIO:g}x); target <= {TARGET_SECONDS:g} s")
    print(
        f"all rounds: bare {', '.join(f'{x:.2f}' for x in bare)}; "
        f"recompute {', '.join(f'{x:.2f}' for x in recompute)}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--reseed", action="store_true")
    parser.add_argument("--runs", type=int, default=1_000_000)
    args = parser.parse_args()
    ensure_database()
    import django

    django.setup()
    seed(args.reseed, args.runs // WORKFLOWS)
    measure(args.rounds)


if __name__ == "__main__":
    main()
