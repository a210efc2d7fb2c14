import os

from celery import Celery, signals

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ladder.settings")

app = Celery("ladder")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@signals.task_prerun.connect
def _close_dead_connections(**kwargs) -> None:
    # A task after a PostgreSQL restart opens a fresh connection rather than failing on
    # the one the server hung up on (ladder/dbfaults.py).
    from ladder.dbfaults import close_dead_connections

    close_dead_connections()
