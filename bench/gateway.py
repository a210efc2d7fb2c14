"""Gateway benchmark: POST /api/v1/runs against a minimal insert-one-row endpoint.

Both endpoints are served by the same gunicorn server (the documented deployment:
traces.server.LongPollWorker, gthread with parked long polls, 2 workers x 8 threads,
DEBUG off, PostgreSQL + Redis), from bench/baseline.py, which is the project's own WSGI
app plus `POST /bench/baseline`. So the gap measured is the gateway's own work (auth,
validation, redaction, idempotency, decision, hash chain, a run and its trace events),
not a different server, settings or middleware stack.

    .venv/bin/python bench/gateway.py                 # ~1 min, prints a markdown table
    .venv/bin/python bench/gateway.py --json          # the same figures as JSON
    .venv/bin/python bench/gateway.py --strict        # exit 1 when a target is missed

It creates (if missing) and migrates its own database, `ladder_bench`, and empties its run
tables at the start (it refuses to empty a database whose name lacks "bench"). Only
127.0.0.1 is ever contacted. Every loop ends by itself (duration and request caps), and
the gunicorn server and the load-generator processes are stopped on exit, Ctrl-C included.
See bench/README.md for the figures and what they mean.
"""

# ruff: noqa: E402 - the imports below must come after the sys.path fix
from __future__ import annotations

import os
import sys

# bench/ also holds queue.py, named like the standard library's `queue` (multiprocessing
# and psycopg import it): take this folder off the import path before anything else.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _HERE]

import argparse
import http.client
import json
import math
import multiprocessing
import random
import signal
import socket
import statistics
import subprocess
import tempfile
import threading
import time
import traceback
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql

REPO = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
HOST = "127.0.0.1"  # the only host this script ever talks to

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/ladder_bench"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
WORKFLOW = "bench-refunds"
TOKEN_NAME = "bench/gateway.py"  # noqa: S105 - a label, not a secret
GATEWAY_PATH = "/api/v1/runs"
BASELINE_PATH = "/bench/baseline"

# Same text as bench/baseline.py's BASELINE_TABLE_SQL (not imported: that module sets up
# Django when imported, which this process must not do).
BASELINE_TABLE_SQL = (
    "CREATE TABLE IF NOT EXISTS bench_baseline "
    "(id bigserial PRIMARY KEY, body jsonb, created_at timestamptz DEFAULT now())"
)

NOISE_CORES = 0.25  # other processes' CPU above which a phase's figures are flagged

TARGETS = {
    "throughput_ratio": 0.50,  # gateway req/s / baseline req/s at high concurrency, >=
    "p99_ratio": 2.0,  # gateway p99 / baseline p99 at high concurrency, <=
    "p99_low_ms": 50.0,  # gateway p99 at low concurrency, <=
}

REFUND_SCHEMA = {
    "order_id": {"type": "string", "required": True},
    "amount": {"type": "number", "required": True},
    "currency": {"type": "string"},
    "reason": {"type": "string"},
}
CREDIT_SCHEMA = {
    "order_id": {"type": "string", "required": True},
    "amount": {"type": "number", "required": True},
    "currency": {"type": "string"},
}

# Runs in a child process (`python -c`, cwd = repo root) with the bench's environment.
SEED_CODE = """
import json, sys
import django
django.setup()
from ladder.models import ActionType, Workflow
from traces.models import AgentToken
from traces.services.tokens import token_create

slug, token_name, refund_schema, credit_schema, rung = sys.argv[1:6]
wf, _ = Workflow.objects.update_or_create(
    slug=slug,
    defaults={"name": "Bench refunds", "rung": int(rung), "personal_fields": ["customer_name"]},
)
ActionType.objects.update_or_create(
    workflow=wf, name="refund.issue",
    defaults={"param_schema": json.loads(refund_schema), "value_param": "amount",
              "currency_param": "currency", "reversible": False},
)
ActionType.objects.update_or_create(
    workflow=wf, name="credit.issue",
    defaults={"param_schema": json.loads(credit_schema), "value_param": "amount",
              "currency_param": "currency", "reversible": True},
)
if int(rung) >= 4:
    # The 100-rule envelope of bench/policy.py, in force: its other action types too.
    from bench.policy_envelope import ACTIONS, envelope
    from traces.services.policy import policy_set
    for name, (value_param, currency_param) in ACTIONS.items():
        if name not in ("refund.issue", "credit.issue"):
            ActionType.objects.update_or_create(
                workflow=wf, name=name,
                defaults={"value_param": value_param, "currency_param": currency_param},
            )
    version = policy_set(
        workflow=wf, document=envelope(), by=None, note="bench/gateway.py --rung 4"
    )
    # The gateway acts at L4 only under a valid autonomy certificate (docs/certificates.md).
    from ladder.certificates import evidence_hash
    from ladder.services import certificate_issue
    certificate_issue(workflow=wf, rung=int(rung), policy_version=version.number,
                      evidence_hash=evidence_hash({"bench": slug}), approved_by=None,
                      promotion_ref="bench/gateway.py")
AgentToken.objects.filter(name=token_name).delete()
_token, raw = token_create(name=token_name, workflows=[wf])
print("TOKEN=" + raw)
"""


class BenchError(Exception):
    """A setup or server problem: reported plainly, no traceback."""


# -- request bodies ---------------------------------------------------------------------

FIRST_NAMES = [
    "Jane", "Omar", "Li", "Sofia", "Tom", "Inês", "Pieter", "Amara", "Luca", "Mia", "Mehmet",
    "Priya", "Olga", "Sven", "Aylin", "João", "Fatima", "Hiroshi", "Zofia", "Kwame",
]  # fmt: skip
LAST_NAMES = [
    "Silva", "Müller", "Yılmaz", "Sharma", "Johansson", "Ivanova", "Nowak", "García",  # noqa: RUF001
    "Okafor", "Rossi", "de Vries", "Dubois", "Tanaka", "O'Brien", "Hansen", "Kowalski",
]  # fmt: skip
STREETS = ["Elm Street", "High Street", "Hauptstraße", "Kerkstraat", "Oak Avenue"]
PHONE_FORMATS = [
    lambda r: f"+44 20 7946 {r.randrange(10_000):04d}",
    lambda r: f"+1 212-{r.randrange(200, 1000)}-{r.randrange(10_000):04d}",
    lambda r: f"+49 30 {r.randrange(1000, 10_000)} {r.randrange(10_000):04d}",
    lambda r: f"+31 20 {r.randrange(100, 1000)} {r.randrange(10_000):04d}",
    lambda r: f"020 7946 {r.randrange(10_000):04d}",  # national GB format
]


# At --rung 4 the proposal also carries the parameters the 100-rule envelope reads
# (bench/policy_envelope.py), with values inside it, and a customer from a pool: repeat
# customers as real traffic has them (first-seen and per-customer limits see both kinds).
L4_PARAMS = {
    "customer": "@CUSTOMER@",
    "country": "DE",
    "channel": "email",
    "tier": "pro",
    "items": 2,
    "order_age_days": 12,
    "customer_age_days": 400,
}
CUSTOMER_POOL = 20_000


def body_template(workflow: str, *, rung: int = 3) -> str:
    """A realistic run (~1.6 KB): a customer message with an email and a phone number, two
    tool calls, the agent's reply and a refund proposal with two alternatives. The %(...)s
    slots are filled per request, so the server never sees the same PII twice in a row
    (the redactor memoises phone windows; a constant number would flatter it)."""
    body = {
        "workflow": workflow,
        "idempotency_key": "@KEY@",
        "input": {
            "channel": "email",
            "locale": "en-GB",
            "customer_name": "@NAME@ Example",
            "customer_message": (
                "Hello, I am @FULLNAME@ (ticket @TICKET@). My order @ORDER@ arrived today "
                "but one of the two mugs was shattered in the box. I would like a refund "
                "for it please. You can reach me at @EMAIL@ or call @PHONE@ after 5pm, "
                "or write to @STREET@. Thanks, @FIRST@"
            ),
            "received_at": "2025-03-14T17:02:11Z",
        },
        "tool_calls": [
            {
                "name": "orders.lookup",
                "arguments": {"order_id": "@ORDER@"},
                "result": {
                    "order_id": "@ORDER@",
                    "status": "delivered",
                    "delivered_at": "2025-03-14",
                    "total": 43.5,
                    "currency": "EUR",
                    "items": [
                        {
                            "sku": "MUG-0042",
                            "title": "Stoneware mug, blue",
                            "qty": 2,
                            "price": 21.75,
                        }
                    ],
                },
            },
            {
                "name": "refunds.policy_check",
                "arguments": {"order_id": "@ORDER@", "reason": "damaged_in_transit"},
                "result": {"eligible": True, "max_amount": 43.5, "policy": "damaged-30d"},
            },
        ],
        "output": {
            "reply": (
                "Hi @FIRST@, I'm sorry your mug arrived broken (ticket @TICKET@). I've asked "
                "for a refund of 21.75 EUR to your original payment method; you will get a "
                "confirmation email shortly."
            ),
            "confidence": 0.91,
        },
        "proposal": {
            "action": "refund.issue",
            "params": {
                "order_id": "@ORDER@",
                "amount": "@AMOUNT@",
                "currency": "EUR",
                "reason": "damaged_in_transit",
            },
            "alternatives": [
                {
                    "action": "refund.issue",
                    "params": {"order_id": "@ORDER@", "amount": 43.5, "currency": "EUR"},
                    "score": 0.35,
                },
                {
                    "action": "credit.issue",
                    "params": {"order_id": "@ORDER@", "amount": 25.0, "currency": "EUR"},
                    "score": 0.2,
                },
            ],
            "summary": "Refund one damaged mug of order @ORDER@",
            "flags": ["damaged_item"],
        },
    }
    if rung >= 4:
        body["proposal"]["params"].update(L4_PARAMS)
    text = json.dumps(body).replace("%", "%%")
    text = text.replace('"@AMOUNT@"', "%(amount)s")
    slots = ("KEY", "NAME", "FULLNAME", "FIRST", "TICKET", "STREET", "ORDER", "EMAIL", "PHONE")
    for slot in (*slots, "CUSTOMER"):
        text = text.replace(f"@{slot}@", f"%({slot.lower()})s")
    return text


def make_body(template: str, rng: random.Random, key: str) -> bytes:
    """Every request its own text: a name, a street, an email, a phone number and its own
    ticket and order ids inside the free text, so no per-string memo hides any detector."""
    first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
    login = "".join(ch for ch in first.lower() if ch.isascii() and ch.isalpha()) or "c"
    return (
        template
        % {
            "key": key,
            "name": first,
            "fullname": f"{first} {last}",
            "first": first,
            "ticket": f"T-{rng.randrange(10**6):06d}",
            "street": f"{rng.randrange(1, 300)} {rng.choice(STREETS)}",
            "order": f"ORD-{rng.randrange(10**7):07d}",
            "email": f"{login}.{rng.randrange(10**6)}@example.com",
            "phone": rng.choice(PHONE_FORMATS)(rng),
            "amount": f"{rng.randrange(100, 10_000) / 100:.2f}",
            "customer": f"customer-{rng.randrange(CUSTOMER_POOL)}@example.net",
        }
    ).encode("utf-8")


# -- load generator ---------------------------------------------------------------------


WORKER_PATH = "/bench/worker"  # bench/baseline.py: which gunicorn worker holds a connection


def _worker_of(conn: http.client.HTTPConnection) -> int | None:
    try:
        conn.request("GET", WORKER_PATH, headers={"Connection": "keep-alive"})
        resp = conn.getresponse()
        data = resp.read()
        return int(json.loads(data)["pid"]) if resp.status == 200 else None
    except (OSError, http.client.HTTPException, ValueError, KeyError, TypeError):
        conn.close()
        return None


def _connect(port: int, balance: dict | None) -> tuple[http.client.HTTPConnection, int | None]:
    """A keep-alive connection; with `balance`, one to a gunicorn worker that has fewer
    than its share of this process's connections.

    gunicorn's workers accept connections as they race for them, so 32 keep-alive
    clients can land 28 on one worker and 4 on the other, and then the figures measure
    that luck. Asking each new connection which worker took it, and reconnecting while
    that worker already has its share, gives every phase the same even split.
    """
    for _attempt in range(60):
        conn = http.client.HTTPConnection(HOST, port, timeout=30)
        pid = _worker_of(conn)
        if balance is None:
            return conn, pid
        with balance["lock"]:
            taken = balance["counts"].get(pid, 0)
            if pid is not None and taken < balance["share"]:
                balance["counts"][pid] = taken + 1
                return conn, pid
        conn.close()
    return http.client.HTTPConnection(HOST, port, timeout=30), None  # give up: take any


def _client(
    *,
    port,
    path,
    headers,
    template,
    key_prefix,
    t_start,
    t_measure,
    t_end,
    max_requests,
    out,
    balance=None,
):
    """One keep-alive connection, one request at a time, until t_end or max_requests.

    A request counts in the window when it completes in [t_measure, t_end)."""
    rng = random.Random(key_prefix)
    latencies: list[float] = []
    statuses: Counter = Counter()
    warm_errors = 0
    ok_total = 0
    samples: list[str] = []
    delay = t_start - time.monotonic()
    if delay > 0:
        time.sleep(delay)
    conn, worker_pid = _connect(port, balance)
    sent = 0
    try:
        while sent < max_requests:
            began = time.monotonic()
            if began >= t_end:
                break
            sent += 1
            body = make_body(template, rng, f"{key_prefix}-{sent}")
            try:
                conn.request("POST", path, body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                status = resp.status
            except (OSError, http.client.HTTPException) as exc:
                conn.close()  # http.client reconnects on the next request
                status, data = type(exc).__name__, b""
            done = time.monotonic()
            ok = isinstance(status, int) and 200 <= status < 300
            ok_total += ok
            if t_measure <= done < t_end:
                latencies.append(done - began)
                statuses[status] += 1
            elif not ok:
                warm_errors += 1
            if not ok and len(samples) < 3:
                text = " ".join(data[:2000].decode("utf-8", "replace").split())[:200]
                samples.append(f"{status}: {text}")
    finally:
        conn.close()
    capped = sent >= max_requests
    out.append((latencies, statuses, warm_errors, ok_total, samples, capped, worker_pid))


def _loadgen_process(job: dict, queue) -> None:
    """A load-generator process: `threads` clients; sends merged results to the parent."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and stops us
    try:
        results: list = []
        balance = None
        if job["balanced"]:
            share = math.ceil(job["threads"] / job["server_workers"])
            balance = {"lock": threading.Lock(), "counts": {}, "share": share}
        threads = [
            threading.Thread(
                target=_client,
                kwargs={
                    "port": job["port"],
                    "path": job["path"],
                    "headers": job["headers"],
                    "template": job["template"],
                    "key_prefix": f"{job['key_prefix']}-{job['proc']}-{i}",
                    "t_start": job["t_start"],
                    "t_measure": job["t_measure"],
                    "t_end": job["t_end"],
                    "max_requests": job["max_per_client"],
                    "out": results,
                    "balance": balance,
                },
                daemon=True,
            )
            for i in range(job["threads"])
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=job["t_end"] - time.monotonic() + 60)
        latencies: list[float] = []
        statuses: Counter = Counter()
        warm_errors = ok_total = 0
        samples: list[str] = []
        capped = 0
        split: Counter = Counter()
        for lat, st, we, ok, sm, cap, pid in results:
            capped += cap
            split[str(pid)] += 1
            latencies.extend(lat)
            statuses.update(st)
            warm_errors += we
            ok_total += ok
            samples.extend(sm)
        queue.put(
            {
                "latencies": latencies,
                "statuses": dict(statuses),
                "warm_errors": warm_errors,
                "ok_total": ok_total,
                "samples": samples[:3],
                "clients_done": len(results),
                "capped": capped,
                "split": dict(split),
            }
        )
    except BaseException:
        queue.put({"crash": traceback.format_exc()})


# -- CPU accounting (Linux /proc) -------------------------------------------------------

_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _proc_cpu(pid: int) -> float:
    """CPU seconds (user + system) used so far by one process; 0 if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / _TICK
    except (OSError, IndexError, ValueError):
        return 0.0


def _children(pid: int) -> list[int]:
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        if ppid == pid:
            found.append(int(entry.name))
    return found


def _db_processes(dbname: str) -> list[int]:
    """PostgreSQL processes doing the bench's database work: the backends serving
    `dbname` (title 'postgres: [cluster: ]user dbname host(port) state') and the shared
    WAL writer, checkpointer and background writer, whose work is mostly ours during a
    phase."""
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/cmdline", "rb") as f:
                title = f.read().replace(b"\0", b" ").decode("utf-8", "replace")
        except OSError:
            continue
        if not title.startswith("postgres: "):
            continue
        words = title.split()
        if dbname in words[1:4] or any(
            aux in title for aux in ("walwriter", "checkpointer", "background writer")
        ):
            found.append(int(entry.name))
    return found


class CpuMeter:
    """CPU seconds used by the gunicorn server, PostgreSQL (see _db_processes) and the load
    generator, between two snapshots: where the machine's cores went during a phase."""

    def __init__(self, server_pid: int, dbname: str, loadgen_pids: list[int]):
        self.server_pid, self.dbname, self.loadgen_pids = server_pid, dbname, loadgen_pids
        self.enabled = os.path.isdir("/proc/self")

    def snapshot(self) -> dict[str, dict[int, float]]:
        if not self.enabled:
            return {}
        server = [self.server_pid, *_children(self.server_pid)]
        return {
            "server": {p: _proc_cpu(p) for p in server},
            "db": {p: _proc_cpu(p) for p in _db_processes(self.dbname)},
            "loadgen": {p: _proc_cpu(p) for p in self.loadgen_pids},
            "machine": {0: _machine_busy()},
        }

    @staticmethod
    def used(before: dict, after: dict) -> dict[str, float]:
        # A process absent from `before` (a new DB backend) counts from zero: a slight
        # overcount bounded by its start-up, which is tiny next to a 10 s phase.
        used = {
            group: sum(t - before.get(group, {}).get(p, 0.0) for p, t in after[group].items())
            for group in after
        }
        # Whatever else ran on the machine meanwhile (other tests, builds): noise.
        machine = used.pop("machine")
        used["other"] = max(0.0, machine - used["server"] - used["db"] - used["loadgen"])
        return used


def _machine_busy() -> float:
    """CPU seconds all cores spent busy since boot (/proc/stat, everything but idle/iowait)."""
    try:
        with open("/proc/stat") as f:
            values = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return 0.0
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    return (sum(values[:8]) - idle) / _TICK


# -- phases -----------------------------------------------------------------------------


def _percentile(sorted_values: list[float], pct: float) -> float:
    if not sorted_values:
        return float("nan")
    rank = max(1, math.ceil(pct / 100 * len(sorted_values)))  # nearest-rank percentile
    return sorted_values[min(rank, len(sorted_values)) - 1]


def run_phase(*, name, path, clients, args, server, token, dbname, run_nonce) -> dict:
    procs = max(1, min(args.client_procs, clients))
    per_proc = [clients // procs + (1 if i < clients % procs else 0) for i in range(procs)]
    headers = {
        "Content-Type": "application/json",
        "Authorization": f"Bearer {token}",
        "Connection": "keep-alive",
    }
    now = time.monotonic()
    t_start = now + 0.5  # time for the processes to start
    t_measure = t_start + args.warmup
    t_end = t_measure + args.duration
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    workers = []
    template = body_template(WORKFLOW, rung=args.rung)
    max_per_client = max(1, args.max_requests // clients)
    for i, threads in enumerate(per_proc):
        job = {
            "port": server.port,
            "path": path,
            "headers": headers,
            "template": template,
            "key_prefix": f"{run_nonce}-{name}-c{clients}",
            "proc": i,
            "threads": threads,
            "t_start": t_start,
            "t_measure": t_measure,
            "t_end": t_end,
            "max_per_client": max_per_client,
            "balanced": args.split == "balanced",
            "server_workers": args.workers,
        }
        p = ctx.Process(target=_loadgen_process, args=(job, queue), daemon=True)
        p.start()
        workers.append(p)
    finished = False
    try:
        meter = CpuMeter(server.proc.pid, dbname, [p.pid for p in workers])
        time.sleep(max(0.0, t_measure - time.monotonic()))
        cpu_before = meter.snapshot()
        time.sleep(max(0.0, t_end - time.monotonic()))
        cpu_after = meter.snapshot()
        window = t_end - t_measure
        results = []
        deadline = t_end + 90
        while len(results) < len(workers):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise BenchError(f"{name}: load generator did not report back in time")
            try:
                results.append(queue.get(timeout=min(remaining, 5)))
            except Exception:  # queue.Empty; check the processes are still alive
                if not any(p.is_alive() for p in workers) and queue.empty():
                    raise BenchError(f"{name}: a load-generator process died") from None
            server.check_alive()
        finished = True
    finally:
        for p in workers:
            if finished:
                p.join(timeout=5)
            if p.is_alive():  # interrupted, or stuck: stop it now
                p.terminate()
                p.join(timeout=5)
    for r in results:
        if "crash" in r:
            raise BenchError(f"{name}: load generator crashed:\n{r['crash']}")
    latencies = sorted(x for r in results for x in r["latencies"])
    statuses: Counter = Counter()
    for r in results:
        statuses.update(r["statuses"])
    n = len(latencies)
    errors = sum(c for s, c in statuses.items() if not (isinstance(s, int) and 200 <= s < 300))
    split: Counter = Counter()
    for r in results:
        split.update(r["split"])
    cpu = CpuMeter.used(cpu_before, cpu_after) if cpu_before else {}
    return {
        "name": name,
        "path": path,
        "clients": clients,
        "loadgen_processes": procs,
        "window_s": round(window, 3),
        "requests": n,
        "errors": errors,
        "statuses": {str(k): v for k, v in sorted(statuses.items(), key=lambda kv: str(kv[0]))},
        "warmup_errors": sum(r["warm_errors"] for r in results),
        # Clients that stopped at --max-requests before the window closed: req/s undercounts.
        "capped_clients": sum(r["capped"] for r in results),
        # Client connections per gunicorn worker ("None": the worker could not be asked).
        "connections_per_worker": sorted(split.values(), reverse=True),
        "ok_total": sum(r["ok_total"] for r in results),
        "error_samples": [s for r in results for s in r["samples"]][:3],
        "rps": n / window if window > 0 else 0.0,
        "p50_ms": _percentile(latencies, 50) * 1000,
        "p90_ms": _percentile(latencies, 90) * 1000,
        "p99_ms": _percentile(latencies, 99) * 1000,
        "max_ms": (latencies[-1] * 1000) if latencies else float("nan"),
        "mean_ms": (sum(latencies) / n * 1000) if n else float("nan"),
        # CPU seconds per request, by who spent them (over the measured window).
        "cpu_ms_per_request": {k: round(v / n * 1000, 3) for k, v in cpu.items() if k != "other"}
        if n
        else {},
        "cpu_busy_cores": {k: round(v / window, 2) for k, v in cpu.items()},
    }


# -- setup ------------------------------------------------------------------------------


def bench_env(database_url: str, redis_url: str, *, without_names: bool = False) -> dict[str, str]:
    env = dict(os.environ)
    env["BENCH_WITHOUT_NAMES"] = "1" if without_names else "0"
    env.update(
        {
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_url,
            "DEBUG": "0",
            # Keep each thread's connection for the whole bench: with the default 60 s,
            # backends are replaced mid-phase, their CPU leaves the DB figure for "other"
            # and each replacement pays a connect and re-prepares its statements.
            "DB_CONN_MAX_AGE": "3600",
            "DJANGO_SETTINGS_MODULE": "ladder.settings",
            # Plain http on loopback and the embedded keys; nothing measured depends on it.
            "LADDER_DEV_MODE": "1",
            # One token drives every client: lift its per-token limits (the bucket is still
            # consulted on every request, so its cost is in the figures).
            "LADDER_RATE_LIMIT_PER_SECOND": "1000000",
            "LADDER_RATE_LIMIT_BURST": "1000000",
            "LADDER_MAX_WAITS_PER_TOKEN": "10000",
            "LOG_LEVEL": "WARNING",
            "PYTHONPATH": os.pathsep.join(
                [str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]
            ),
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


def _admin_url(database_url: str) -> str:
    parts = urlsplit(database_url)
    return urlunsplit(parts._replace(path="/postgres"))


def db_name(database_url: str) -> str:
    name = urlsplit(database_url).path.lstrip("/")
    if not name:
        raise BenchError(f"no database name in {database_url}")
    return name


def _check_local(url: str) -> None:
    host = urlsplit(url).hostname
    if host not in ("127.0.0.1", "localhost", "::1"):
        raise BenchError(f"refusing a non-local service: {url} (this bench only uses 127.0.0.1)")


def ensure_database(database_url: str) -> None:
    name = db_name(database_url)
    try:
        with psycopg.connect(_admin_url(database_url), autocommit=True, connect_timeout=5) as c:
            exists = c.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
            if not exists:
                c.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
                log(f"created database {name}")
    except psycopg.OperationalError as exc:
        raise BenchError(f"PostgreSQL is not reachable at {database_url}: {exc}") from None


def run_checked(cmd: list[str], env: dict, what: str) -> str:
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        raise BenchError(f"{what} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc.stdout


def prepare_database(database_url: str, env: dict, keep_data: bool, rung: int = 3) -> str:
    """Migrate, seed the workflow and a token, create/empty the tables. Returns the token."""
    ensure_database(database_url)
    run_checked([PYTHON, "manage.py", "migrate", "--noinput"], env, "manage.py migrate")
    out = run_checked(
        [
            PYTHON,
            "-c",
            SEED_CODE,
            WORKFLOW,
            TOKEN_NAME,
            json.dumps(REFUND_SCHEMA),
            json.dumps(CREDIT_SCHEMA),
            str(rung),
        ],
        env,
        "seeding the bench workflow",
    )
    token = next((line[6:] for line in out.splitlines() if line.startswith("TOKEN=")), None)
    if not token:
        raise BenchError(f"seeding printed no token:\n{out}")
    with psycopg.connect(database_url, autocommit=True) as c:
        c.execute(BASELINE_TABLE_SQL)
        if not keep_data:
            if "bench" not in db_name(database_url):
                raise BenchError(
                    f"refusing to empty '{db_name(database_url)}': the bench empties its run "
                    "tables, so its database name must contain 'bench' (or pass --keep-data)"
                )
            # Start from empty tables each time so figures do not drift as the DB grows.
            # TRUNCATE is not stopped by the append-only row triggers on trace events.
            c.execute(
                "TRUNCATE traces_traceevent, traces_run, traces_policyallowance, "
                "traces_subjectseen, bench_baseline CASCADE"
            )
        c.execute("VACUUM ANALYZE traces_run")
        c.execute("VACUUM ANALYZE traces_traceevent")
        c.execute("VACUUM ANALYZE bench_baseline")
    return token


def checkpoint(database_url: str) -> None:
    """Flush dirty pages between phases so one phase's writes are not paid by the next."""
    try:
        with psycopg.connect(database_url, autocommit=True) as c:
            c.execute("CHECKPOINT")
    except psycopg.Error:
        pass  # needs superuser or pg_checkpoint; only a noise reducer


# "longpoll" is the documented deployment (gunicorn.conf.py); "gthread" is gunicorn's own
# worker, as before long polls were parked; "asgi" serves --app bench.baseline:asgi_application.
WORKER_CLASSES = {
    "longpoll": "traces.server.LongPollWorker",
    "gthread": "gthread",
    "asgi": "asgi",
}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


class Server:
    """gunicorn bench.baseline:application on a free 127.0.0.1 port."""

    def __init__(self, env: dict, workers: int, threads: int, app: str, worker_class: str):
        self.env, self.workers, self.threads, self.app = env, workers, threads, app
        self.worker_class = worker_class
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        self.log = tempfile.NamedTemporaryFile(  # noqa: SIM115 - closed in stop()
            prefix="ladder-bench-gunicorn-", suffix=".log", delete=False
        )

    @property
    def command(self) -> list[str]:
        return [
            PYTHON,
            "-m",
            "gunicorn",
            self.app,
            "--chdir",
            str(REPO),
            "--pythonpath",
            str(REPO),
            "--bind",
            f"{HOST}:{self.port}",
            "--worker-class",
            WORKER_CLASSES[self.worker_class],
            "--workers",
            str(self.workers),
            *(["--threads", str(self.threads)] if self.worker_class != "asgi" else []),
            "--timeout",
            "60",
            "--graceful-timeout",
            "5",
            "--keep-alive",
            "5",
            "--log-level",
            "warning",
        ]

    def start(self, token: str) -> None:
        self.proc = subprocess.Popen(
            self.command,
            cwd=REPO,
            env=self.env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C in the terminal reaches us, not gunicorn
        )
        deadline = time.monotonic() + 60
        headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}
        last = "no answer"
        while time.monotonic() < deadline:
            self.check_alive()
            try:
                conn = http.client.HTTPConnection(HOST, self.port, timeout=5)
                conn.request("POST", BASELINE_PATH, body=b'{"ping": true}', headers=headers)
                resp = conn.getresponse()
                body = resp.read()
                conn.close()
                if resp.status == 201:
                    return
                last = f"{resp.status}: {body[:300]!r}"
            except OSError as exc:
                last = repr(exc)
            time.sleep(0.2)
        raise BenchError(f"gunicorn did not become ready ({last}):\n{self.log_tail()}")

    def check_alive(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            raise BenchError(f"gunicorn exited ({self.proc.returncode}):\n{self.log_tail()}")

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = Path(self.log.name).read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, *, keep_log: bool) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            workers = _children(proc.pid)
            proc.send_signal(signal.SIGTERM)  # graceful: the master stops its workers
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)  # the group we created (start_new_session)
                proc.wait(timeout=5)
            # A worker that outlived its master is still in the group we created.
            for pid in workers:
                try:
                    if os.getpgid(pid) == proc.pid:
                        os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        self.log.close()
        if not keep_log:
            Path(self.log.name).unlink(missing_ok=True)


# -- report -----------------------------------------------------------------------------


def redaction_version() -> str:
    path = REPO / "traces" / "redaction.py"
    try:
        first = path.read_text().splitlines()[0]
    except (OSError, IndexError):
        return "unknown"
    return "placeholder" if "placeholder" in first.lower() else "real"


def evaluate(phases: list[dict], high: int, low: int) -> list[dict]:
    by = {(p["name"], p["clients"]): p for p in phases}
    checks = []
    gw_hi, base_hi, gw_lo = (
        by.get(("gateway", high)),
        by.get(("baseline", high)),
        by.get(("gateway", low)),
    )
    if gw_hi and base_hi:
        ratio = gw_hi["rps"] / base_hi["rps"] if base_hi["rps"] else 0.0
        checks.append(
            {
                "check": f"gateway / baseline throughput at {high} clients",
                "value": round(ratio, 3),
                "target": f">= {TARGETS['throughput_ratio']:.2f}",
                "pass": ratio >= TARGETS["throughput_ratio"],
            }
        )
        p99_ratio = gw_hi["p99_ms"] / base_hi["p99_ms"] if base_hi["p99_ms"] else float("inf")
        checks.append(
            {
                "check": f"gateway / baseline p99 at {high} clients",
                "value": round(p99_ratio, 3),
                "target": f"<= {TARGETS['p99_ratio']:.1f}",
                "pass": p99_ratio <= TARGETS["p99_ratio"],
            }
        )
    if gw_lo:
        checks.append(
            {
                "check": f"gateway p99 at {low} clients (ms)",
                "value": round(gw_lo["p99_ms"], 1),
                "target": f"<= {TARGETS['p99_low_ms']:.0f}",
                "pass": gw_lo["p99_ms"] <= TARGETS["p99_low_ms"],
            }
        )
    errors = sum(p.get("errors_all_rounds", p["errors"]) for p in phases)
    checks.append(
        {
            "check": "non-2xx responses in the measured windows",
            "value": errors,
            "target": "0",
            "pass": errors == 0,
        }
    )
    return checks


def markdown(report: dict) -> str:
    m = report["meta"]
    rounds = f" (each figure: the median of {m['rounds']} rounds)" if m["rounds"] > 1 else ""
    lines = [
        f"Measured {m['date']} on {m['cpus']} CPUs (load avg before: {m['loadavg']}), "
        f"gunicorn {m['server']['worker_class']} {m['server']['workers']}x"
        f"{m['server']['threads']}, "
        f"PostgreSQL `{m['database']}`, {m['warmup_s']:g} s warm-up + {m['duration_s']:g} s "
        f"per phase{rounds}, redaction: {m['redaction']}, request body {m['body_bytes']} B, "
        f"connections split {m['split']} over the workers, workflow at L{m['rung']}"
        + (
            " under the 100-rule envelope (outcomes: "
            + ", ".join(f"{k} {v}" for k, v in sorted(m["policy_outcomes"].items()))
            + ")."
            if m["rung"] >= 4
            else "."
        ),
        "",
        "| endpoint | clients | requests | errors | req/s | p50 ms | p99 ms "
        "| CPU ms/req server / db / loadgen | other load (cores) | conns per worker |",
        "|---|--:|--:|--:|--:|--:|--:|---|--:|--:|",
    ]
    for p in report["phases"]:
        cpu = p["cpu_ms_per_request"]
        cpu_txt = (
            f"{cpu.get('server', 0):.2f} / {cpu.get('db', 0):.2f} / {cpu.get('loadgen', 0):.2f}"
            if cpu
            else "n/a"
        )
        errors = str(p["errors"])
        if p["errors"]:
            errors += " (" + ", ".join(f"{k}: {v}" for k, v in p["statuses"].items()) + ")"
        lines.append(
            f"| {p['name']} `POST {p['path']}` | {p['clients']} | {p['requests']} | {errors} "
            f"| {p['rps']:.0f} | {p['p50_ms']:.1f} | {p['p99_ms']:.1f} | {cpu_txt} "
            f"| {p['cpu_busy_cores'].get('other', float('nan')):.2f} "
            f"| {'/'.join(str(c) for c in p.get('connections_per_worker', []))} |"
        )
    if m["rounds"] > 1:
        lines.append("")
        for p in report["phases"]:
            lines.append(
                f"- {p['name']} x{p['clients']}, each round: req/s "
                + ", ".join(f"{x:.0f}" for x in p["rounds_rps"])
                + "; p99 ms "
                + ", ".join(f"{x:.1f}" for x in p["rounds_p99_ms"])
            )
    noisy = max((p["cpu_busy_cores"].get("other", 0.0) for p in report["phases"]), default=0)
    if noisy > NOISE_CORES:
        lines += [
            "",
            f"Warning: other processes kept up to {noisy:.2f} of {m['cpus']} cores busy during "
            "the phases; these figures are disturbed (re-run on a quiet machine).",
        ]
    lines += ["", "| check | value | target | result |", "|---|--:|--:|---|"]
    for c in report["checks"]:
        lines.append(
            f"| {c['check']} | {c['value']} | {c['target']} | {'PASS' if c['pass'] else 'FAIL'} |"
        )
    return "\n".join(lines)


def _no_nan(value):
    """JSON has no NaN: an empty phase's percentiles become null."""
    if isinstance(value, float) and value != value:
        return None
    if isinstance(value, dict):
        return {k: _no_nan(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_no_nan(v) for v in value]
    return value


def log(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


# -- main -------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--duration", type=float, default=10.0, help="measured seconds per phase")
    ap.add_argument("--warmup", type=float, default=2.0, help="discarded seconds per phase")
    ap.add_argument("--high", type=int, default=32, help="clients in the high phases")
    ap.add_argument("--low", type=int, default=4, help="clients in the low phases")
    ap.add_argument(
        "--without-names",
        action="store_true",
        help="switch name/address detection off in the bench server (the 'before' of an A/B)",
    )
    ap.add_argument(
        "--client-procs",
        type=int,
        default=2,
        help="load-generator processes per phase (threads are spread over them)",
    )
    ap.add_argument("--max-requests", type=int, default=200_000, help="cap on requests per phase")
    ap.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="run every phase N times and report medians over the rounds "
        "(this machine's speed drifts; 3 or more for figures worth writing down)",
    )
    ap.add_argument(
        "--split",
        choices=["balanced", "random"],
        default="balanced",
        help="balanced: spread each load generator's connections evenly over the gunicorn "
        "workers (the default); random: keep whichever worker accepted each connection",
    )
    ap.add_argument(
        "--rung",
        type=int,
        choices=[3, 4],
        default=3,
        help="3: every run waits for a person (the default); 4: the 100-rule envelope of "
        "bench/policy_envelope.py decides each run (rate limits and first-seen counted)",
    )
    ap.add_argument("--workers", type=int, default=2, help="gunicorn workers")
    ap.add_argument("--threads", type=int, default=8, help="gunicorn threads per worker")
    ap.add_argument(
        "--worker-class",
        choices=sorted(WORKER_CLASSES),
        default="longpoll",
        help="gunicorn worker: longpoll (the deployment, gunicorn.conf.py), gthread, asgi",
    )
    ap.add_argument(
        "--only", choices=["gateway", "baseline"], help="run the phases of one endpoint only"
    )
    ap.add_argument(
        "--database-url",
        default=os.environ.get("BENCH_DATABASE_URL", DEFAULT_DATABASE_URL),
        help="PostgreSQL URL of the bench's own database (env BENCH_DATABASE_URL; "
        "DATABASE_URL is deliberately not used: the bench empties its tables)",
    )
    ap.add_argument(
        "--redis-url", default=os.environ.get("REDIS_URL", DEFAULT_REDIS_URL), help="Redis URL"
    )
    ap.add_argument(
        "--app",
        default="bench.baseline:application",
        help="WSGI app gunicorn serves; it must also serve POST /bench/baseline (to bench a "
        "prototype: put its module on PYTHONPATH and pass --app and --gateway-path)",
    )
    ap.add_argument(
        "--gateway-path", default=GATEWAY_PATH, help="the path the gateway phases POST to"
    )
    ap.add_argument("--keep-data", action="store_true", help="do not empty the run tables")
    ap.add_argument("--json", action="store_true", help="print the report as JSON")
    ap.add_argument("--strict", action="store_true", help="exit 1 when a check fails")
    args = ap.parse_args(argv)
    if args.duration <= 0 or args.warmup < 0 or args.high < 1 or args.low < 1:
        ap.error("--duration must be > 0, --warmup >= 0, --high/--low >= 1")
    if args.duration > 600 or args.warmup > 120 or max(args.high, args.low) > 512:
        ap.error("keep it bounded: --duration <= 600, --warmup <= 120, clients <= 512")
    if not 1 <= args.rounds <= 10:
        ap.error("--rounds must be 1..10")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    for url in (args.database_url, args.redis_url):
        _check_local(url)
    env = bench_env(args.database_url, args.redis_url, without_names=args.without_names)
    loadavg = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    server = None
    completed = False

    def _terminate(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _terminate)
    try:
        log(f"preparing {args.database_url} (migrate, seed)")
        token = prepare_database(args.database_url, env, args.keep_data, args.rung)
        server = Server(env, args.workers, args.threads, args.app, args.worker_class)
        log(
            f"starting gunicorn on {HOST}:{server.port} "
            f"({args.workers}x{args.threads} {args.worker_class})"
        )
        server.start(token)
        run_nonce = f"{int(time.time())}-{os.getpid()}"
        plan = []
        for clients in (args.high, args.low):
            for name, path in (("gateway", args.gateway_path), ("baseline", BASELINE_PATH)):
                if args.only in (None, name):
                    plan.append((name, path, clients))
        phases: list[dict] = []
        all_runs: list[dict] = []
        for round_no in range(1, args.rounds + 1):
            for name, path, clients in plan:
                checkpoint(args.database_url)
                label = f"phase {name} x{clients}" + (
                    f" (round {round_no}/{args.rounds})" if args.rounds > 1 else ""
                )
                log(f"{label}: {args.warmup:g} s warm-up + {args.duration:g} s")
                phase = run_phase(
                    name=name,
                    path=path,
                    clients=clients,
                    args=args,
                    server=server,
                    token=token,
                    dbname=db_name(args.database_url),
                    run_nonce=f"{run_nonce}-r{round_no}",
                )
                phase["round"] = round_no
                all_runs.append(phase)
                log(
                    f"  {phase['requests']} requests, {phase['errors']} errors, "
                    f"{phase['rps']:.0f} req/s, p50 {phase['p50_ms']:.1f} ms, "
                    f"p99 {phase['p99_ms']:.1f} ms, connections per worker "
                    + "/".join(str(c) for c in phase["connections_per_worker"])
                )
                other = phase["cpu_busy_cores"].get("other", 0.0)
                if other > NOISE_CORES:
                    log(f"  warning: other processes used {other:.2f} cores during this phase")
                if phase["capped_clients"]:
                    log(
                        f"  warning: {phase['capped_clients']} clients hit --max-requests "
                        "before the window closed: req/s is undercounted"
                    )
                if phase["error_samples"]:
                    log("  first errors: " + " | ".join(phase["error_samples"]))
        # With several rounds, each phase reports medians over its rounds (req/s, p50 and
        # p99 each their own median; CPU figures from the round with the median req/s), as
        # this machine's speed drifts by tens of percent from minute to minute. Errors of
        # every round count.
        for name, _path, clients in plan:
            rounds = [p for p in all_runs if (p["name"], p["clients"]) == (name, clients)]
            by_rps = sorted(rounds, key=lambda p: p["rps"])
            median = dict(by_rps[(len(by_rps) - 1) // 2])
            for key in ("rps", "p50_ms", "p99_ms"):
                median[key] = statistics.median(p[key] for p in rounds)
            median["rounds_rps"] = [round(p["rps"], 1) for p in rounds]
            median["rounds_p99_ms"] = [round(p["p99_ms"], 1) for p in rounds]
            median["errors_all_rounds"] = sum(p["errors"] for p in rounds)
            phases.append(median)
        # Every 2xx the gateway sent must be a stored run: a cheap end-to-end sanity check.
        with psycopg.connect(args.database_url) as c:
            stored = c.execute(
                "SELECT count(*) FROM traces_run WHERE idempotency_key LIKE %s",
                [f"{run_nonce}-%"],
            ).fetchone()[0]
            outcomes = dict(
                c.execute(
                    "SELECT coalesce(policy->>'outcome', 'none'), count(*) FROM traces_run "
                    "WHERE idempotency_key LIKE %s GROUP BY 1",
                    [f"{run_nonce}-%"],
                ).fetchall()
            )
        sent_ok = sum(p["ok_total"] for p in all_runs if p["name"] == "gateway")
        if stored != sent_ok:
            log(f"WARNING: {sent_ok} gateway 2xx responses but {stored} runs stored")
        server.check_alive()
        completed = True
    except BenchError as exc:
        log(f"error: {exc}")
        return 2
    except KeyboardInterrupt:
        log("interrupted")
        return 130
    finally:
        if server is not None:
            failed = sys.exc_info()[0] is not None or not completed
            server.stop(keep_log=failed)
            log("gunicorn stopped" + (f" (its log: {server.log.name})" if failed else ""))
    report = {
        "meta": {
            "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "cpus": os.cpu_count(),
            "loadavg": loadavg,
            "python": sys.version.split()[0],
            "server": {
                "app": args.app,
                "worker_class": args.worker_class,
                "workers": args.workers,
                "threads": args.threads,
            },
            "database": db_name(args.database_url),
            "warmup_s": args.warmup,
            "duration_s": args.duration,
            "client_procs": args.client_procs,
            "rounds": args.rounds,
            "split": args.split,
            "redaction": redaction_version()
            + (", names/addresses OFF (--without-names)" if args.without_names else ""),
            "body_bytes": len(
                make_body(body_template(WORKFLOW, rung=args.rung), random.Random(0), "k" * 40)
            ),
            "runs_stored": stored,
            "rung": args.rung,
            "policy_outcomes": outcomes,
        },
        "phases": phases,
        "checks": evaluate(phases, args.high, args.low),
    }
    if args.json:
        print(json.dumps(_no_nan(report), indent=2))
    else:
        print(markdown(report))
    failed = [c for c in report["checks"] if not c["pass"]]
    return 1 if (args.strict and failed) else 0


if __name__ == "__main__":
    sys.exit(main())
