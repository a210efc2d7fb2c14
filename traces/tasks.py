from celery import shared_task

from traces.services.execution import run_execute


@shared_task(acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def execute_run(run_id: str) -> None:
    """Safe to run twice: run_execute claims the run with a guarded UPDATE."""
    import uuid

    run_execute(run_id=uuid.UUID(run_id))
