"""Real processes for the reliability tests: a private redis-server, Celery workers and
the gunicorn gateway (gunicorn.conf.py's long-poll worker), all on the test database.

Every process is started in a session of its own, so that "the machine died" is one
SIGKILL to its whole process group, and is always stopped when the test ends.
"""

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis
from django.db import connection

ROOT = Path(__file__).resolve().parents[2]
HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def wait_for(
    check: Callable[[], Any],
    *,
    timeout: float,
    what: str,
    on_timeout: Callable[[], str] | None = None,
) -> Any:
    """Poll `check` until it returns something truthy; fail naming `what` at the timeout
    (with what `on_timeout` tells, e.g. a process's log, to say why)."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            told = f"\n{on_timeout()[-6000:]}" if on_timeout else ""
            raise AssertionError(f"timed out after {timeout} s waiting for {what}{told}")
        time.sleep(0.05)


def database_url() -> str:
    db = connection.settings_dict
    return f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"


class Process:
    """A child process in its own session, its output in a temporary log."""

    def __init__(self, argv: list[str], env: dict[str, str], name: str):
        self.argv, self.env, self.name = argv, env, name
        self.log = tempfile.NamedTemporaryFile(  # noqa: SIM115 - closed in close()
            prefix=f"ladder-{name}-", suffix=".log", delete=False
        )
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.launch()
        self.ready()

    def launch(self) -> None:
        self.proc = subprocess.Popen(
            self.argv,
            cwd=ROOT,
            env=self.env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def ready(self) -> None:
        """Wait until the process serves (each kind says how it tells)."""

    def signal_group(self, sig: int) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)

    def kill(self) -> None:
        """The machine died: SIGKILL to the process and all its children at once."""
        self.signal_group(signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait(timeout=10)

    def output(self) -> str:
        return Path(self.log.name).read_text(errors="replace")

    def close(self) -> None:
        # Nothing of a test's processes is worth a graceful stop.
        self.kill()
        self.log.close()
        Path(self.log.name).unlink(missing_ok=True)


class RedisServer(Process):
    """A redis-server of the test's own on a free port, nothing saved to disk."""

    def __init__(self):
        self.port = free_port()
        super().__init__(
            [
                "/usr/bin/redis-server",
                "--port",
                str(self.port),
                "--bind",
                HOST,
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            dict(os.environ),
            "redis",
        )

    @property
    def url(self) -> str:
        return f"redis://{HOST}:{self.port}/0"

    def ready(self) -> None:
        client = redis.Redis(host=HOST, port=self.port, socket_connect_timeout=0.5)
        wait_for(lambda: _pings(client), timeout=10, what="redis-server to answer")


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False


def service_env(redis_url: str, **settings: object) -> dict[str, str]:
    """The environment of a server or worker on the test database and this Redis;
    `settings` are LADDER_* knobs (ladder/settings.py)."""
    return {
        **os.environ,
        "DATABASE_URL": database_url(),
        "REDIS_URL": redis_url,
        "CELERY_TASK_ALWAYS_EAGER": "0",
        "LADDER_DEV_MODE": "1",
        **{name: str(value) for name, value in settings.items()},
    }


class Worker(Process):
    """`celery -A ladder worker` (prefork: the pool that enforces time limits), with
    beat embedded when `beat` is set."""

    def __init__(self, env: dict[str, str], *, concurrency: int = 1, beat: bool = False):
        self.schedule = tempfile.mkdtemp(prefix="ladder-beat-")
        argv = [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "ladder",
            "worker",
            "-c",
            str(concurrency),
            "-l",
            "info",
            "--without-mingle",
            "--without-gossip",
        ]
        if beat:
            argv += ["-B", "-s", f"{self.schedule}/schedule"]
        super().__init__(argv, env, "worker")

    def ready(self) -> None:
        wait_for(lambda: " ready." in self.output(), timeout=30, what="the Celery worker")


class Gateway(Process):
    """The project's server as deployed: gunicorn -c gunicorn.conf.py (2 processes)."""

    def __init__(self, env: dict[str, str], *, workers: int = 2):
        self.port = free_port()
        env = {
            **env,
            "GUNICORN_BIND": f"{HOST}:{self.port}",
            "WEB_CONCURRENCY": str(workers),
        }
        argv = [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py"]
        super().__init__(argv, env, "gunicorn")

    def ready(self) -> None:
        wait_for(self._answers, timeout=30, what="gunicorn to answer")

    def _answers(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"gunicorn exited:\n{self.output()}")
        try:
            return self.request("GET", "/accounts/login/")[0] == 200
        except OSError:
            return False

    def request(
        self, method: str, path: str, body: dict | None = None, token: str = ""
    ) -> tuple[int, Any]:
        conn = http.client.HTTPConnection(HOST, self.port, timeout=30)
        headers = {"Content-Type": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        try:
            conn.request(method, path, body=json.dumps(body) if body else None, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
        finally:
            conn.close()
        is_json = resp.getheader("Content-Type", "").startswith("application/json")
        return resp.status, json.loads(data) if is_json else data

    def submit(self, body: dict, token: str) -> tuple[int, Any, float]:
        """POST /api/v1/runs: (status, answer, seconds taken)."""
        started = time.monotonic()
        status, data = self.request("POST", "/api/v1/runs", body, token)
        return status, data, time.monotonic() - started
