"""Says clearly whether PostgreSQL and Redis answer before the suite starts."""

import os
import sys

import psycopg
import redis

START_PG = "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start"
START_REDIS = "redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save '' --appendonly no"


def main() -> int:
    ok = True
    db_url = os.environ["DATABASE_URL"]
    try:
        with psycopg.connect(db_url.rsplit("/", 1)[0] + "/postgres", connect_timeout=3) as conn:
            conn.execute("select 1")
    except Exception as exc:
        ok = False
        print(f"PostgreSQL is not reachable at {db_url}: {exc}", file=sys.stderr)
        print(f"  start it with: {START_PG}", file=sys.stderr)
    redis_url = os.environ["REDIS_URL"]
    try:
        redis.Redis.from_url(redis_url, socket_connect_timeout=3).ping()
    except Exception as exc:
        ok = False
        print(f"Redis is not reachable at {redis_url}: {exc}", file=sys.stderr)
        print(f"  start it with: {START_REDIS}", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
