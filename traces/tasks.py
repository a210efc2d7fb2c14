from celery import shared_task

from traces.services.backtests import backtest_run
from traces.services.deadlines import deadlines_sweep
from traces.services.execution import run_execute


@shared_task(acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def execute_run(run_id: str) -> None:
    """Safe to run twice: run_execute claims the run with a guarded UPDATE."""
    import uuid

    run_execute(run_id=uuid.UUID(run_id))


@shared_task(ignore_result=True)
def apply_deadlines() -> int:
    """Every 30 s (CELERY_BEAT_SCHEDULE): decide the waiting runs whose review deadline
    has passed. Safe to overlap: each run is taken under its row lock, skipping rows
    someone else holds."""
    return deadlines_sweep()


@shared_task(acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def run_backtest(backtest_id: int) -> None:
    """Safe to deliver twice: a finished backtest is left as it is, an unfinished one
    (its worker died) starts over."""
    backtest_run(int(backtest_id))
