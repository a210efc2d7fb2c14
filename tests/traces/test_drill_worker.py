"""Rollback drills carried out by real Celery workers on a private redis-server
(tests/traces/live.py): 50 runs made through the agent API and a reviewer's approval,
executed by a worker, then reverted by `manage.py rollback_drill`; the ledger, the
replays and the L3 -> L4 gate agree. Redelivered tasks reverse nothing twice; a failing
compensation fails the drill and is not retried."""

import re
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from kombu import pools

from ladder.celery import app as celery_app
from tests.traces.drills_setup import approve, refund_body, refunds_workflow
from tests.traces.live import RedisServer, Worker, service_env, wait_for
from traces.models import DemoLedgerEntry, RollbackDrill, Run
from traces.services.gates import gates_recompute
from traces.tasks import revert_drill_item

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def broker(transactional_db):
    """A private redis-server, this process publishing to it (not eagerly), and a real
    prefork worker (2 processes) consuming from it."""
    redis = RedisServer()
    redis.start()
    saved = {
        "broker_url": celery_app.conf.broker_url,
        "task_always_eager": celery_app.conf.task_always_eager,
    }
    celery_app.conf.update(broker_url=redis.url, task_always_eager=False)
    _forget_connections()  # the next publish connects to this broker
    worker = Worker(service_env(redis.url), concurrency=2)
    try:
        worker.start()
        yield worker
    finally:
        worker.close()
        celery_app.conf.update(**saved)
        _forget_connections()
        redis.close()


def _forget_connections() -> None:
    """Close this process's broker connections and forget them, kombu's registry of pools
    included: a pool closed but still registered would be handed to the next test's
    publish ("Acquire on closed pool")."""
    pools.reset()
    celery_app._pool = None
    celery_app.amqp._producer_pool = None


def executed_runs(api, wf, people, n: int) -> list[str]:
    ids = []
    for i in range(n):
        response = api.post("/runs", refund_body(wf, f"order-{i}"))
        assert response.status_code == 201, response.content
        ids.append(response.json()["id"])
        approve(ids[-1], people["rev"])  # the worker executes it once this commits
    wait_for(
        lambda: Run.objects.filter(pk__in=ids, status="executed").count() == n,
        timeout=120,
        what=f"{n} runs to be executed by the worker",
    )
    return ids


def handled(worker: Worker) -> int:
    """Revert tasks the worker has finished (its log says so for each)."""
    return len(re.findall(r"revert_drill_item\[[^\]]+\] succeeded", worker.output()))


def test_a_drill_of_50_reverts_each_run_once_and_the_l3_gate_reads_it(broker, agent):
    wf, people = refunds_workflow()
    api = agent(wf)
    ids = executed_runs(api, wf, people, 50)

    out = StringIO()
    call_command("rollback_drill", wf.slug, "--batch", "50", "--wait", "120", stdout=out)
    printed = out.getvalue()
    print(printed)
    assert "size 50, succeeded 50, failed 0" in printed and "PASSED" in printed
    drill = RollbackDrill.objects.get()
    assert drill.passed and drill.trigger == "command" and drill.started_by is None
    assert drill.items.filter(status="reverted").count() == 50

    # The ledger reconciles: each refund issued once and reversed once.
    for run_id in ids:
        assert DemoLedgerEntry.objects.filter(idempotency_key=f"refund.issue:{run_id}").count() == 1
        reversed_ = DemoLedgerEntry.objects.filter(
            idempotency_key=f"refund.reverse:rollback:{run_id}"
        )
        assert reversed_.count() == 1
        assert reversed_.get().params["reverses_run"] == run_id
        replay = api.get(f"/runs/{run_id}/replay").json()
        assert replay["complete"] and replay["verified"], replay["missing"]
        assert [s["type"] for s in replay["steps"]][-1] == "rollback"
        assert replay["run"]["rollback"]["status"] == "succeeded"
    assert Run.objects.filter(pk__in=ids, status="rolled_back").count() == 50

    # Every item delivered twice more: nothing is reversed again.
    items = list(drill.items.values_list("pk", flat=True))
    for item_id in items * 2:
        revert_drill_item.delay(item_id)
    wait_for(lambda: handled(broker) >= 150, timeout=60, what="the redelivered tasks")
    reversals = DemoLedgerEntry.objects.filter(idempotency_key__startswith="refund.reverse:")
    assert reversals.count() == 50

    # The drill is the L3 -> L4 gate's evidence.
    snap = gates_recompute(workflow=wf, trigger="command")
    gate = {g["name"]: g for g in snap.gates}["rollback_drill"]
    assert (gate["verdict"], gate["required"]) == ("pass", True)
    assert snap.tallies["drill"]["id"] == drill.pk and snap.tallies["drill"]["size"] == 50


def test_a_failing_compensation_fails_the_drill_and_the_gate_and_is_not_retried(broker, agent):
    wf, people = refunds_workflow(reverse_path="tests.traces.drill_executors.reverse_fails")
    ids = executed_runs(agent(wf), wf, people, 3)
    with pytest.raises(CommandError, match=r"size 3, succeeded 0, failed 3.*FAILED"):
        call_command("rollback_drill", wf.slug, "--batch", "5", "--wait", "60", stdout=StringIO())
    drill = RollbackDrill.objects.get()
    assert drill.finished and not drill.passed
    attempts = DemoLedgerEntry.objects.filter(action="attempt")
    assert attempts.count() == 3
    for item_id in drill.items.values_list("pk", flat=True):
        revert_drill_item.delay(item_id)
    wait_for(lambda: handled(broker) >= 6, timeout=60, what="the redelivered tasks")
    assert attempts.count() == 3  # never called again
    assert Run.objects.filter(pk__in=ids, status="executed").count() == 3
    gate = {g["name"]: g for g in gates_recompute(workflow=wf, trigger="command").gates}
    assert gate["rollback_drill"]["verdict"] == "fail"
