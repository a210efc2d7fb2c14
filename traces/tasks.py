"""Celery tasks. Time limits keep a live worker inside its lease: the executor is
interrupted (soft limit, at 2/3 of LADDER_EXECUTION_LEASE_SECONDS) and its process killed
(hard limit, at 3/4) before the sweeper may give the run to another worker. Limits are
enforced by the prefork pool (the default); solo and thread pools ignore them."""

import logging
import uuid

from celery import bootsteps, shared_task
from django.conf import settings
from kombu.exceptions import OperationalError

from ladder.celery import app
from ladder.models import DriftCheck, GateSnapshot
from traces.services.backtests import backtest_run
from traces.services.breaker import breaker_check_all
from traces.services.deadlines import deadlines_sweep
from traces.services.drift import drift_check_all
from traces.services.drills import drill_item_revert, drills_sweep
from traces.services.execution import execution_sweep, run_execute
from traces.services.gates import gates_recompute_all
from traces.services.probes import probes_seed_all
from traces.services.stop import held_sweep

log = logging.getLogger(__name__)
_LEASE = settings.LADDER_EXECUTION_LEASE_SECONDS


@shared_task(
    acks_late=True,
    reject_on_worker_lost=True,
    ignore_result=True,
    soft_time_limit=_LEASE * 2 // 3,
    time_limit=_LEASE * 3 // 4,
)
def execute_run(run_id: str) -> None:
    """Safe to run twice: run_execute claims the run with a guarded UPDATE."""
    run_execute(run_id=uuid.UUID(run_id))


@shared_task(
    acks_late=True,
    reject_on_worker_lost=True,
    ignore_result=True,
    soft_time_limit=_LEASE * 2 // 3,
    time_limit=_LEASE * 3 // 4,
)
def revert_drill_item(item_id: int) -> None:
    """Safe to run twice: drill_item_revert claims the item with a guarded UPDATE, and
    never calls a compensation again once claimed (docs/drills.md)."""
    drill_item_revert(item_id=int(item_id))


@shared_task(ignore_result=True)
def apply_deadlines() -> int:
    """Every 30 s (CELERY_BEAT_SCHEDULE): decide the waiting runs whose review deadline
    has passed. Safe to overlap: each run is taken under its row lock, skipping rows
    someone else holds."""
    return deadlines_sweep()


@shared_task(ignore_result=True)
def sweep_executions() -> None:
    """Dispatch again what nobody is executing (beat runs this every
    LADDER_EXECUTION_SWEEP_SECONDS), the rollback drills' items nobody finished, and
    what a resumed workflow still holds (docs/stop.md; the resume itself releases it, this
    is the backstop)."""
    execution_sweep()
    drills_sweep()
    held_sweep()


@shared_task(ignore_result=True)
def seed_probes() -> int:
    """Every few minutes (CELERY_BEAT_SCHEDULE): top up the attention probes of every L3
    workflow with a probe rate (docs/evals.md). Safe to overlap: two seedings at once
    can add one beat's probes twice at most, which the next seedings absorb."""
    return probes_seed_all()


class SweepOnConnect(bootsteps.StartStopStep):
    """Sweep once each time a worker connects to the broker: when it starts, and when
    the broker comes back after an outage (Celery restarts a consumer's steps on every
    reconnection). What waited meanwhile goes now, not at the next beat; worker_ready
    would cover the first case only."""

    requires = {"celery.worker.consumer.tasks:Tasks"}

    def start(self, c) -> None:
        try:
            sweep_executions.delay()
        except OperationalError as exc:  # the broker left again: beat's sweep follows
            log.warning("no sweep on connect (broker: %s)", exc)


app.steps["consumer"].add(SweepOnConnect)


@shared_task(acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def run_backtest(backtest_id: int) -> None:
    """Safe to deliver twice: a finished backtest is left as it is, an unfinished one
    (its worker died) starts over."""
    backtest_run(int(backtest_id))


@shared_task(ignore_result=True)
def recompute_gates() -> int:
    """Nightly (CELERY_BEAT_SCHEDULE): a gate snapshot for every workflow. Safe to run
    twice: it only adds snapshots."""
    snapshots = gates_recompute_all(trigger=GateSnapshot.Trigger.NIGHTLY)
    # Each result already checks the breaker; the nightly pass also catches a bound
    # tightened since, or replays marked by the recompute above.
    breaker_check_all()
    return len(snapshots)


@shared_task(ignore_result=True)
def check_drift() -> int:
    """Nightly (CELERY_BEAT_SCHEDULE, half an hour after the gates): a drift check of every
    L4/L5 workflow, and L5's continuous evals (docs/drift.md). Safe to run twice: it adds
    checks, alerts once per breach, and a demotion is a guarded rung change."""
    return len(drift_check_all(trigger=DriftCheck.Trigger.NIGHTLY))
