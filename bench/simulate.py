"""How long `manage.py simulate` takes to play the worked example (docs/worked-example.md).

    .venv/bin/python bench/simulate.py                      # 4,200 runs, seed 7, PostgreSQL
    .venv/bin/python bench/simulate.py --sqlite             # the same on SQLite (make run's)
    .venv/bin/python bench/simulate.py --runs 2000 --rounds 2

Each round makes a fresh database (PostgreSQL `ladder_bench_simulate` on 127.0.0.1,
dropped and created; or a SQLite file in a temporary folder), migrates it (not timed),
then runs `manage.py simulate support-refund --runs N --seed S` in a subprocess with
tasks eager, as `make run` does, and times the whole command: start-up, the eleven
simulated weeks and the narrative. Every ticket is its own text (its own customer, order,
address and e-mail), drawn from the seed. Target: 4,200 runs in <= 3 minutes.
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PG = "postgres://postgres@127.0.0.1:5432"
DB = "ladder_bench_simulate"


def fresh_database(sqlite: bool, folder: str) -> str:
    if sqlite:
        path = Path(folder) / f"simulate-{time.monotonic_ns()}.sqlite3"
        return f"sqlite:///{path}"
    for sql in (f"DROP DATABASE IF EXISTS {DB}", f"CREATE DATABASE {DB}"):
        subprocess.run(["psql", f"{PG}/postgres", "-qc", sql], check=True)
    return f"{PG}/{DB}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=4200)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--sqlite", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        for n in range(1, args.rounds + 1):
            url = fresh_database(args.sqlite, folder)
            env = {
                **os.environ,
                "LADDER_DEV_MODE": "1",
                "DATABASE_URL": url,
                "REDIS_URL": "",
                "CELERY_TASK_ALWAYS_EAGER": "1",
            }
            manage = [sys.executable, str(ROOT / "manage.py")]
            subprocess.run([*manage, "migrate", "-v0"], env=env, check=True, cwd=ROOT)
            started = time.monotonic()
            done = subprocess.run(
                [*manage, "simulate", "support-refund", "--runs", str(args.runs),
                 "--seed", str(args.seed)],
                env=env, cwd=ROOT, capture_output=True, text=True,
            )  # fmt: skip
            took = time.monotonic() - started
            if done.returncode:
                print(done.stdout[-3000:], done.stderr[-3000:], file=sys.stderr)
                return 1
            last = [line for line in done.stdout.splitlines() if " runs in " in line]
            where = "SQLite" if args.sqlite else "PostgreSQL"
            print(f"round {n}: {args.runs:,} runs on {where}: {took:.1f} s wall "
                  f"({last[-1].split(';')[0] if last else '?'})")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
