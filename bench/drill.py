"""A timed rollback drill of 50 runs by two real Celery workers (PostgreSQL, Redis).

    .venv/bin/python bench/drill.py                  # one drill of 50, no other traffic
    .venv/bin/python bench/drill.py --under-load     # the same while the gateway is driven
    .venv/bin/python bench/drill.py --rounds 3 --batch 50 --clients 8

Uses its own database, `ladder_bench_drill` (created and migrated if missing; nothing is
emptied: each round adds its own runs), and its own redis-server on a free port. It starts
two worker processes, `celery -A ladder worker -c 1` each (prefork, as deployed). Each
round builds `--batch` executed runs: submitted through the gateway's service
(run_submit) to an L4 workflow whose policy allows refunds, executed by the workers
(refund.issue, the demo ledger). Then `drill_start` is called and the bench polls the drill
until it is finished.

Reported per round: the drill's own duration (started_at to the last item's finish, what
the drill records and the gate shows), the wall time from the call to the bench seeing it
finished, and reverted/failed counts. With `--under-load`, a gunicorn gateway
(gunicorn.conf.py, 2 processes x 8 threads) is started too, and `--clients` closed-loop
clients (a process of threads, keep-alive connections) post distinct runs to an L3
workflow from before the drill until after it; reported: the gateway's requests a second
during the drill, and whether the drill recorded itself as under load
(LADDER_DRILL_LOAD_MIN_RPS, docs/drills.md). Target: 50 reverted in <= 10 s.
"""

import argparse
import http.client
import json
import multiprocessing
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _HERE]
sys.path.insert(0, str(ROOT))
DB = "ladder_bench_drill"
DATABASE_URL = f"postgres://postgres@127.0.0.1:5432/{DB}"
HOST = "127.0.0.1"
TARGET_SECONDS = 10.0
PYTHON = sys.executable
ALLOW = {
    "audit_sample_rate": 0,
    "rules": [
        {
            "id": "actions",
            "kind": "allow_actions",
            "actions": ["refund.issue"],
            "control": "allowed_tools",
        }
    ],
}


def log(msg: str) -> None:
    print(f"[drill bench] {msg}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


class Proc:
    """A child in its own session (stopped as a group), its output in a temporary file."""

    def __init__(self, argv: list[str], env: dict, name: str):
        self.name = name
        self.log = tempfile.NamedTemporaryFile(prefix=f"bench-{name}-", suffix=".log")  # noqa: SIM115
        self.proc = subprocess.Popen(
            argv, cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip

    def output(self) -> str:
        return Path(self.log.name).read_text(errors="replace")

    def wait_for(self, text: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.output():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"{self.name} did not start:\n{self.output()[-3000:]}")
            time.sleep(0.1)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        self.log.close()


def ensure_database() -> None:
    import psycopg

    with psycopg.connect("postgres://postgres@127.0.0.1:5432/postgres", autocommit=True) as c:
        if not c.execute("SELECT 1 FROM pg_database WHERE datname = %s", [DB]).fetchone():
            c.execute(f'CREATE DATABASE "{DB}"')


# -- the load: a process of closed-loop clients ------------------------------------------


def _load_client(port: int, token: str, slug: str, stop, done: list, errors: list) -> None:
    conn = http.client.HTTPConnection(HOST, port, timeout=30)
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}
    while not stop.is_set():
        key = uuid.uuid4().hex
        body = {
            "workflow": slug,
            "idempotency_key": key,
            "input": {"message": f"Refund for order {key[:8]}, it arrived broken"},
            "proposal": {
                "action": "refund.issue",
                "params": {"amount": 20, "currency": "EUR", "order": key[:8]},
            },
        }
        try:
            conn.request("POST", "/api/v1/runs", body=json.dumps(body), headers=headers)
            resp = conn.getresponse()
            resp.read()
            (done if resp.status in (200, 201) else errors).append(time.time())
        except OSError:
            errors.append(time.time())
            conn.close()
            conn = http.client.HTTPConnection(HOST, port, timeout=30)


def load_process(port: int, token: str, slug: str, clients: int, stop, out) -> None:
    """Runs in a child process: `clients` threads post until `stop` is set, then the
    completion times go back through `out`."""
    halt = threading.Event()
    done: list[float] = []
    errors: list[float] = []
    threads = [
        threading.Thread(target=_load_client, args=(port, token, slug, halt, done, errors))
        for _ in range(clients)
    ]
    for t in threads:
        t.start()
    stop.wait()
    halt.set()
    for t in threads:
        t.join()
    out.put({"done": done, "errors": errors})


# -- the bench ----------------------------------------------------------------------------


def setup(batch_total: int):
    """Workflows and tokens (made once, reused)."""
    from ladder.models import ActionType, Workflow
    from ladder.services import certificate_issue
    from traces.services.policy import policy_set
    from traces.services.tokens import token_create

    wf, created = Workflow.objects.get_or_create(
        slug="bench-drill", defaults={"name": "Bench drill", "rung": 4}
    )
    if created:
        ActionType.objects.create(
            workflow=wf,
            name="refund.issue",
            value_param="amount",
            currency_param="currency",
            executor="server",
            executor_path="traces.demo_executors.refund_issue",
            reversible=True,
            compensating_action="refund.reverse",
        )
        ActionType.objects.create(
            workflow=wf,
            name="refund.reverse",
            executor="server",
            executor_path="traces.demo_executors.refund_reverse",
        )
        policy_set(workflow=wf, document=ALLOW, by=None)
        certificate_issue(
            workflow=wf,
            rung=4,
            policy_version=None,
            evidence_hash="0" * 64,
            approved_by=None,
            promotion_ref="bench/drill.py",
        )
    load, created = Workflow.objects.get_or_create(
        slug="bench-drill-load", defaults={"name": "Bench drill load", "rung": 3}
    )
    if created:
        ActionType.objects.create(
            workflow=load, name="refund.issue", value_param="amount", currency_param="currency"
        )
    wf.refresh_from_db()
    _token, raw = token_create(name="bench drill", workflows=[wf, load])
    return wf, load, raw


def build_runs(wf, n: int) -> list:
    """n runs allowed by the policy at submission; the workers execute them."""
    from django.db import transaction

    from traces.auth import AgentAuth
    from traces.models import Run
    from traces.services.gateway import run_submit

    auth = AgentAuth(token_id=0, prefix="bench", workflow_ids=frozenset([wf.pk]))
    ids = []
    for i in range(n):
        key = uuid.uuid4().hex
        with transaction.atomic():
            run, _ = run_submit(
                auth=auth,
                body={
                    "workflow": wf.slug,
                    "idempotency_key": key,
                    "input": {"message": f"refund order {i}"},
                    "proposal": {
                        "action": "refund.issue",
                        "params": {"amount": 20, "currency": "EUR", "order": key[:8]},
                    },
                },
            )
        ids.append(run.pk)
    deadline = time.monotonic() + 120
    while Run.objects.filter(pk__in=ids, status="executed").count() < n:
        if time.monotonic() > deadline:
            raise SystemExit("the workers did not execute the runs within 120 s")
        time.sleep(0.1)
    return ids


def one_drill(wf, batch: int) -> dict:
    from traces.models import RollbackDrill
    from traces.services.drills import drill_start

    called = time.monotonic()
    drill = drill_start(workflow=wf, batch=batch, trigger=RollbackDrill.Trigger.COMMAND)
    deadline = called + 120
    while not drill.finished:
        if time.monotonic() > deadline:
            raise SystemExit(f"drill {drill.pk} not finished after 120 s")
        time.sleep(0.02)
        drill.refresh_from_db()
    return {
        "drill": drill.pk,
        "picked": drill.picked,
        "reverted": drill.succeeded,
        "failed": drill.failed,
        "duration_s": round(drill.duration_seconds, 3),
        "wall_s": round(time.monotonic() - called, 3),
        "started_at": drill.started_at.timestamp(),
        "finished_at": drill.finished_at.timestamp(),
        "load_runs": drill.load_runs,
        "load_rps": round(drill.load_rps, 1),
        "under_load": drill.under_load,
        "passed": drill.passed,
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batch", type=int, default=50)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--under-load", action="store_true", help="drive the gateway meanwhile")
    ap.add_argument("--clients", type=int, default=8, help="load clients (with --under-load)")
    ap.add_argument("--warmup", type=float, default=3.0, help="load seconds before the drill")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)

    redis_bin = shutil.which("redis-server") or "/usr/bin/redis-server"
    redis_port = free_port()
    redis_url = f"redis://{HOST}:{redis_port}/0"
    env = {
        **os.environ,
        "DATABASE_URL": DATABASE_URL,
        "REDIS_URL": redis_url,
        "CELERY_TASK_ALWAYS_EAGER": "0",
        "LADDER_DEV_MODE": "1",
        "DJANGO_SETTINGS_MODULE": "ladder.settings",
        "LADDER_RATE_LIMIT_PER_SECOND": "1000000",
        "LADDER_RATE_LIMIT_BURST": "1000000",
        "DB_CONN_MAX_AGE": "3600",
    }
    os.environ.update(env)
    procs: list[Proc] = []
    try:
        redis = Proc(
            [redis_bin, "--port", str(redis_port), "--bind", HOST, "--save", "",
             "--appendonly", "no"], env, "redis",
        )  # fmt: skip
        procs.append(redis)
        redis.wait_for("Ready to accept connections", 10)
        ensure_database()
        subprocess.run(
            [PYTHON, "manage.py", "migrate", "--noinput"], cwd=ROOT, env=env, check=True,
            capture_output=True,
        )  # fmt: skip
        import django

        django.setup()
        wf, load_wf, token = setup(args.batch)
        for n in (1, 2):
            worker = Proc(
                [PYTHON, "-m", "celery", "-A", "ladder", "worker", "-c", "1", "-l", "info",
                 "-n", f"drill{n}@%h", "--without-mingle", "--without-gossip"], env,
                f"worker{n}",
            )  # fmt: skip
            procs.append(worker)
        for worker in procs[1:]:
            worker.wait_for(" ready.", 60)
        gateway_port = None
        if args.under_load:
            gateway_port = free_port()
            gunicorn = Proc(
                [PYTHON, "-m", "gunicorn", "-c", "gunicorn.conf.py"],
                {**env, "GUNICORN_BIND": f"{HOST}:{gateway_port}", "WEB_CONCURRENCY": "2",
                 "DEBUG": "0", "LOG_LEVEL": "WARNING"}, "gunicorn",
            )  # fmt: skip
            procs.append(gunicorn)
            gunicorn.wait_for("Booting worker", 30)
            time.sleep(1.0)  # both processes importing the app
        results = []
        for r in range(args.rounds):
            log(f"round {r + 1}: building {args.batch} executed runs")
            build_runs(wf, args.batch)
            load = None
            if args.under_load:
                ctx = multiprocessing.get_context("spawn")
                stop, out = ctx.Event(), ctx.Queue()
                load = ctx.Process(
                    target=load_process,
                    args=(gateway_port, token, load_wf.slug, args.clients, stop, out),
                )
                load.start()
                time.sleep(args.warmup)
            log(f"round {r + 1}: drill of {args.batch}")
            result = one_drill(wf, args.batch)
            if load is not None:
                time.sleep(0.5)
                stop.set()
                times = out.get(timeout=60)
                load.join(timeout=30)
                a, b = result["started_at"], result["finished_at"]
                during = [t for t in times["done"] if a <= t < b]
                result["gateway_requests"] = len(during)
                result["gateway_rps"] = round(len(during) / (b - a), 1) if b > a else 0.0
                result["gateway_errors"] = len(times["errors"])
            result.pop("started_at")
            result.pop("finished_at")
            results.append(result)
            log(f"round {r + 1}: {result}")
    finally:
        for proc in reversed(procs):
            proc.stop()
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        load_cols = " gateway req/s (during) | errors |" if args.under_load else ""
        print(
            f"| round | reverted | failed | drill duration s | wall s | under load "
            f"(runs/s recorded) |{load_cols}"
        )
        print("|---|---|---|---|---|---|" + ("---|---|" if args.under_load else ""))
        for i, r in enumerate(results, 1):
            extra = f" {r['gateway_rps']} | {r['gateway_errors']} |" if args.under_load else ""
            print(
                f"| {i} | {r['reverted']}/{r['picked']} | {r['failed']} | {r['duration_s']} | "
                f"{r['wall_s']} | {r['under_load']} ({r['load_rps']}) |{extra}"
            )
    ok = all(r["passed"] and r["duration_s"] <= TARGET_SECONDS for r in results)
    log(f"target (all reverted in <= {TARGET_SECONDS:g} s): {'met' if ok else 'MISSED'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
