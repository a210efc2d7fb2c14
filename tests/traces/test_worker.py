"""Real Celery workers on a real Redis execute approved actions exactly once, also when
the broker is stopped while runs are allowed and when a worker is killed mid-call.

Each test runs its own redis-server (tests/traces/live.py), so stopping it touches no
other test; runs are submitted through the real gateway (gunicorn.conf.py) and read back
through the API; the demo ledger stands in for the external system.
"""

import signal
import time

import pytest
from django.utils import timezone

from ladder.rungs import Executor
from tests.factories import ActionTypeFactory, WorkflowFactory
from tests.traces.live import Gateway, RedisServer, Worker, service_env, wait_for
from traces.models import DemoLedgerEntry, Run, TraceEvent
from traces.services.execution import run_execute
from traces.services.policy import policy_set
from traces.services.tokens import token_create

pytestmark = pytest.mark.django_db(transaction=True)

ALLOW_REFUNDS = {
    "audit_sample_rate": 0,
    "rules": [
        {
            "id": "actions",
            "kind": "allow_actions",
            "actions": ["refund.issue"],
            "control": "allowed_tools",
        },
    ],
}


@pytest.fixture
def live(transactional_db):
    """Starts processes for a test and stops every one of them when it ends."""

    class Live:
        def __init__(self):
            self.procs = []

        def add(self, *procs):
            """Start these processes side by side; return them once all serve."""
            self.procs.extend(procs)
            for proc in procs:
                proc.launch()
            for proc in procs:
                proc.ready()
            return procs if len(procs) > 1 else procs[0]

    stack = Live()
    yield stack
    for proc in reversed(stack.procs):
        proc.close()


def l4_refunds(executor_path="traces.demo_executors.refund_issue"):
    """An L4 workflow whose policy allows refunds, run by a server executor; a token."""
    wf = WorkflowFactory(rung=4)
    ActionTypeFactory(
        workflow=wf, name="refund.issue", executor=Executor.SERVER, executor_path=executor_path
    )
    policy_set(workflow=wf, document=ALLOW_REFUNDS, by=None)
    _token, raw = token_create(name="agent", workflows=[wf])
    return wf, raw


def refund(wf, key):
    return {
        "workflow": wf.slug,
        "idempotency_key": key,
        "input": {"message": f"refund order {key} please"},
        "proposal": {
            "action": "refund.issue",
            "params": {"order_id": key, "amount": 20, "currency": "EUR"},
        },
    }


def submit_allowed(gateway, wf, token, key):
    status, run, took = gateway.submit(refund(wf, key), token)
    assert status == 201, run
    assert run["status"] == "approved" and run["policy"]["outcome"] == "allow", run
    return run, took


def status_of(gateway, token, run):
    return gateway.request("GET", f"/api/v1/runs/{run['id']}", token=token)[1]["status"]


def executed(gateway, token, run):
    return lambda: status_of(gateway, token, run) == "executed"


def phases(run):
    events = TraceEvent.objects.filter(run_id=run["id"], type="execution").order_by("seq")
    return [e.payload["phase"] for e in events]


def ledger(run):
    return DemoLedgerEntry.objects.filter(idempotency_key=f"refund.issue:{run['id']}").count()


def test_an_allowed_l4_run_is_executed_exactly_once_by_a_real_worker(live):
    redis = live.add(RedisServer())
    env = service_env(redis.url)
    worker, gateway = live.add(Worker(env, concurrency=2), Gateway(env))
    wf, token = l4_refunds()

    run, _ = submit_allowed(gateway, wf, token, "order-1")
    wait_for(executed(gateway, token, run), timeout=30, what="the run to be executed")
    # The agent retrying the same request gets the same run back, and nothing runs again.
    status, again, _ = gateway.submit(refund(wf, "order-1"), token)
    assert status == 200 and again["id"] == run["id"]
    # Delivered twice more by the broker, as after redeliveries: still one execution.
    _deliver_again(redis, worker, run, times=2)
    assert ledger(run) == 1
    assert phases(run) == ["started", "finished"]
    assert Run.objects.get(pk=run["id"]).execution_attempts == 1


def test_runs_allowed_while_redis_is_hung_or_down_execute_once_it_returns(live):
    """The broker dies under a worker that stays up (no beat): the sweep the worker runs
    as it reconnects sends what waited."""
    redis = live.add(RedisServer())
    env = service_env(redis.url, LADDER_EXECUTION_GRACE_SECONDS=1)
    _, gateway = live.add(Worker(env), Gateway(env))
    wf, token = l4_refunds()
    warm = [submit_allowed(gateway, wf, token, f"warm-{i}") for i in range(4)]
    runs = [run for run, _ in warm]
    for run in runs:  # both gateway processes warm, the worker busy as usual
        wait_for(executed(gateway, token, run), timeout=30, what="a run before the outage")

    redis.signal_group(signal.SIGSTOP)  # Redis hangs: connections open, nothing answers
    hung = [submit_allowed(gateway, wf, token, f"while-hung-{i}") for i in range(4)]
    redis.kill()  # now gone: connections refused
    down = [submit_allowed(gateway, wf, token, f"while-down-{i}") for i in range(3)]
    print(
        "POST /runs, Redis up: "
        + ", ".join(f"{took:.3f}" for _, took in warm)
        + " s; Redis hung: "
        + ", ".join(f"{took:.3f}" for _, took in hung)
        + " s; Redis down: "
        + ", ".join(f"{took:.3f}" for _, took in down)
        + " s"
    )
    assert max(took for _, took in hung) < 4
    # One slow try per gateway process at most: after it, the process leaves the broker
    # alone for LADDER_BROKER_BACKOFF_SECONDS and the sweeper sends the runs.
    assert sum(took > 0.5 for _, took in hung) <= 2
    assert max(took for _, took in down) < 2.5  # two tries of the 1 s broker timeout
    waited = [run for run, _ in hung + down]
    for run in waited:
        assert status_of(gateway, token, run) == "approved"  # recorded, waiting
    _older_than_grace(waited[-1], seconds=1)

    redis.start()  # the same port, empty: anything published before is gone
    back = time.monotonic()
    for run in waited:
        wait_for(executed(gateway, token, run), timeout=60, what="execution after Redis")
    print(f"executed {time.monotonic() - back:.2f} s after Redis came back")
    for run in runs + waited:
        assert ledger(run) == 1 and phases(run) == ["started", "finished"]


def test_a_worker_started_after_the_outage_sends_what_waited(live):
    """No worker runs; Redis dies with two runs' messages in it and comes back empty."""
    redis = live.add(RedisServer())
    env = service_env(redis.url, LADDER_EXECUTION_GRACE_SECONDS=1)
    gateway = live.add(Gateway(env))
    wf, token = l4_refunds()
    # Four runs, so both gateway processes have served (and loaded) before the outage.
    queued = [submit_allowed(gateway, wf, token, f"queued-{i}")[0] for i in range(4)]
    redis.kill()
    down = [submit_allowed(gateway, wf, token, f"while-down-{i}") for i in range(3)]
    print("POST /runs, Redis down: " + ", ".join(f"{took:.3f}" for _, took in down) + " s")
    # The promise: a publish gives up within two tries of LADDER_BROKER_TIMEOUT_SECONDS
    # (1 s), so no request waits on a dead broker beyond that, however loaded the machine.
    assert max(took for _, took in down) < 2.5
    waited = [run for run, _ in down]
    _older_than_grace(waited[-1], seconds=1)
    redis.start()
    started = time.monotonic()
    live.add(Worker(env))  # no beat: the sweep it runs as it connects finds the runs
    for run in queued + waited:
        wait_for(executed(gateway, token, run), timeout=60, what="execution by the new worker")
    print(f"executed {time.monotonic() - started:.2f} s after the worker was started")
    for run in queued + waited:
        assert ledger(run) == 1 and phases(run) == ["started", "finished"]


@pytest.mark.parametrize(
    ("executor", "ends", "attempts"),
    [("gated_refund", "executed", 2), ("gated_refund_once", "failed", 1)],
)
def test_a_worker_killed_mid_batch_leaves_runs_that_each_end_once(
    live, tmp_path, executor, ends, attempts
):
    """SIGKILL to the whole process group of a worker holding two runs, each after its
    external call and before the run is finished: after the lease, beat's sweep hands
    them to the new worker, which calls an idempotent executor again with the same key
    (the ledger deduplicates) or fails a non-idempotent one for a person. Nothing waits
    for the broker's visibility timeout (an hour)."""
    lease = 8
    gate = tmp_path / "gate"
    redis = live.add(RedisServer())
    env = service_env(
        redis.url,
        LADDER_EXECUTION_LEASE_SECONDS=lease,
        LADDER_EXECUTION_SWEEP_SECONDS=1,
        LADDER_TEST_GATE=gate,
    )
    first, gateway = live.add(Worker(env, concurrency=2), Gateway(env))
    wf, token = l4_refunds(f"tests.traces.gated_executor.{executor}")

    runs = [submit_allowed(gateway, wf, token, f"order-{i}")[0] for i in range(2)]
    wait_for(lambda: all(ledger(run) for run in runs), timeout=30, what="both external calls")
    first.kill()
    killed = time.monotonic()
    for run in runs:  # the external calls happened; the runs do not know it yet
        assert status_of(gateway, token, run) == "executing"

    gate.touch()
    live.add(Worker(env, beat=True))
    for run in runs:
        wait_for(
            lambda run=run: status_of(gateway, token, run) == ends,
            timeout=lease + 30,
            what=f"the run to end {ends}",
        )
    print(f"{ends} {time.monotonic() - killed:.2f} s after the worker was killed (lease {lease})")
    for run in runs:
        assert ledger(run) == 1
        stored = Run.objects.get(pk=run["id"])
        assert stored.execution_attempts == attempts
        if ends == "executed":
            assert stored.result["output"]["replayed"] is True
            assert phases(run) == ["started", "started", "finished"]
        else:
            assert "reconcile by hand" in stored.result["error"]
            assert phases(run) == ["started", "finished"]
        # The broker's own redelivery of the dead worker's message, an hour later: a no-op.
        assert run_execute(run_id=stored.id).status == ends
        assert Run.objects.get(pk=run["id"]).trace_length == stored.trace_length
        assert ledger(run) == 1


def test_an_executor_that_hangs_is_stopped_inside_its_lease(live, tmp_path):
    """The soft time limit (2/3 of the lease) interrupts a call that never returns: the
    run is failed for a person before any sweep could hand it to a second worker."""
    lease = 8
    redis = live.add(RedisServer())
    env = service_env(
        redis.url,
        LADDER_EXECUTION_LEASE_SECONDS=lease,
        LADDER_EXECUTION_SWEEP_SECONDS=1,
        LADDER_TEST_GATE=tmp_path / "gate",  # never opened
    )
    _, gateway = live.add(Worker(env, beat=True), Gateway(env))
    wf, token = l4_refunds("tests.traces.gated_executor.gated_refund")
    run, _ = submit_allowed(gateway, wf, token, "order-1")
    wait_for(
        lambda: status_of(gateway, token, run) == "failed",
        timeout=lease + 20,
        what="the time limit to stop the executor",
    )
    stored = Run.objects.get(pk=run["id"])
    assert "ran past its time limit" in stored.result["error"]
    stopped = (stored.executed_at - stored.execution_claimed_at).total_seconds()
    print(f"a hung executor failed {stopped:.2f} s after its claim (lease {lease})")
    assert stopped < lease
    assert stored.execution_attempts == 1
    assert phases(run) == ["started", "finished"]


def _older_than_grace(run, *, seconds):
    """Wait (on the clock, not a fixed sleep) until the sweeper may send the run."""
    stored = Run.objects.get(pk=run["id"])
    wait_for(
        lambda: (timezone.now() - stored.updated_at).total_seconds() > seconds,
        timeout=seconds + 5,
        what="the run to leave its grace",
    )


def _deliver_again(redis, worker, run, *, times):
    """Publish execute_run for the run again and wait until the worker has run every
    delivery (its log names each task it finished)."""
    from ladder.celery import app
    from traces.tasks import execute_run

    app.conf.task_always_eager = False
    try:
        with app.connection_for_write(redis.url) as conn:
            for _ in range(times):
                execute_run.apply_async(args=[run["id"]], connection=conn)
    finally:
        app.conf.task_always_eager = True
    wait_for(
        lambda: worker.output().count("traces.tasks.execute_run[") >= 2 * (1 + times),
        timeout=30,
        what="the worker to run every delivery",
    )
