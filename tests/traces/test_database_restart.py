"""PostgreSQL restarted under load: the gateway answers 503 with Retry-After while the
database is away, never a 500 and never a half-stored run; the SDK retries with the same
idempotency key; afterwards every run the agents were given exists exactly once, with its
whole trace, `verify_traces` is clean, and every allowed action was executed once.

Everything runs against a cluster of the test's own (tests/traces/live_pg.py): the
gateway under gunicorn (gunicorn.conf.py, 2 processes), a Celery worker with beat on a
private redis-server, agents in threads through the SDK. PostgreSQL is stopped twice
while they submit: `pg_ctl stop -m fast` (clients told "terminating connection due to
administrator command", clean shutdown) and `-m immediate` (every server process quits
at once, as in a crash; the next start runs recovery). Figures are printed (`-s`).
"""

import json
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

import httpx
import psycopg
import pytest

from ladder_client import LadderClient
from tests.traces.live import Gateway, RedisServer, Worker, wait_for
from tests.traces.live_pg import Cluster, manage, project_env, run_python

THREADS = 6
OUTAGE_SECONDS = 3.0

SETUP = """
import json
from ladder.rungs import Executor
from tests.factories import ActionTypeFactory, WorkflowFactory
from traces.services.policy import policy_set
from traces.services.tokens import token_create

l3 = WorkflowFactory(rung=3, slug="restart-l3")
ActionTypeFactory(workflow=l3, name="refund.issue")
l4 = WorkflowFactory(rung=4, slug="restart-l4")
ActionTypeFactory(
    workflow=l4,
    name="refund.issue",
    executor=Executor.SERVER,
    executor_path="traces.demo_executors.refund_issue",
)
policy_set(
    workflow=l4,
    document={
        "audit_sample_rate": 0,
        "rules": [{"id": "actions", "kind": "allow_actions", "actions": ["refund.issue"],
                   "control": "allowed_tools"}],
    },
    by=None,
)
_token, raw = token_create(name="agent", workflows=[l3, l4])
print(json.dumps({"token": raw}))
"""


@dataclass
class Seen:
    """Every answer the gateway gave (through the SDK's transport), timestamped."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    answers: list = field(default_factory=list)  # (monotonic, status, Retry-After)
    transport_errors: list = field(default_factory=list)

    def add(self, status: int, retry_after: str | None) -> None:
        with self.lock:
            self.answers.append((time.monotonic(), status, retry_after))

    def count(self, status: int, since: float = 0.0) -> int:
        with self.lock:
            return sum(1 for at, s, _ in self.answers if s == status and at >= since)


class Recording(httpx.HTTPTransport):
    def __init__(self, seen: Seen):
        super().__init__()
        self.seen = seen

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        try:
            response = super().handle_request(request)
        except httpx.TransportError as exc:
            with self.seen.lock:
                self.seen.transport_errors.append(f"{type(exc).__name__}: {exc}")
            raise
        self.seen.add(response.status_code, response.headers.get("Retry-After"))
        return response


@dataclass
class Submitted:
    key: str
    workflow: str
    run_id: str
    created: bool
    took: float


class Agents:
    """THREADS agents submitting distinct runs until stopped, each through its own SDK
    client (retries enough to outlast an outage of several seconds)."""

    def __init__(self, gateway: Gateway, token: str, seen: Seen):
        self.gateway, self.token, self.seen = gateway, token, seen
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        self.done: list[Submitted] = []
        self.failures: list[str] = []
        self.threads = [
            threading.Thread(target=self._agent, args=(n,), daemon=True) for n in range(THREADS)
        ]

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def stop(self) -> None:
        self.stopping.set()
        for thread in self.threads:
            thread.join(timeout=60)
        assert not any(t.is_alive() for t in self.threads), "an agent thread is stuck"

    def stored(self) -> int:
        with self.lock:
            return len(self.done)

    def _agent(self, n: int) -> None:
        client = LadderClient(
            f"http://127.0.0.1:{self.gateway.port}",
            self.token,
            retries=40,
            backoff=0.05,
            timeout=15,
            transport=Recording(self.seen),
        )
        i = 0
        with client:
            while not self.stopping.is_set():
                i += 1
                key = f"agent{n}-{i}"
                workflow = "restart-l4" if i % 4 == 0 else "restart-l3"
                started = time.monotonic()
                try:
                    info = client.submit_run(
                        workflow,
                        idempotency_key=key,
                        input={"message": f"ticket {key}: parcel {n * 1000 + i} came broken"},
                        proposal={
                            "action": "refund.issue",
                            "params": {"order_id": key, "amount": 5 + i % 20, "currency": "EUR"},
                        },
                    )
                except Exception as exc:  # recorded: the test fails on any
                    with self.lock:
                        self.failures.append(f"{key}: {type(exc).__name__}: {exc}")
                    continue
                with self.lock:
                    self.done.append(
                        Submitted(key, workflow, info.id, info.created, time.monotonic() - started)
                    )


@pytest.fixture
def stack():
    """The cluster and every process; all stopped when the test ends, whatever happens."""
    held: dict = {"procs": []}
    try:
        yield held
    finally:
        for proc in reversed(held["procs"]):
            proc.close()
        if "cluster" in held:
            held["cluster"].close()


def test_postgresql_restarted_under_load_loses_and_doubles_nothing(stack):
    began = time.monotonic()
    cluster = stack["cluster"] = Cluster()
    cluster.start()
    cluster.create_database()
    initialised = time.monotonic()
    cluster.migrate()
    migrated = time.monotonic()

    redis = RedisServer()
    stack["procs"].append(redis)
    redis.start()
    env = project_env(
        cluster.url,
        REDIS_URL=redis.url,
        CELERY_TASK_ALWAYS_EAGER="0",
        LADDER_EXECUTION_GRACE_SECONDS="1",
        LADDER_EXECUTION_SWEEP_SECONDS="1",
        LADDER_EXECUTION_LEASE_SECONDS="6",
        LADDER_RATE_LIMIT_PER_SECOND="0",  # six agents on one token: not a rate test
    )
    worker, gateway = Worker(env, beat=True), Gateway(env)
    stack["procs"] += [worker, gateway]
    for proc in (worker, gateway):
        proc.launch()
    token = json.loads(run_python(cluster.url, SETUP))["token"]  # while they start
    for proc in (worker, gateway):
        proc.ready()
    ready = time.monotonic()

    seen = Seen()
    agents = Agents(gateway, token, seen)
    agents.start()
    outages = []
    try:
        for mode in ("fast", "immediate"):
            before = agents.stored()
            wait_for(lambda b=before: agents.stored() >= b + 20, timeout=30, what="runs stored")
            down = time.monotonic()
            cluster.stop(mode)
            stopped = time.monotonic()
            # The fault is the outage itself: agents keep submitting against it.
            wait_for(lambda d=down: seen.count(503, since=d) >= THREADS, timeout=30,
                     what="the gateway to answer 503 while PostgreSQL is down")  # fmt: skip
            time.sleep(max(0.0, OUTAGE_SECONDS - (time.monotonic() - stopped)))
            cluster.start()
            up = time.monotonic()
            stored_then = agents.stored()
            wait_for(lambda s=stored_then: agents.stored() > s, timeout=30,
                     what="a run stored after PostgreSQL came back")  # fmt: skip
            first_stored = time.monotonic()
            outages.append(
                {
                    "mode": mode,
                    "stop_took": stopped - down,
                    "down": up - stopped,
                    "503s": seen.count(503, since=down),
                    "recovered_after_start": first_stored - up,
                    "at_down": down,
                    "at_up": up,
                }
            )
        after = agents.stored()
        wait_for(lambda: agents.stored() >= after + 20, timeout=30, what="runs after both")
    finally:
        agents.stop()

    # -- what the agents saw --------------------------------------------------------------
    statuses = Counter(status for _, status, _ in seen.answers)
    assert not agents.failures, agents.failures[:5]
    assert not seen.transport_errors, seen.transport_errors[:5]
    assert set(statuses) <= {200, 201, 503}, statuses  # never a 500
    assert all(ra is not None and ra.isdigit() for _, s, ra in seen.answers if s == 503)
    assert statuses[503] >= 2 * THREADS

    # -- what the database holds ------------------------------------------------------------
    done = agents.done
    keys = Counter(d.key for d in done)
    assert max(keys.values()) == 1  # each key submitted (and answered) once
    allowed = [d for d in done if d.workflow == "restart-l4"]
    assert allowed
    with psycopg.connect(cluster.url, autocommit=True) as db:

        def all_executed():
            return not db.execute(
                "SELECT count(*) FROM traces_run WHERE id::text = ANY(%s) AND status <> 'executed'",
                [[d.run_id for d in allowed]],
            ).fetchone()[0]

        wait_for(all_executed, timeout=60, what="every allowed run executed after the outages")
        rows = db.execute(
            "SELECT w.slug, r.idempotency_key, r.id::text, r.trace_length, "
            "(SELECT count(*) FROM traces_traceevent e WHERE e.run_id = r.id) "
            "FROM traces_run r JOIN ladder_workflow w ON w.id = r.workflow_id"
        ).fetchall()
        ledger = db.execute(
            "SELECT idempotency_key, count(*) FROM traces_demoledgerentry GROUP BY 1"
        ).fetchall()
    stored = {(slug, key): (run_id, length, events) for slug, key, run_id, length, events in rows}
    assert len(stored) == len(rows)  # one run per key (the unique constraint, seen from here)
    # Every run an agent was given exists exactly once, under its key, and nothing else
    # was stored (every submission ended in an answer).
    assert {(d.workflow, d.key) for d in done} == set(stored)
    for d in done:
        run_id, trace_length, events = stored[(d.workflow, d.key)]
        assert run_id == d.run_id
        # Not half-stored: the run has its trace, every event the run row counts.
        assert trace_length >= 1 and events == trace_length, (d, trace_length, events)
    # Each allowed action carried out once (one ledger row per run, none for others).
    assert {key for key, _ in ledger} == {f"refund.issue:{d.run_id}" for d in allowed}
    assert all(count == 1 for _, count in ledger)
    verified = manage(cluster.url, "verify_traces").stdout
    assert f"all {len(done)} trace chain(s) verified" in verified, verified

    created = sum(1 for d in done if d.created)
    print(
        f"\nPostgreSQL restart under load: {len(seen.answers)} answers {dict(statuses)}, "
        f"{len(done)} runs ({created} created at first answer, {len(done) - created} "
        f"returned by a retry as already stored), {len(allowed)} executed once; slowest "
        f"SDK call {max(d.took for d in done):.2f} s; set-up {ready - began:.1f} s (initdb "
        f"and start {initialised - began:.1f} s, migrate {migrated - initialised:.1f} s), "
        f"total {time.monotonic() - began:.1f} s; the worker logged "
        f"{worker.output().count('OperationalError')} OperationalError lines"
    )
    for o, following in zip(outages, [*outages[1:], None], strict=True):
        until = following["at_down"] if following else float("inf")
        with seen.lock:
            after_start = sum(
                1 for at, s, _ in seen.answers if s == 503 and o["at_up"] <= at < until
            )
        print(
            f"  stop -m {o['mode']}: stop took {o['stop_took']:.2f} s, down {o['down']:.2f} s, "
            f"{o['503s']} answers 503 from the stop on, first run stored "
            f"{o['recovered_after_start']:.2f} s after the start returned, "
            f"{after_start} answers 503 after it"
        )
