"""Backtest of a policy over 100,000 past L3 runs (PostgreSQL), end to end.

    .venv/bin/python bench/backtest.py                 # seed once, 3 rounds per measurement
    .venv/bin/python bench/backtest.py --rounds 5 --runs 100000
    .venv/bin/python bench/backtest.py --no-worker     # skip the real Celery worker

Uses its own database, `ladder_bench_backtest` (created and migrated if missing; the
history is seeded once with COPY and reused, `--reseed` to redo it). The history: one L3
workflow with the six action types of bench/policy_envelope.py and 100,000 runs a person
decided, spread over 90 days, each with its own proposal from that file's generator
(5,000 customers, six countries and two more, amounts 1.00-230.00 in EUR/USD/GBP, 4% with
a flag, 3% without a reason), 80% approved (executed) and 20% rejected. Bulk insert is for
this setup only; everything measured goes through the code the pages use.

Measured, per policy (the 100-rule envelope of bench/policy_envelope.py, and the seed
demo's small draft: a 200 EUR cap and an escalation on fraud_adjacent):
- task: `backtest_start` with Celery eager, as `make run` runs tasks: the row, then the
  task in this process until the backtest is done (count, streaming in chunks with
  progress updates, simulation, result);
- worker: the same through a real Celery worker (`celery worker -P solo`, Redis broker):
  from `backtest_start` and its dispatch to the row reading `done`;
- and the parts: the streaming query alone (rows read, nothing decided) and the
  simulation alone (rows already in memory).
Target: 100,000 runs in <= 10 s end to end.
"""

import os
import sys

# bench/ also holds queue.py, named like the standard library's `queue` (Celery and psycopg
# import it): take this folder off the import path before anything else.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _HERE]

import argparse  # noqa: E402
import gc  # noqa: E402
import random  # noqa: E402
import signal  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402
from datetime import UTC, datetime, timedelta  # noqa: E402
from decimal import Decimal  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DB = "ladder_bench_backtest"
DATABASE_URL = f"postgres://postgres@127.0.0.1:5432/{DB}"
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/13")
os.environ["DATABASE_URL"] = DATABASE_URL
os.environ["REDIS_URL"] = REDIS_URL
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ladder.settings")
os.environ.setdefault("LADDER_DEV_MODE", "1")  # plain http, the embedded keys
os.environ["CELERY_TASK_ALWAYS_EAGER"] = "0"  # the worker measurement sends real tasks

import psycopg  # noqa: E402

from bench.policy_envelope import ACTIONS, ALLOWED, envelope, proposals  # noqa: E402

WORKFLOW = "bench-backtest"
TARGET_SECONDS = 10.0
DAYS = 90
SMALL_POLICY = {
    "audit_sample_rate": 0.05,
    "rules": [
        {
            "id": "actions",
            "kind": "allow_actions",
            "actions": ALLOWED,
            "control": "allowed_tools",
        },
        {
            "id": "cap",
            "kind": "value_cap",
            "action": "refund.issue",
            "max": "200.00",
            "currency": "EUR",
            "then": "escalate",
            "control": "value_cap",
        },
        {
            "id": "fraud",
            "kind": "flag",
            "flag": "fraud_adjacent",
            "then": "escalate",
            "control": "rbac",
        },
    ],
}


def ensure_database() -> None:
    with psycopg.connect("postgres://postgres@127.0.0.1:5432/postgres", autocommit=True) as c:
        if not c.execute("SELECT 1 FROM pg_database WHERE datname = %s", [DB]).fetchone():
            c.execute(f'CREATE DATABASE "{DB}"')


def seed(n: int, reseed: bool):
    """The workflow, a reviewer, and n decided L3 runs (COPY; reused when present)."""
    from django.contrib.auth.models import User
    from django.core.management import call_command

    from ladder.models import ActionType, Workflow
    from traces.models import Backtest, Run

    call_command("migrate", verbosity=0)
    reviewer, _ = User.objects.get_or_create(username="bench-reviewer")
    wf, _ = Workflow.objects.get_or_create(slug=WORKFLOW, defaults={"name": WORKFLOW, "rung": 3})
    action_ids = {}
    for name, (value_param, currency_param) in ACTIONS.items():
        action, _ = ActionType.objects.get_or_create(
            workflow=wf,
            name=name,
            defaults={"value_param": value_param, "currency_param": currency_param},
        )
        action_ids[name] = action.id
    have = Run.objects.filter(workflow=wf).count()
    if have == n and not reseed:
        print(f"reusing the {have:,} runs of {WORKFLOW}", file=sys.stderr)
        return wf, reviewer
    print(f"seeding {n:,} runs ...", file=sys.stderr, flush=True)
    started = time.perf_counter()
    from django.db import connection

    with connection.cursor() as cur:
        # Bench setup only: runs are history, and their guard refuses deletes.
        Backtest.objects.filter(workflow=wf).delete()
        cur.execute("ALTER TABLE traces_run DISABLE TRIGGER USER")
        cur.execute("DELETE FROM traces_run WHERE workflow_id = %s", [wf.id])
        cur.execute("ALTER TABLE traces_run ENABLE TRIGGER USER")
        _copy_runs(cur.cursor, wf.id, reviewer, action_ids, n)
        cur.execute("ANALYZE traces_run")
    print(f"seeded in {time.perf_counter() - started:.1f} s", file=sys.stderr)
    return wf, reviewer


def _copy_runs(cur, workflow_id: int, reviewer, action_ids: dict, n: int) -> None:
    from psycopg.types.json import Jsonb

    rng = random.Random(7)
    start = datetime.now(UTC) - timedelta(days=DAYS)
    offsets = sorted(rng.uniform(0, DAYS * 86400) for _ in range(n))
    columns = (
        "id, workflow_id, idempotency_key, request_hash, rung, status, queue, "
        "action_type_id, proposal, summary, value, currency, flags, escalation_reason, "
        "decision, decided_by_id, decided_at, execution_attempts, outcome, audit, version, "
        "trace_head, trace_length, created_at, updated_at"
    )
    with cur.copy(f"COPY traces_run ({columns}) FROM STDIN") as copy:
        for i, (proposal, offset) in enumerate(zip(proposals(n, seed=11), offsets, strict=True)):
            at = start + timedelta(seconds=offset)
            decided = at + timedelta(minutes=rng.uniform(1, 240))
            rejected = rng.random() < 0.2
            value_param, currency_param = ACTIONS[proposal["action"]]
            params = proposal["params"]
            value = Decimal(params[value_param]) if value_param else None
            currency = params.get(currency_param, "") if currency_param else ""
            verdict = "rejected" if rejected else "approved"
            decision = {
                "verdict": verdict,
                "action": proposal["action"],
                "params": params,
                "reason": "not owed" if rejected else "",
                "by": reviewer.username,
                "at": decided.isoformat(),
            }
            summary = f"{proposal['action']} {params.get('customer', '')} {value or ''}"
            copy.write_row(
                (
                    uuid.uuid4(),
                    workflow_id,
                    f"bench-{i}",
                    "",
                    3,
                    "rejected" if rejected else "executed",
                    "l3",
                    action_ids[proposal["action"]],
                    Jsonb(proposal),
                    summary.strip()[:300],
                    value,
                    currency,
                    Jsonb(proposal["flags"]),
                    "",
                    Jsonb(decision),
                    reviewer.id,
                    decided,
                    0 if rejected else 1,
                    "",
                    "",
                    2,
                    "",
                    0,
                    at,
                    decided,
                )
            )


def timed_rounds(rounds: int, fn) -> list[float]:
    out = []
    for _ in range(rounds):
        started = time.perf_counter()
        fn()
        out.append(time.perf_counter() - started)
    return out


def measure_task(wf, reviewer, document: dict) -> float:
    """`backtest_start` with Celery eager (as `make run` runs tasks): the row, the task
    sent after commit and run in this process, until the backtest is done."""
    from ladder.celery import app
    from traces.models import Backtest
    from traces.services.backtests import backtest_start

    app.conf.task_always_eager = True
    try:
        started = time.perf_counter()
        backtest = backtest_start(workflow=wf, by=reviewer, document=document)
        elapsed = time.perf_counter() - started
    finally:
        app.conf.task_always_eager = False
    backtest.refresh_from_db()
    assert backtest.state == Backtest.State.DONE, backtest.error
    return elapsed


def measure_parts(wf, document: dict) -> tuple[float, float, dict]:
    from ladder.policies import policy_validate, workflow_actions
    from ladder.policy import compile_policy
    from traces.backtest import backtest
    from traces.services.backtests import CHUNK, backtest_history

    compiled = compile_policy(policy_validate(wf, document), actions=workflow_actions(wf))
    gc.disable()  # as the task pauses it while a history streams (traces/services/backtests.py)
    try:
        started = time.perf_counter()
        rows = list(backtest_history(wf.id).iterator(chunk_size=CHUNK))
        streaming = time.perf_counter() - started
        started = time.perf_counter()
        result = backtest(compiled, rows)
        simulation = time.perf_counter() - started
    finally:
        gc.enable()
    return streaming, simulation, result


def start_worker() -> subprocess.Popen:
    env = {**os.environ, "CELERY_TASK_ALWAYS_EAGER": "0"}
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "ladder", "worker", "-P", "solo", "-l", "warning"],
        cwd=ROOT,
        env=env,
        stdout=sys.stderr,  # its banner and warnings go with the progress, not the figures
        start_new_session=True,
    )
    return worker


def stop_worker(worker: subprocess.Popen) -> None:
    if worker.poll() is None:
        os.killpg(worker.pid, signal.SIGTERM)
        try:
            worker.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait()


def measure_worker(wf, reviewer, document: dict, timeout: float = 120.0) -> float:
    from django.db import transaction

    from traces.models import Backtest
    from traces.services.backtests import backtest_start

    started = time.perf_counter()
    with transaction.atomic():  # the task is sent when this commits
        backtest = backtest_start(workflow=wf, by=reviewer, document=document)
    while time.perf_counter() - started < timeout:
        state = Backtest.objects.filter(pk=backtest.pk).values_list("state", flat=True).get()
        if state in (Backtest.State.DONE, Backtest.State.FAILED):
            elapsed = time.perf_counter() - started
            assert state == Backtest.State.DONE, "the worker's backtest failed"
            return elapsed
        time.sleep(0.02)  # polling the row, bounded by `timeout`
    raise SystemExit(f"the worker did not finish a backtest within {timeout:.0f} s")


def warm_worker(wf, reviewer) -> None:
    """One small backtest through the worker first, so its start-up is not measured."""
    tiny = dict(SMALL_POLICY)
    from traces.models import Backtest

    measure_worker(wf, reviewer, tiny, timeout=60.0)
    Backtest.objects.filter(workflow=wf).delete()


def fmt(values: list[float]) -> str:
    return f"{statistics.median(values):.2f} (min {min(values):.2f}, max {max(values):.2f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--reseed", action="store_true")
    parser.add_argument("--no-worker", action="store_true")
    args = parser.parse_args()
    ensure_database()
    import django

    django.setup()
    from traces.models import Backtest

    wf, reviewer = seed(args.runs, args.reseed)
    policies = {"100-rule envelope": envelope(), "small draft (cap, fraud)": SMALL_POLICY}
    figures = {}
    for name, document in policies.items():
        task = timed_rounds(args.rounds, lambda d=document: measure_task(wf, reviewer, d))
        streaming, simulation, result = measure_parts(wf, document)
        figures[name] = [task, [], streaming, simulation, result]
    if not args.no_worker:
        worker = start_worker()
        try:
            warm_worker(wf, reviewer)
            for name, document in policies.items():
                figures[name][1] = timed_rounds(
                    args.rounds, lambda d=document: measure_worker(wf, reviewer, d)
                )
        finally:
            stop_worker(worker)
    Backtest.objects.filter(workflow=wf).delete()
    rows = [(name, *values) for name, values in figures.items()]

    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(
        f"\n{args.runs:,} past L3 runs, {args.rounds} rounds; seconds: median (min, max); "
        f"{os.cpu_count()} CPUs, load average at the end {load}\n"
    )
    print("| policy | task, end to end | via a Celery worker | streaming only | simulation only "
          "| target |")  # fmt: skip
    print("|---|---|---|---|---|---|")
    for name, task, via_worker, streaming, simulation, _ in rows:
        worst = max(task + via_worker)
        verdict = "PASS" if worst <= TARGET_SECONDS else "MISS"
        print(
            f"| {name} | {fmt(task)} | {fmt(via_worker) if via_worker else '—'} "
            f"| {streaming:.2f} | {simulation:.2f} | ≤ {TARGET_SECONDS:.0f} s {verdict} |"
        )
    print()
    for name, *_, result in rows:
        mistakes = result["mistakes"]
        value = ", ".join(f"{v} {c}" for c, v in mistakes["value"].items())
        print(
            f"{name}: allowed {result['allowed']:,}, escalated {result['escalated']:,}, "
            f"denied {result['denied']:,}; would-be mistakes {mistakes['count']:,} ({value})"
        )


if __name__ == "__main__":
    main()
