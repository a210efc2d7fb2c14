"""Celery tasks of the ladder itself (traces/tasks.py holds the runs' own)."""

from celery import shared_task

from ladder.services import certificates_expire


@shared_task(ignore_result=True)
def expire_certificates() -> int:
    """Hourly (CELERY_BEAT_SCHEDULE): L4/L5 workflows whose autonomy certificate lapsed
    drop to L3. Safe to run twice: a demoted workflow is no longer a candidate."""
    return len(certificates_expire())
