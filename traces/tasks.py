from celery import shared_task

from traces.services.backtests import backtest_run
from traces.services.execution import run_execute


@shared_task(acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def execute_run(run_id: str) -> None:
    """Safe to run twice: run_execute claims the run with a guarded UPDATE."""
    import uuid

    run_execute(run_id=uuid.UUID(run_id))


@shared_task(acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def run_backtest(backtest_id: int) -> None:
    """Safe to deliver twice: a finished backtest is left as it is, an unfinished one
    (its worker died) starts over."""
    backtest_run(int(backtest_id))
