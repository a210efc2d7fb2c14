"""Server execution (the Celery task traces.tasks.execute_run calls run_execute): an
approved action's server executor runs at most once."""

import uuid
from typing import Any

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from traces.models import Run, RunStatus, TraceEvent
from traces.services.redactors import redactor_for
from traces.services.trace import EventSpec, trace_append


def execution_enqueue(*, run_id: uuid.UUID) -> None:
    """Queue an approved run's server executor for when the approval commits. A second
    delivery is harmless: run_execute claims the run with a guarded UPDATE."""
    from traces.tasks import execute_run  # traces.tasks imports this module

    transaction.on_commit(lambda: execute_run.delay(str(run_id)))


def run_execute(*, run_id: uuid.UUID) -> Run:
    """Run an approved action's server executor at most once.

    The claim (approved → executing) is a guarded UPDATE committed before the call, so a
    duplicate delivery finds nothing to claim. A redelivery after a worker died finds the
    run still `executing`: an idempotent executor is called again with the same key (the
    system behind it deduplicates); any other is failed for a human to reconcile.
    """
    from traces.executors import resolve

    with transaction.atomic():
        claimed = Run.objects.filter(pk=run_id, status=RunStatus.APPROVED).update(
            status=RunStatus.EXECUTING,
            execution_attempts=F("execution_attempts") + 1,
            updated_at=timezone.now(),
        )
        run = (
            Run.objects.select_for_update(of=("self",))
            .select_related("action_type", "workflow")
            .get(pk=run_id)
        )
        if not claimed:
            if run.status != RunStatus.EXECUTING:
                return run  # already finished, or never approved: nothing to do
            spec = resolve(run.action_type.executor_path)
            if not spec.idempotent:
                return _finish_execution(
                    run=run,
                    succeeded=False,
                    output=None,
                    error="the worker stopped during execution and this executor cannot be "
                    "retried safely: check the target system and reconcile by hand",
                )
            Run.objects.filter(pk=run_id).update(execution_attempts=F("execution_attempts") + 1)
        trace_append(
            run=run,
            specs=[
                EventSpec(
                    TraceEvent.Type.EXECUTION,
                    {
                        "phase": "started",
                        "executor": run.action_type.executor_path,
                        "attempt": run.execution_attempts + (0 if claimed else 1),
                    },
                    "system",
                )
            ],
        )
    spec = resolve(run.action_type.executor_path)
    decision = run.decision or {}
    try:
        output = spec.fn(
            action=decision.get("action", run.action),
            params=decision.get("params", {}),
            idempotency_key=str(run.id),
        )
        error = None
    except Exception as exc:
        output, error = None, f"{type(exc).__name__}: {exc}"
    with transaction.atomic():
        locked = (
            Run.objects.select_for_update(of=("self",)).select_related("workflow").get(pk=run_id)
        )
        if locked.status != RunStatus.EXECUTING:
            return locked
        return _finish_execution(run=locked, succeeded=error is None, output=output, error=error)


def _finish_execution(*, run: Run, succeeded: bool, output: Any, error: str | None) -> Run:
    payload = redactor_for(run.workflow).redact(
        {
            "phase": "finished",
            "status": "succeeded" if succeeded else "failed",
            "output": output,
            "error": error,
            "executor": "server",
        }
    )
    run.status = RunStatus.EXECUTED if succeeded else RunStatus.FAILED
    run.result = payload
    run.executed_at = timezone.now()
    run.save(update_fields=["status", "result", "executed_at", "updated_at"])
    trace_append(run=run, specs=[EventSpec(TraceEvent.Type.EXECUTION, payload, "system")])
    return run
