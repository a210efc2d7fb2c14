"""Server execution (the Celery task traces.tasks.execute_run calls run_execute): an
approved action's server executor runs at most once, and never waits forever.

Record first, dispatch after commit: a run is stored `approved` before any message is
sent, so a broker that is down loses nothing. What the broker never got, or a worker
dropped when it died, execution_sweep dispatches again (docs/execution.md)."""

import logging
import time
import uuid
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone
from kombu.exceptions import OperationalError

from ladder.errors import Unprocessable
from ladder.rungs import Executor
from traces.models import Run, RunStatus, TraceEvent
from traces.selectors import stop_state_locked
from traces.services.breaker import breaker_check_later
from traces.services.redactors import redactor_for
from traces.services.trace import EventSpec, run_replay_mark, trace_append

log = logging.getLogger(__name__)

# One quick retry (a pooled connection left stale by a Redis restart reconnects), then
# give up: each attempt is bounded by LADDER_BROKER_TIMEOUT_SECONDS (settings).
_PUBLISH_RETRY = {"max_retries": 1, "interval_start": 0, "interval_step": 0, "interval_max": 0}


def execution_enqueue(*, run_id: uuid.UUID) -> None:
    """Queue an approved run's server executor for when the approval commits. A second
    delivery is harmless: run_execute claims the run with a guarded UPDATE."""
    transaction.on_commit(lambda: execution_dispatch(run_id=run_id))


class _Broker:
    """When this process last failed to publish. For LADDER_BROKER_BACKOFF_SECONDS after
    a failure, publishes are not tried: with a hung Redis each try costs up to two
    timeouts, and every allowed run would hold a server thread (or a sweep) that long."""

    down_until = 0.0


def execution_dispatch(*, run_id: uuid.UUID) -> bool:
    """Publish execute_run for a stored run; False when the broker could not take it.

    Never raises for a broker that is down or hung: the request that approved the run
    has already committed it, and the sweeper sends it again (execution_sweep).
    """
    from traces.tasks import execute_run  # traces.tasks imports this module

    if time.monotonic() < _Broker.down_until:
        log.warning("run %s stays approved, not yet queued (broker down a moment ago)", run_id)
        return False
    try:
        execute_run.apply_async(args=[str(run_id)], retry_policy=_PUBLISH_RETRY)
    except OperationalError as exc:
        _Broker.down_until = time.monotonic() + settings.LADDER_BROKER_BACKOFF_SECONDS
        log.warning("run %s stays approved, not yet queued (broker: %s)", run_id, exc)
        return False
    return True


class Sweep(NamedTuple):
    """What one sweep dispatched again: runs left `approved`, runs whose worker was lost
    (`executing` past the lease), and how many of them the broker did not take."""

    waiting: int
    abandoned: int
    unsent: int


def execution_sweep(*, now: datetime | None = None) -> Sweep:
    """Dispatch again every server-executor run nobody is carrying out.

    `approved` for longer than the grace: its message was never published (broker down)
    or was lost with the broker. `executing` with a claim older than the lease: the
    worker that claimed it died (its own message waits for the broker's visibility
    timeout, an hour); run_execute re-claims it and re-calls an idempotent executor with
    the same key, or fails it for a person. A dispatched run's updated_at moves to now,
    so the next sweeps leave it a grace (or a lease) before sending it once more. At most
    LADDER_EXECUTION_SWEEP_BATCH runs per sweep, oldest first. Agent-executor runs are
    never dispatched: their agent claims them.
    """
    now = now or timezone.now()
    batch = settings.LADDER_EXECUTION_SWEEP_BATCH
    # Attention probes are never executed, approved or not (traces/services/probes.py).
    # Nor is anything of a stopped workflow: it stays `approved` (or `executing`) and
    # goes once the workflow resumes (docs/stop.md).
    server = Run.objects.filter(
        action_type__executor=Executor.SERVER, probe=False, workflow__stopped_at__isnull=True
    )
    grace = now - timedelta(seconds=settings.LADDER_EXECUTION_GRACE_SECONDS)
    waiting = list(
        server.filter(status=RunStatus.APPROVED, updated_at__lt=grace)
        .order_by("updated_at")
        .values_list("id", flat=True)[:batch]
    )
    expired = _lease_expired_at(now)
    abandoned = list(
        server.filter(status=RunStatus.EXECUTING, updated_at__lt=expired)
        .filter(Q(execution_claimed_at__isnull=True) | Q(execution_claimed_at__lt=expired))
        .order_by("updated_at")
        .values_list("id", flat=True)[: batch - len(waiting)]
    )
    sent = [run_id for run_id in waiting + abandoned if execution_dispatch(run_id=run_id)]
    Run.objects.filter(pk__in=sent, status__in=[RunStatus.APPROVED, RunStatus.EXECUTING]).update(
        updated_at=now
    )
    sweep = Sweep(len(waiting), len(abandoned), len(waiting) + len(abandoned) - len(sent))
    if waiting or abandoned:
        log.info("execution sweep: %s", sweep)
    return sweep


def _lease_expired_at(now: datetime) -> datetime:
    return now - timedelta(seconds=settings.LADDER_EXECUTION_LEASE_SECONDS)


def run_execute(*, run_id: uuid.UUID) -> Run:
    """Run an approved action's server executor at most once.

    The claim (approved → executing) is a guarded UPDATE committed before the call, so a
    duplicate delivery finds nothing to claim; it stamps execution_claimed_at, the start
    of the worker's lease. A delivery that finds the run `executing` with its lease
    over (the worker that claimed it died: the sweeper or the broker sent it again)
    re-claims it under the row lock: an idempotent executor is called again with the
    same key (the system behind it deduplicates); any other is failed for a human to
    reconcile. Within the lease it does nothing: a live worker may still be calling.
    """
    from traces.executors import resolve

    now = timezone.now()
    with transaction.atomic():
        stop_state_locked(run_id=run_id)  # orders this claim and a stop (docs/stop.md)
        # Never while the workflow is stopped (the stop button, docs/stop.md): the run
        # stays `approved`, and the resume (or the sweep) sends it again.
        claimed = Run.objects.filter(
            pk=run_id, status=RunStatus.APPROVED, probe=False, workflow__stopped_at__isnull=True
        ).update(
            status=RunStatus.EXECUTING,
            execution_attempts=F("execution_attempts") + 1,
            execution_claimed_at=now,
            updated_at=now,
        )
        run = (
            Run.objects.select_for_update(of=("self",))
            .select_related("action_type", "workflow")
            .get(pk=run_id)
        )
        if not claimed:
            if run.probe or run.status != RunStatus.EXECUTING or not _lease_over(run, now):
                # A probe, finished, never approved, approved but its workflow stopped,
                # or still held by a live worker: nothing to do.
                return run
            if run.workflow.stopped_at is not None:
                return run  # a lost worker's run is taken back only once resumed
            refusal = _no_second_call(run)
            if refusal:
                return _finish_execution(run=run, succeeded=False, output=None, error=refusal)
            Run.objects.filter(pk=run_id).update(
                execution_attempts=F("execution_attempts") + 1, execution_claimed_at=now
            )
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
    decision = run.decision or {}
    try:
        # Resolved inside the try: an executor that cannot be imported fails the run
        # visibly instead of leaving it `executing` for every sweep to send again.
        spec = resolve(run.action_type.executor_path)
        output = spec.fn(
            action=decision.get("action", run.action),
            params=decision.get("params", {}),
            idempotency_key=str(run.id),
        )
        error = None
    except SoftTimeLimitExceeded:
        output, error = (
            None,
            (
                "the executor ran past its time limit and was stopped: whether the action "
                "happened is unknown; check the target system and reconcile by hand"
            ),
        )
    except Exception as exc:
        output, error = None, f"{type(exc).__name__}: {exc}"
    with transaction.atomic():
        locked = (
            Run.objects.select_for_update(of=("self",)).select_related("workflow").get(pk=run_id)
        )
        if locked.status != RunStatus.EXECUTING:
            return locked
        return _finish_execution(run=locked, succeeded=error is None, output=output, error=error)


def _lease_over(run: Run, now: datetime) -> bool:
    # A claim without a stamp predates leases: whoever made it is long gone.
    claimed_at = run.execution_claimed_at
    return claimed_at is None or claimed_at < _lease_expired_at(now)


def _no_second_call(run: Run) -> str:
    """Why a run whose worker was lost must not be handed to its executor again ("" when
    it may be): the executor cannot deduplicate, or it has had its attempts."""
    from traces.executors import resolve

    try:
        idempotent = resolve(run.action_type.executor_path).idempotent
    except Unprocessable as exc:
        return f"{exc}: check the target system and reconcile by hand"
    if not idempotent:
        return (
            "the worker stopped during execution and this executor cannot be retried "
            "safely: check the target system and reconcile by hand"
        )
    attempts = settings.LADDER_EXECUTION_MAX_ATTEMPTS
    if run.execution_attempts >= attempts:
        return (
            f"the executor did not finish in {attempts} attempts: check the target system "
            "and reconcile by hand"
        )
    return ""


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
    run_replay_mark(run=run)
    breaker_check_later(run=run)
    return run
