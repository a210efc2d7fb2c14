"""The compliance history (/history/) over 1,000,000 runs across 100 workflows (PostgreSQL).

    .venv/bin/python bench/history.py               # seed once, 30 requests per case
    .venv/bin/python bench/history.py --reseed --requests 50

Uses its own database, `ladder_bench_history` (created and migrated if missing; seeded
once in SQL and reused, `--reseed` redoes it). The history: 100 workflows, 20 on each
rung L1-L5, three action types each; 1,000,000 runs over 120 days, each with its own
time, amount, status (waiting, approved, executed, failed, rejected, denied), decider
(a person among 20 reviewers, the policy, the deadline, nobody yet), outcome and audit
labels; and for each run an `input` and a `proposal` trace event whose text draws words
from a small vocabulary (common, 1 in 20, 1 in 1,000) plus an order number and an e-mail
pseudonym of its own: 2,000,000 events under the search index.

Each case is the real view (`GET /history/?...` through Django's test client, signed in
as a compliance user holding the role on all 100 workflows, unless the case says
otherwise), requested `--requests` times after two warm-ups; p50 and p95 in ms.
Target: p95 <= 300 ms for the first page and for every filter.
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
DB = "ladder_bench_history"
os.environ["DATABASE_URL"] = f"postgres://postgres@127.0.0.1:5432/{DB}"
os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/13")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ladder.settings")
os.environ.setdefault("LADDER_DEV_MODE", "1")

import psycopg  # noqa: E402

WORKFLOWS = 100
REVIEWERS = 20
DAYS = 120
TARGET_MS = 300.0


def ensure_database() -> None:
    with psycopg.connect("postgres://postgres@127.0.0.1:5432/postgres", autocommit=True) as c:
        if not c.execute("SELECT 1 FROM pg_database WHERE datname = %s", [DB]).fetchone():
            c.execute(f'CREATE DATABASE "{DB}"')


# One INSERT ... SELECT per workflow; every row draws its own randomness.
RUNS_SQL = """
WITH g AS (
  SELECT n, random() AS u, random() AS v, random() AS w, random() AS x,
         now() - (random() * %(days)s) * interval '1 day' AS created
  FROM generate_series(1, %(count)s) AS n
)
INSERT INTO traces_run (
  id, workflow_id, idempotency_key, request_hash, rung, status, queue, action_type_id,
  proposal, summary, value, currency, flags, escalation_reason, decision, decided_at,
  decided_by_id, execution_attempts, outcome, audit, version, trace_head, trace_length,
  created_at, updated_at, decider, probe, held, shadow_outcome)
SELECT
  gen_random_uuid(), %(wf)s, 'k-' || %(wf)s || '-' || n, md5(n::text || u::text), %(rung)s,
  s.status, '', (%(actions)s)[1 + (n %% 3)],
  jsonb_build_object('action', 'refund.issue', 'params',
                     jsonb_build_object('amount', round((u * 250)::numeric, 2),
                                        'order', 'o-' || %(wf)s || '-' || n)),
  'Refund order o-' || %(wf)s || '-' || n, round((u * 250)::numeric, 2), 'EUR', '[]'::jsonb,
  '', NULL, CASE WHEN s.decider <> '' THEN created + interval '5 minutes' END,
  CASE WHEN s.decider = 'person' THEN (%(people)s)[1 + (n %% %(npeople)s)] END,
  0,
  CASE WHEN w < 0.01 THEN 'wrong' WHEN w < 0.05 THEN 'correct' ELSE '' END,
  CASE WHEN %(rung)s >= 4 AND w > 0.94 THEN (CASE WHEN x < 0.9 THEN 'correct' ELSE 'wrong' END)
       ELSE '' END,
  2, md5(u::text), 2, created, created, s.decider, false, false, ''
FROM g, LATERAL (
  SELECT
    CASE WHEN v < 0.02 THEN 'pending_review'
         WHEN v < 0.04 THEN 'approved'
         WHEN v < 0.86 THEN (CASE WHEN x < 0.97 THEN 'executed' ELSE 'failed' END)
         WHEN v < 0.93 THEN (CASE WHEN %(rung)s >= 4 THEN 'denied' ELSE 'rejected' END)
         ELSE 'rejected' END AS status,
    CASE WHEN v < 0.02 THEN ''
         WHEN v > 0.995 THEN 'deadline'
         WHEN %(rung)s >= 4 THEN 'policy'
         ELSE 'person' END AS decider
) AS s
"""

# The input and the proposal of each run of one workflow. Words: "parcel" in half the
# runs, "kettle" in 1 in 20, "zeppelin" in 1 in 1,000; the order number and a
# pseudonymised address are the run's own.
EVENTS_SQL = """
WITH r AS (
  SELECT id, created_at, summary, random() AS u,
         '<EMAIL:' || substr(md5(id::text), 1, 16) || '>' AS email
  FROM traces_run WHERE workflow_id = %(wf)s
), w AS (
  SELECT r.*,
         CASE WHEN u < 0.001 THEN 'my zeppelin kettle parcel is late'
              WHEN u < 0.05 THEN 'the kettle in my parcel arrived broken'
              WHEN u < 0.5 THEN 'where is my parcel'
              ELSE 'please cancel my subscription' END AS message
  FROM r
)
INSERT INTO traces_traceevent (run_id, seq, type, actor, at, document, prev_hash, hash)
SELECT id, e.seq, e.type, 'agent:bench', created_at,
       json_build_object('actor', 'agent:bench', 'at', created_at, 'payload', e.payload,
                         'run', id, 'seq', e.seq, 'type', e.type)::text,
       repeat('0', 64), md5(id::text) || md5(e.seq::text)
FROM w, LATERAL (VALUES
  (1, 'input', json_build_object('input', json_build_object(
      'message', message || ', from ' || email), 'rung', 3)),
  (2, 'proposal', json_build_object('action', 'refund.issue', 'summary', summary,
      'params', json_build_object('to', email)))
) AS e(seq, type, payload)
"""


def seed(reseed: bool, per_workflow: int) -> None:
    from django.contrib.auth.models import User
    from django.core.management import call_command
    from django.db import connection

    from approvals.roles import role_grant
    from ladder.models import ActionType, Workflow
    from traces.models import Run

    call_command("migrate", verbosity=0)
    if Run.objects.count() == per_workflow * WORKFLOWS and not reseed:
        print(f"reusing {per_workflow * WORKFLOWS:,} runs", file=sys.stderr)
        return
    started = time.perf_counter()
    with connection.cursor() as cur:
        for table in ("traces_traceevent", "approvals_review", "traces_run"):
            cur.execute(f"ALTER TABLE {table} DISABLE TRIGGER USER")
            cur.execute(f"DELETE FROM {table}")  # noqa: S608 (three fixed names)
            cur.execute(f"ALTER TABLE {table} ENABLE TRIGGER USER")
    people = [
        User.objects.get_or_create(username=f"bench-reviewer-{i:02d}")[0].id
        for i in range(REVIEWERS)
    ]
    compliance = User.objects.get_or_create(username="bench-compliance")[0]
    owner = User.objects.get_or_create(username="bench-owner")[0]
    for i in range(WORKFLOWS):
        rung = 1 + i % 5
        wf, _ = Workflow.objects.get_or_create(
            slug=f"bench-history-{i:03d}", defaults={"name": f"bench {i}", "rung": rung}
        )
        role_grant(workflow=wf, user=compliance, role="compliance", by=None)
        for pid in people:
            role_grant(workflow=wf, user=User(pk=pid), role="reviewer", by=None)
        if i == 7:
            role_grant(workflow=wf, user=owner, role="owner", by=None)
        actions = [
            ActionType.objects.get_or_create(workflow=wf, name=name)[0].id
            for name in ("refund.issue", "voucher.issue", "reply.send" if i else "rare.action")
        ]
        params = {
            "wf": wf.id,
            "rung": rung,
            "count": per_workflow,
            "days": DAYS,
            "actions": actions,
            "people": people,
            "npeople": len(people),
        }
        with connection.cursor() as cur:
            cur.execute(RUNS_SQL, params)
            cur.execute(EVENTS_SQL, params)
        print(f"\rseeded {i + 1}/{WORKFLOWS} workflows", end="", file=sys.stderr, flush=True)
    with connection.cursor() as cur:
        cur.execute("VACUUM ANALYZE traces_run")
        cur.execute("VACUUM ANALYZE traces_traceevent")
    print(f"\nseeded in {time.perf_counter() - started:.1f} s", file=sys.stderr)


def cases() -> list[tuple[str, str, dict]]:
    """(name, who, query): who is a username."""
    from datetime import UTC, datetime, timedelta

    from traces.models import Run

    c = "bench-compliance"
    mid = datetime.now(UTC) - timedelta(days=DAYS // 2)
    some = Run.objects.filter(workflow__slug="bench-history-042").order_by("id").first()
    order = some.proposal["params"]["order"]
    pseudonym = "<EMAIL:" + __import__("hashlib").md5(str(some.id).encode()).hexdigest()[:16] + ">"
    return [
        ("first page", c, {}),
        ("workflow", c, {"workflow": "bench-history-007"}),
        ("rung L4", c, {"rung": "4"}),
        ("status failed", c, {"status": "failed"}),
        ("status pending_review", c, {"status": "pending_review"}),
        ("status rejected", c, {"status": "rejected"}),
        ("action voucher.issue", c, {"action": "voucher.issue"}),
        ("action rare.action (1 workflow)", c, {"action": "rare.action"}),
        ("decided by a person", c, {"decider": "person"}),
        ("decided by the policy", c, {"decider": "policy"}),
        ("decided by the deadline", c, {"decider": "deadline"}),
        ("decided by nobody yet", c, {"decider": "nobody"}),
        (
            "date range (3 days)",
            c,
            {"since": str(mid.date()), "until": str((mid + timedelta(days=2)).date())},
        ),
        ("has failure", c, {"failure": "1"}),
        ("outcome wrong", c, {"outcome": "wrong"}),
        ("outcome correct", c, {"outcome": "correct"}),
        ("search common (1 in 2)", c, {"q": "parcel"}),
        ("search 1 in 20", c, {"q": "kettle"}),
        ("search 1 in 1,000", c, {"q": "zeppelin"}),
        ("search an order number (1 run)", c, {"q": order}),
        ("search a pseudonym (1 run)", c, {"q": pseudonym}),
        ("search + workflow", c, {"q": "kettle", "workflow": "bench-history-007"}),
        (
            "failure + workflow + rung",
            c,
            {"failure": "1", "workflow": "bench-history-009", "rung": "5"},
        ),
        ("owner of one workflow", "bench-owner", {}),
        ("reviewer: own decisions", "bench-reviewer-03", {}),
    ]


def measure(requests: int) -> bool:
    from django.contrib.auth.models import User
    from django.db import connection
    from django.test import Client
    from django.test.utils import setup_test_environment

    setup_test_environment()
    with connection.cursor() as cur:
        cur.execute("SELECT COUNT(*) FROM traces_run")
        runs = cur.fetchone()[0]
        cur.execute("SELECT COUNT(*) FROM traces_traceevent")
        events = cur.fetchone()[0]
    print(f"runs: {runs:,}; events: {events:,}; {requests} requests per case (after 2 warm-ups)")
    print()
    print("| case | rows | p50 ms | p95 ms | older page p95 ms |")
    print("|---|---:|---:|---:|---:|")
    clients: dict[str, Client] = {}
    ok = True
    for name, who, query in cases():
        client = clients.get(who)
        if client is None:
            client = clients[who] = Client()
            client.force_login(User.objects.get(username=who))
        timings, older = [], []
        rows = 0
        for i in range(requests + 2):
            started = time.perf_counter()
            response = client.get("/history/", query)
            elapsed = (time.perf_counter() - started) * 1000
            assert response.status_code == 200, (name, response.status_code)
            assert not response.context["errors"], response.context["errors"]
            rows = len(response.context["runs"])
            url = response.context["older_url"]
            if i >= 2:
                timings.append(elapsed)
            if url and i >= 2 and i % 3 == 0:
                started = time.perf_counter()
                assert client.get("/history/" + url).status_code == 200
                older.append((time.perf_counter() - started) * 1000)
        p50 = statistics.median(timings)
        p95 = statistics.quantiles(timings, n=20)[-1]
        o95 = f"{statistics.quantiles(older, n=20)[-1]:.0f}" if len(older) >= 2 else "—"
        ok &= p95 <= TARGET_MS
        print(f"| {name} | {rows} | {p50:.0f} | {p95:.0f} | {o95} |", flush=True)
    print()
    print(f"target: p95 <= {TARGET_MS:g} ms for every case: {'met' if ok else 'MISSED'}")
    return ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=30)
    parser.add_argument("--reseed", action="store_true")
    parser.add_argument("--runs", type=int, default=1_000_000)
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args()
    ensure_database()
    import django

    django.setup()
    seed(args.reseed, args.runs // WORKFLOWS)
    ok = measure(args.requests)
    if args.strict and not ok:
        sys.exit(1)


if __name__ == "__main__":
    main()
