"""Long-poll benchmark: does a crowd of waiting agents slow down one that submits?

One client submits runs (`POST /api/v1/runs`, one at a time, keep-alive) for a while
alone, then again while 50 other clients each hold `GET /api/v1/runs/{id}?wait=30` on a
run nobody decides. Its p99 with the waiters must stay within 2x its p99 alone.

    .venv/bin/python bench/longpoll.py                         # ~1 min, the deployment
    .venv/bin/python bench/longpoll.py --worker-class gthread  # gunicorn's own worker

Same database, seeding, server and safety rules as bench/gateway.py (its helpers are
reused): its own `ladder_bench` database, only 127.0.0.1, every loop bounded in time,
gunicorn stopped on exit. Figures and what they mean: bench/README.md.
"""

# ruff: noqa: E402 - the imports below must come after the sys.path fix
from __future__ import annotations

import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _HERE]

import argparse
import http.client
import importlib.util
import json
import random
import signal
import socket
import statistics
import time

_spec = importlib.util.spec_from_file_location("bench_gateway", os.path.join(_HERE, "gateway.py"))
gw = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(gw)

HOST = gw.HOST
TARGET_P99_RATIO = 2.0


def submitter(port: int, token: str, *, seconds: float, warmup: float, tag: str) -> dict:
    """One client, one request at a time, for warmup + seconds; latencies of the measured
    part. A request still unanswered after 40 s counts as an error (the old server made
    submitters wait for the polls' 30 s)."""
    template = gw.body_template(gw.WORKFLOW)
    rng = random.Random(tag)
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}
    conn = http.client.HTTPConnection(HOST, port, timeout=40)
    latencies, errors, n = [], 0, 0
    start = time.monotonic()
    measure_from, end = start + warmup, start + warmup + seconds
    while (began := time.monotonic()) < end:
        n += 1
        try:
            conn.request(
                "POST", gw.GATEWAY_PATH, gw.make_body(template, rng, f"{tag}-{n}"), headers
            )
            resp = conn.getresponse()
            resp.read()
            ok = resp.status in (200, 201)
        except (OSError, http.client.HTTPException):
            conn.close()
            ok = False
        done = time.monotonic()
        if done >= measure_from:
            latencies.append(done - began)
            errors += not ok
    conn.close()
    latencies.sort()
    return {
        "requests": len(latencies),
        "errors": errors,
        "p50_ms": gw._percentile(latencies, 50) * 1000 if latencies else float("nan"),
        "p99_ms": gw._percentile(latencies, 99) * 1000 if latencies else float("nan"),
        "max_ms": latencies[-1] * 1000 if latencies else float("nan"),
    }


def pending_runs(port: int, token: str, count: int, tag: str) -> list[str]:
    """Runs that wait for review (the bench workflow is L3) for the waiters to poll."""
    template = gw.body_template(gw.WORKFLOW)
    rng = random.Random(tag)
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}
    conn = http.client.HTTPConnection(HOST, port, timeout=30)
    ids = []
    for i in range(count):
        conn.request("POST", gw.GATEWAY_PATH, gw.make_body(template, rng, f"{tag}-{i}"), headers)
        resp = conn.getresponse()
        data = json.loads(resp.read())
        if resp.status != 201 or data["status"] != "pending_review":
            raise gw.BenchError(f"could not create a waiting run: {resp.status} {data}")
        ids.append(data["id"])
    conn.close()
    return ids


def open_waiters(port: int, token: str, run_ids: list[str], wait: int) -> list[socket.socket]:
    socks = []
    for run_id in run_ids:
        sock = socket.create_connection((HOST, port), timeout=5)
        sock.sendall(
            f"GET {gw.GATEWAY_PATH}/{run_id}?wait={wait} HTTP/1.1\r\nHost: {HOST}\r\n"
            f"Authorization: Bearer {token}\r\n\r\n".encode()
        )
        socks.append(sock)
    return socks


def answered_early(socks: list[socket.socket]) -> int:
    """How many waiters got an answer already (none should: nobody decides their runs)."""
    count = 0
    for sock in socks:
        try:
            sock.setblocking(False)
            count += bool(sock.recv(1, socket.MSG_PEEK))
        except BlockingIOError:
            pass
        except OSError:
            count += 1
    return count


def _median(rounds: list[dict]) -> dict:
    """Each figure its own median over the rounds; counts summed."""
    out = {k: statistics.median(r[k] for r in rounds) for k in ("p50_ms", "p99_ms", "max_ms")}
    out["requests"] = sum(r["requests"] for r in rounds)
    out["errors"] = sum(r["errors"] for r in rounds)
    out["p99_ms_rounds"] = [round(r["p99_ms"], 1) for r in rounds]
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--waiters", type=int, default=50)
    ap.add_argument("--wait", type=int, default=30, help="the waiters' ?wait= (s)")
    ap.add_argument("--duration", type=float, default=12.0, help="measured seconds per phase")
    ap.add_argument("--warmup", type=float, default=2.0)
    ap.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="alone/with-waiters pairs; p99s are medians over the rounds (this machine drifts)",
    )
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--threads", type=int, default=8)
    ap.add_argument(
        "--worker-class", choices=["longpoll", "gthread"], default="longpoll", help="gunicorn"
    )
    ap.add_argument(
        "--database-url", default=os.environ.get("BENCH_DATABASE_URL", gw.DEFAULT_DATABASE_URL)
    )
    ap.add_argument("--redis-url", default=os.environ.get("REDIS_URL", gw.DEFAULT_REDIS_URL))
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    if not (
        1 <= args.waiters <= 500
        and 1 <= args.rounds <= 10
        and 0 < args.duration <= 120
        and 1 <= args.wait <= 30
    ):
        ap.error("keep it bounded: 1..500 waiters, duration <= 120 s, wait 1..30 s")
    if args.duration + args.warmup >= args.wait:
        ap.error("the waiters' ?wait must outlast the phase (warmup + duration < wait)")
    for url in (args.database_url, args.redis_url):
        gw._check_local(url)
    env = gw.bench_env(args.database_url, args.redis_url)

    def _terminate(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _terminate)
    server = None
    socks: list[socket.socket] = []
    try:
        gw.log(f"preparing {args.database_url} (migrate, seed)")
        token = gw.prepare_database(args.database_url, env, keep_data=False)
        server = gw.Server(
            env, args.workers, args.threads, "bench.baseline:application", args.worker_class
        )
        gw.log(f"starting gunicorn ({args.workers}x{args.threads} {args.worker_class})")
        server.start(token)
        nonce = f"lp-{int(time.time())}-{os.getpid()}"
        run_ids = pending_runs(server.port, token, args.waiters, nonce + "-w")
        alones, crowdeds, early = [], [], 0
        for n in range(1, args.rounds + 1):
            gw.log(
                f"round {n}/{args.rounds}: submitter alone, {args.warmup:g} s + {args.duration:g} s"
            )
            alones.append(
                submitter(
                    server.port,
                    token,
                    seconds=args.duration,
                    warmup=args.warmup,
                    tag=f"{nonce}-a{n}",
                )
            )
            gw.log(f"  p50 {alones[-1]['p50_ms']:.1f} ms, p99 {alones[-1]['p99_ms']:.1f} ms")
            gw.log(
                f"round {n}/{args.rounds}: {args.waiters} clients in ?wait={args.wait}, submitter"
            )
            socks = open_waiters(server.port, token, run_ids, args.wait)
            crowdeds.append(
                submitter(
                    server.port,
                    token,
                    seconds=args.duration,
                    warmup=args.warmup,
                    tag=f"{nonce}-c{n}",
                )
            )
            early += answered_early(socks)
            for sock in socks:
                sock.close()  # the server sees them hang up and frees their slots
            socks = []
            gw.log(f"  p50 {crowdeds[-1]['p50_ms']:.1f} ms, p99 {crowdeds[-1]['p99_ms']:.1f} ms")
        server.check_alive()
    except gw.BenchError as exc:
        gw.log(f"error: {exc}")
        return 2
    except KeyboardInterrupt:
        gw.log("interrupted")
        return 130
    finally:
        for sock in socks:
            sock.close()
        if server is not None:
            server.stop(keep_log=sys.exc_info()[0] is not None)
    alone, crowded = _median(alones), _median(crowdeds)
    ratio = crowded["p99_ms"] / alone["p99_ms"]
    report = {
        "server": f"{args.worker_class} {args.workers}x{args.threads}",
        "waiters": args.waiters,
        "wait_s": args.wait,
        "rounds": args.rounds,
        "alone": alone,
        "with_waiters": crowded,
        "waiters_answered_during_the_phase": early,
        "p99_ratio": ratio,
        "pass": ratio <= TARGET_P99_RATIO and crowded["errors"] == 0 and early == 0,
    }
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(
            "| server | submitter | requests | errors | p50 ms | p99 ms | max ms |\n"
            "|---|---|--:|--:|--:|--:|--:|\n"
            + "".join(
                f"| {report['server']} | {name} | {r['requests']} | {r['errors']} "
                f"| {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {r['max_ms']:.1f} |\n"
                for name, r in (
                    ("alone", alone),
                    (f"with {args.waiters} clients in ?wait={args.wait}", crowded),
                )
            )
            + f"\nmedians of {args.rounds} rounds (p99 per round: alone "
            f"{alone['p99_ms_rounds']}, with waiters {crowded['p99_ms_rounds']}); "
            f"p99 with waiters / p99 alone: **{ratio:.2f}** (target <= "
            f"{TARGET_P99_RATIO:g}); waiters answered early: {early}; "
            + ("PASS" if report["pass"] else "FAIL")
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
