"""The sweeper: a server-executor run nobody is carrying out is dispatched again, and
ends executed once (or failed for a person), never waiting forever.

Tasks run in-process here (eager); tests/traces/test_worker.py runs the same paths on a
real worker and a real Redis that is stopped and killed.
"""

from datetime import timedelta

import pytest
from django.utils import timezone

from ladder.models import ActionType
from ladder.rungs import Executor
from tests.traces.test_execution import CALLS, approved_run
from traces.models import DemoLedgerEntry, Run, RunStatus, TraceEvent
from traces.services.execution import Sweep, execution_sweep, run_execute

pytestmark = pytest.mark.django_db

LEASE = timedelta(seconds=40)  # the default LADDER_EXECUTION_LEASE_SECONDS


def abandoned(run, *, claimed_ago, attempts=1):
    """The state a worker leaves behind when it dies after claiming the run."""
    Run.objects.filter(pk=run.pk).update(
        status=RunStatus.EXECUTING,
        execution_attempts=attempts,
        execution_claimed_at=timezone.now() - claimed_ago,
        updated_at=timezone.now() - claimed_ago,
    )


def phases(run):
    return [e.payload["phase"] for e in TraceEvent.objects.filter(run=run, type="execution")]


def test_a_run_left_approved_is_dispatched_after_the_grace_and_executed_once():
    run = approved_run()
    now = timezone.now()
    assert execution_sweep(now=now) == Sweep(waiting=0, abandoned=0, unsent=0)
    assert Run.objects.get(pk=run.pk).status == RunStatus.APPROVED  # still in its grace

    assert execution_sweep(now=now + timedelta(seconds=11)) == Sweep(1, 0, 0)
    assert Run.objects.get(pk=run.pk).status == RunStatus.EXECUTED
    assert DemoLedgerEntry.objects.count() == 1
    assert phases(run) == ["started", "finished"]
    assert execution_sweep(now=now + timedelta(hours=1)) == Sweep(0, 0, 0)


def test_agent_executor_runs_are_left_to_their_agent():
    run = approved_run()
    ActionType.objects.filter(pk=run.action_type_id).update(executor=Executor.AGENT)
    assert execution_sweep(now=timezone.now() + timedelta(hours=1)) == Sweep(0, 0, 0)
    assert Run.objects.get(pk=run.pk).status == RunStatus.APPROVED


def test_a_lost_worker_s_run_is_re_called_with_the_same_key_after_its_lease():
    run = approved_run()
    # The dead worker had reached the bank: the ledger holds the entry under the run's key.
    DemoLedgerEntry.objects.create(
        idempotency_key=f"refund.issue:{run.id}", action="refund.issue", params={"amount": 7}
    )
    abandoned(run, claimed_ago=LEASE - timedelta(seconds=5))
    assert execution_sweep() == Sweep(0, 0, 0)  # its worker may still be calling
    assert Run.objects.get(pk=run.pk).status == RunStatus.EXECUTING

    abandoned(run, claimed_ago=LEASE + timedelta(seconds=1))
    assert execution_sweep() == Sweep(0, 1, 0)
    done = Run.objects.get(pk=run.pk)
    assert done.status == RunStatus.EXECUTED
    assert done.result["output"]["replayed"] is True
    assert done.execution_attempts == 2
    assert DemoLedgerEntry.objects.count() == 1


def test_a_lost_worker_s_non_idempotent_run_fails_for_a_person():
    run = approved_run("tests.traces.test_execution.fragile_executor")
    abandoned(run, claimed_ago=LEASE + timedelta(seconds=1))
    assert execution_sweep() == Sweep(0, 1, 0)
    failed = Run.objects.get(pk=run.pk)
    assert failed.status == RunStatus.FAILED
    assert "reconcile by hand" in failed.result["error"]
    assert CALLS == []


def test_an_executor_that_keeps_losing_its_worker_is_failed_after_its_attempts(settings):
    settings.LADDER_EXECUTION_MAX_ATTEMPTS = 3
    run = approved_run()
    abandoned(run, claimed_ago=LEASE + timedelta(seconds=1), attempts=3)
    execution_sweep()
    failed = Run.objects.get(pk=run.pk)
    assert failed.status == RunStatus.FAILED
    assert "did not finish in 3 attempts" in failed.result["error"]
    assert DemoLedgerEntry.objects.count() == 0


def test_a_delivery_within_the_lease_leaves_the_run_to_its_worker():
    run = approved_run("tests.traces.test_execution.fragile_executor")
    abandoned(run, claimed_ago=timedelta(seconds=2))
    assert run_execute(run_id=run.id).status == RunStatus.EXECUTING
    assert CALLS == []
    assert phases(run) == []


def test_one_sweep_dispatches_a_bounded_batch_oldest_first(settings):
    settings.LADDER_EXECUTION_SWEEP_BATCH = 2
    runs = [approved_run() for _ in range(3)]
    later = timezone.now() + timedelta(seconds=11)
    assert execution_sweep(now=later) == Sweep(2, 0, 0)
    statuses = [Run.objects.get(pk=r.pk).status for r in runs]
    assert statuses == [RunStatus.EXECUTED, RunStatus.EXECUTED, RunStatus.APPROVED]
    assert execution_sweep(now=later) == Sweep(1, 0, 0)
    assert Run.objects.get(pk=runs[2].pk).status == RunStatus.EXECUTED


def test_a_live_worker_is_stopped_before_its_lease_ends(settings):
    from traces.tasks import execute_run

    lease = settings.LADDER_EXECUTION_LEASE_SECONDS
    assert execute_run.soft_time_limit < execute_run.time_limit < lease


def test_an_executor_that_cannot_be_imported_fails_the_run_instead_of_looping():
    fresh = approved_run("traces.no_such_module.refund")
    assert run_execute(run_id=fresh.id).status == RunStatus.FAILED
    assert "cannot be imported" in Run.objects.get(pk=fresh.pk).result["error"]

    lost = approved_run("traces.no_such_module.refund")
    abandoned(lost, claimed_ago=LEASE + timedelta(seconds=1))
    assert execution_sweep() == Sweep(0, 1, 0)
    failed = Run.objects.get(pk=lost.pk)
    assert failed.status == RunStatus.FAILED
    assert "cannot be imported" in failed.result["error"]
    assert execution_sweep(now=timezone.now() + timedelta(hours=1)) == Sweep(0, 0, 0)
