"""A throwaway PostgreSQL cluster of a test's own (initdb in a temporary directory, trust
auth, a free loopback port, its unix socket in that directory), so a test can stop and
start the database under a running gateway without touching anyone else's.

The server binaries come from Debian's packages (/usr/lib/postgresql/<version>/bin, the
ones CI's `pg_ctlcluster` runs) or PATH; without them the test fails saying so. initdb
refuses to run as root, so as root the cluster runs as the `postgres` user.
"""

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from tests.traces.live import HOST, ROOT, free_port

_MISSING = (
    "the PostgreSQL server binaries (initdb, pg_ctl) are needed for the database restart "
    "tests and were found neither under /usr/lib/postgresql/*/bin nor on PATH: "
    "install them (Debian: apt-get install postgresql)"
)


def server_bin() -> Path:
    """The directory holding initdb and pg_ctl: the newest Debian version, else PATH."""
    versions = []
    for pg_ctl in Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"):
        version = pg_ctl.parents[1].name
        if version.isdigit() and (pg_ctl.parent / "initdb").exists():
            versions.append((int(version), pg_ctl.parent))
    if versions:
        return max(versions)[1]
    found = shutil.which("pg_ctl")
    if found and (Path(found).resolve().parent / "initdb").exists():
        return Path(found).resolve().parent
    raise AssertionError(_MISSING)


class Cluster:
    """initdb'ed at construction; `start()`, `stop(mode)`, `close()` (always)."""

    def __init__(self, dbname: str = "ladder"):
        self.bin = server_bin()
        self.dbname = dbname
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="ladder-pg-"))
        self.data = self.dir / "data"
        self.log = self.dir / "server.log"
        self.user = "postgres" if os.geteuid() == 0 else None
        try:
            if self.user is not None:
                shutil.chown(self.dir, user=self.user)
            self._pg("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres",
                     "-E", "UTF8", "--no-sync")  # fmt: skip
        except BaseException:
            shutil.rmtree(self.dir, ignore_errors=True)
            raise

    @property
    def url(self) -> str:
        return f"postgres://postgres@{HOST}:{self.port}/{self.dbname}"

    def _pg(self, tool: str, *args: str, timeout: float = 60) -> str:
        done = subprocess.run(
            [str(self.bin / tool), *args],
            user=self.user,
            cwd=self.dir,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if done.returncode != 0:
            raise AssertionError(
                f"{tool} {' '.join(args)} failed ({done.returncode}):\n{done.stdout}{done.stderr}"
                f"\n{self.server_log()}"
            )
        return done.stdout

    def server_log(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def start(self) -> None:
        """Start and wait until it accepts connections (pg_ctl -w)."""
        options = (
            f"-p {self.port} -k {self.dir} -c listen_addresses={HOST} "
            # A throwaway: nothing here has to survive the machine, only the server. Not
            # synchronous_commit=off: a commit would be answered before its WAL is
            # written, and `stop -m immediate` loses it (tried: an acknowledged run gone).
            "-c fsync=off -c full_page_writes=off"
        )
        self._pg("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "30",
                 "-o", options, "start")  # fmt: skip

    def stop(self, mode: str = "fast") -> None:
        """`fast`: clients are disconnected ("terminating connection due to administrator
        command") and the server shuts down cleanly; `immediate`: every server process
        quits at once, as in a crash (recovery runs at the next start)."""
        self._pg("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "30", "stop")

    def running(self) -> bool:
        done = subprocess.run(
            [str(self.bin / "pg_ctl"), "-D", str(self.data), "status"],
            user=self.user,
            capture_output=True,
            timeout=30,
            check=False,
        )
        return done.returncode == 0

    def create_database(self) -> None:
        self._pg("createdb", "-h", HOST, "-p", str(self.port), "-U", "postgres", self.dbname)

    def migrate(self) -> None:
        """The product's schema, by its own migrations, in a process of its own."""
        manage(self.url, "migrate", "--no-input", "-v", "0", timeout=300)

    def close(self) -> None:
        try:
            if self.data.exists() and self.running():
                self.stop("immediate")
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)


def project_env(database_url: str, **extra: str) -> dict[str, str]:
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "LADDER_DEV_MODE": "1",
        "DJANGO_SETTINGS_MODULE": "ladder.settings",
        **extra,
    }
    env.pop("TEST_DATABASE_NAME", None)
    return env


def manage(database_url: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """`manage.py <args>` against that database; fails the test on a non-zero exit."""
    done = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=project_env(database_url),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if done.returncode != 0:
        raise AssertionError(f"manage.py {' '.join(args)} failed:\n{done.stdout}{done.stderr}")
    return done


def run_python(database_url: str, code: str, timeout: float = 120) -> str:
    """Run `code` in a Django process on that database; its standard output."""
    done = subprocess.run(
        [sys.executable, "-c", "import django\ndjango.setup()\n" + code],
        cwd=ROOT,
        env=project_env(database_url),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if done.returncode != 0:
        raise AssertionError(f"setup code failed:\n{done.stdout}{done.stderr}")
    return done.stdout
