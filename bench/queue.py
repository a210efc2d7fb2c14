"""Queue page and decision server times with 100,000 waiting runs (PostgreSQL).

    .venv/bin/python bench/queue.py [--runs 100000] [--samples 200]

Uses its own database (ladder_bench_queue), seeded once with SQL (re-runs reuse it).
Server time = a request through Django's whole stack (middleware, sessions, permission
checks, template) measured in-process with the test client: no network, no load generator.
Target: p95 <= 150 ms for the queue page and for a decision.
"""

import os
import sys

# This file is named like the standard library's `queue` (the issue names it): take its
# folder off the import path before anything imports `queue`.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _HERE]

import argparse  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DB = "ladder_bench_queue"
os.environ["DATABASE_URL"] = f"postgres://postgres@127.0.0.1:5432/{DB}"
os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/14")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ladder.settings")
os.environ.setdefault("LADDER_DEV_MODE", "1")  # plain http, the embedded keys
os.environ["CELERY_TASK_ALWAYS_EAGER"] = "1"

import psycopg  # noqa: E402


def ensure_database() -> None:
    with psycopg.connect("postgres://postgres@127.0.0.1:5432/postgres", autocommit=True) as c:
        if not c.execute("SELECT 1 FROM pg_database WHERE datname = %s", [DB]).fetchone():
            c.execute(f'CREATE DATABASE "{DB}"')


def seed(n: int) -> None:
    from django.contrib.auth.models import User
    from django.core.management import call_command
    from django.db import connection

    from approvals.roles import role_grant
    from ladder.models import ActionType, Workflow

    call_command("migrate", verbosity=0)
    reviewer, _ = User.objects.get_or_create(username="bench-reviewer")
    flows = []
    for i, (slug, rung, queue) in enumerate(
        [
            ("bench-l1", 1, "l1"),
            ("bench-l2", 2, "l2"),
            ("bench-l3", 3, "l3"),
            ("bench-l4", 4, "escalated"),
        ]
    ):
        wf, _ = Workflow.objects.get_or_create(slug=slug, defaults={"name": slug, "rung": rung})
        at, _ = ActionType.objects.get_or_create(
            workflow=wf,
            name="refund.issue",
            defaults={
                "value_param": "amount",
                "currency_param": "currency",
                "param_schema": {"amount": {"type": "number", "required": True}},
            },
        )
        role_grant(workflow=wf, user=reviewer, role="reviewer", by=None)
        flows.append((wf.id, at.id, rung, queue, i))
    # A reviewer who is not on these workflows and lots of other traffic: decided runs.
    with connection.cursor() as cur:
        cur.execute("SELECT count(*) FROM traces_run WHERE status = 'pending_review'")
        have = cur.fetchone()[0]
        missing = n - have
        if missing > 0:
            print(f"seeding {missing} waiting runs ...", flush=True)
            for wf_id, at_id, rung, queue, i in flows:
                share = missing // len(flows) + (1 if i < missing % len(flows) else 0)
                cur.execute(
                    """
                    INSERT INTO traces_run (id, workflow_id, idempotency_key, request_hash, rung,
                        status, queue, action_type_id, proposal, summary, value, currency, flags,
                        escalation_reason, execution_attempts, outcome, version, trace_head,
                        trace_length, created_at, updated_at)
                    SELECT gen_random_uuid(), %s, 'bench-' || gen_random_uuid(), '', %s,
                        'pending_review', %s, %s,
                        jsonb_build_object('action', 'refund.issue', 'params',
                            jsonb_build_object('amount', (g %% 500) + 0.5, 'currency', 'EUR')),
                        'Refund order A-' || g, (g %% 500) + 0.5, 'EUR', '[]'::jsonb, '', 0, '',
                        1, '', 0, now() - (g || ' seconds')::interval, now()
                    FROM generate_series(1, %s) AS g
                    """,
                    [wf_id, rung, queue, at_id, share],
                )
            cur.execute(
                """
                INSERT INTO traces_run (id, workflow_id, idempotency_key, request_hash, rung,
                    status, queue, action_type_id, proposal, summary, value, currency, flags,
                    escalation_reason, execution_attempts, outcome, version, trace_head,
                    trace_length, created_at, updated_at)
                SELECT gen_random_uuid(), %s, 'bench-done-' || gen_random_uuid(), '', 3,
                    'executed', 'l3', %s, '{}'::jsonb, '', 1, 'EUR', '[]'::jsonb, '', 1, '', 2,
                    '', 0, now() - (g || ' seconds')::interval, now()
                FROM generate_series(1, %s) AS g
                """,
                [flows[2][0], flows[2][1], n],
            )
            cur.execute("ANALYZE traces_run")


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def timed(fn, samples: int) -> list[float]:
    out = []
    for _ in range(samples):
        start = time.perf_counter()
        fn()
        out.append((time.perf_counter() - start) * 1000)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--samples", type=int, default=200)
    args = parser.parse_args()
    ensure_database()
    import django

    django.setup()
    from django.conf import settings
    from django.contrib.auth.models import User
    from django.test import Client

    settings.ALLOWED_HOSTS = ["*"]
    seed(args.runs)

    from approvals import services
    from approvals.review import snapshot_hash
    from traces.auth import AgentAuth
    from traces.models import Run, RunStatus
    from traces.services.gateway import run_submit

    reviewer = User.objects.get(username="bench-reviewer")
    client = Client()
    client.force_login(reviewer)
    waiting = Run.objects.filter(status=RunStatus.PENDING_REVIEW).count()
    print(f"waiting runs: {waiting}")

    first = client.get("/")
    assert first.status_code == 200 and first.content.count(b"data-row") == 50
    import html
    import re

    match = re.search(r'href="(\?[^"]*after=[^"]*)"[^>]*rel="next"', first.content.decode())
    assert match, "no next-page link on the first page"
    deep_cursor = html.unescape(match.group(1))
    results = {}
    results["queue: first page"] = timed(lambda: client.get("/"), args.samples)
    results["queue: filtered (rung l2)"] = timed(lambda: client.get("/?queue=l2"), args.samples)
    results["queue: filtered (workflow+action)"] = timed(
        lambda: client.get("/?workflow=bench-l3&action=refund.issue"), args.samples
    )
    results["queue: next page (keyset)"] = timed(
        lambda: client.get("/" + deep_cursor), args.samples
    )
    results["queue: htmx partial"] = timed(
        lambda: client.get("/?queue=l3", headers={"HX-Request": "true"}), args.samples
    )

    # Decisions on real runs submitted through the gateway service (with trace events).
    from ladder.models import Workflow

    wf = Workflow.objects.get(slug="bench-l3")
    auth = AgentAuth(token_id=0, prefix="lat_bench", workflow_ids=frozenset([wf.id]))
    stamp = time.time_ns()
    runs = []
    for i in range(args.samples):
        run, _ = run_submit(
            auth=auth,
            body={
                "workflow": wf.slug,
                "idempotency_key": f"decide-{stamp}-{i}",
                "input": {"message": f"refund order A-{i} to ana@example.com"},
                "tool_calls": [
                    {"name": "orders.lookup", "arguments": {"id": i}, "result": {"t": 9}}
                ],
                "output": None,
                "proposal": {
                    "action": "refund.issue",
                    "params": {"amount": 10.0 + i, "currency": "EUR"},
                },
            },
        )
        runs.append(run)
    decide_ms = []
    for run in runs:
        client.get(f"/runs/{run.id}/")  # what the reviewer opens (snapshot + review_shown)
        fresh = Run.objects.select_related("workflow").get(pk=run.pk)
        data = {
            "verdict": "approve",
            "seen_version": fresh.version,
            "seen_hash": snapshot_hash(services.run_snapshot(run=fresh)),
        }
        start = time.perf_counter()
        resp = client.post(f"/runs/{run.id}/decide", data, headers={"HX-Request": "true"})
        decide_ms.append((time.perf_counter() - start) * 1000)
        assert resp.status_code == 200, resp.content[:300]
    results["decision (approve, htmx, next run loads)"] = decide_ms
    open_ms = timed(lambda: client.get(f"/runs/{runs[-1].id}/"), args.samples)
    results["run page (open a decided run)"] = open_ms

    print(f"\n| measurement ({waiting:,} waiting runs) | p50 ms | p95 ms | target p95 |")
    print("|---|---|---|---|")
    for name, values in results.items():
        p95 = percentile(values, 95)
        target = "≤ 150 ms " + ("PASS" if p95 <= 150 else "FAIL")
        print(f"| {name} | {statistics.median(values):.1f} | {p95:.1f} | {target} |")


if __name__ == "__main__":
    main()
