"""Server execution: an approved action runs at most once, whatever is retried."""

import pytest
from django.utils import timezone

from ladder.models import ActionType
from ladder.rungs import Executor
from tests.factories import WorkflowFactory
from traces.auth import AgentAuth
from traces.executors import executor
from traces.models import DemoLedgerEntry, Run, RunStatus, TraceEvent
from traces.services.execution import run_execute
from traces.services.gateway import run_submit

pytestmark = pytest.mark.django_db

CALLS: list[dict] = []


@executor(idempotent=False)
def fragile_executor(*, action, params, idempotency_key):
    CALLS.append({"key": idempotency_key, "params": params})
    return {"ok": True}


@executor(idempotent=True)
def exploding_executor(*, action, params, idempotency_key):
    raise RuntimeError("bank timeout")


@pytest.fixture(autouse=True)
def _reset_calls():
    CALLS.clear()


def approved_run(path="traces.demo_executors.refund_issue"):
    wf = WorkflowFactory(rung=3)
    ActionType.objects.create(
        workflow=wf, name="refund.issue", executor=Executor.SERVER, executor_path=path
    )
    auth = AgentAuth(token_id=0, prefix="lat_t", workflow_ids=frozenset([wf.id]))
    run, _ = run_submit(
        auth=auth,
        body={
            "workflow": wf.slug,
            "idempotency_key": "x",
            "input": {"m": 1},
            "proposal": {"action": "refund.issue", "params": {"amount": 5}},
        },
    )
    Run.objects.filter(pk=run.pk).update(
        status=RunStatus.APPROVED,
        decided_at=timezone.now(),
        decision={"verdict": "approved", "action": "refund.issue", "params": {"amount": 7}},
    )
    return run


def test_an_approved_server_action_executes_with_the_final_params():
    run = approved_run()
    result = run_execute(run_id=run.id)
    assert result.status == RunStatus.EXECUTED
    entry = DemoLedgerEntry.objects.get()
    assert entry.params == {"amount": 7}
    phases = [e.payload.get("phase") for e in TraceEvent.objects.filter(run=run, type="execution")]
    assert phases == ["started", "finished"]


def test_running_the_task_twice_executes_once():
    run = approved_run()
    run_execute(run_id=run.id)
    run_execute(run_id=run.id)
    assert DemoLedgerEntry.objects.count() == 1
    assert Run.objects.get(pk=run.pk).execution_attempts == 1


def test_a_redelivery_after_a_crash_retries_an_idempotent_executor_without_repeating():
    run = approved_run()
    # The worker claimed the run and called the bank, then died before recording it.
    Run.objects.filter(pk=run.pk).update(status=RunStatus.EXECUTING, execution_attempts=1)
    DemoLedgerEntry.objects.create(
        idempotency_key=f"refund.issue:{run.id}", action="refund.issue", params={"amount": 7}
    )
    result = run_execute(run_id=run.id)
    assert result.status == RunStatus.EXECUTED
    assert result.result["output"]["replayed"] is True
    assert DemoLedgerEntry.objects.count() == 1


def test_a_redelivery_after_a_crash_never_repeats_a_non_idempotent_executor():
    run = approved_run("tests.traces.test_execution.fragile_executor")
    Run.objects.filter(pk=run.pk).update(status=RunStatus.EXECUTING, execution_attempts=1)
    result = run_execute(run_id=run.id)
    assert result.status == RunStatus.FAILED
    assert "reconcile by hand" in result.result["error"]
    assert CALLS == []


def test_an_executor_error_fails_the_run_visibly():
    run = approved_run("tests.traces.test_execution.exploding_executor")
    result = run_execute(run_id=run.id)
    assert result.status == RunStatus.FAILED
    assert "bank timeout" in result.result["error"]


def test_a_run_that_is_not_approved_is_never_executed():
    run = approved_run("tests.traces.test_execution.fragile_executor")
    Run.objects.filter(pk=run.pk).update(status=RunStatus.REJECTED)
    run_execute(run_id=run.id)
    assert CALLS == []


def test_approving_in_the_ui_queues_execution_after_commit(django_capture_on_commit_callbacks):
    from approvals import services as approvals
    from approvals.roles import role_grant
    from tests.factories import UserFactory

    run = approved_run()
    Run.objects.filter(pk=run.pk).update(status=RunStatus.PENDING_REVIEW, decision=None)
    user = UserFactory(username="approver")
    role_grant(workflow=run.workflow, user=user, role="reviewer", by=None)
    fresh = Run.objects.select_related("workflow").get(pk=run.pk)
    opened = approvals.review_open(run=fresh, user=user)
    with django_capture_on_commit_callbacks(execute=True):
        approvals.review_decide(
            run=fresh,
            reviewer=user,
            seen_hash=opened.hash,
            seen_version=fresh.version,
            decision=approvals.Approval(approve=True),
        )
    assert Run.objects.get(pk=run.pk).status == RunStatus.EXECUTED
    assert DemoLedgerEntry.objects.get().params == {"amount": 5}
