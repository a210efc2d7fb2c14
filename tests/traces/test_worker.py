"""A real Celery worker on the real Redis broker executes an approved action once."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

from tests.traces.test_execution import approved_run
from traces.models import DemoLedgerEntry, Run, RunStatus

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.django_db(transaction=True)
def test_a_real_worker_executes_a_queued_approval_exactly_once(_eager_celery):
    from ladder.celery import app

    app.conf.task_always_eager = False
    run = approved_run()
    env = {
        **os.environ,
        "DATABASE_URL": _test_db_url(),
        "REDIS_URL": settings.REDIS_URL,
        "CELERY_TASK_ALWAYS_EAGER": "0",
    }
    queue = f"test-{os.getpid()}"
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "ladder",
            "worker",
            "-Q",
            queue,
            "-c",
            "1",
            "--pool",
            "solo",
            "-l",
            "warning",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        from traces.tasks import execute_run

        # Delivered twice, as after a redelivery: still one execution.
        execute_run.apply_async(args=[str(run.id)], queue=queue)
        execute_run.apply_async(args=[str(run.id)], queue=queue)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            status = Run.objects.get(pk=run.pk).status
            if status in (RunStatus.EXECUTED, RunStatus.FAILED):
                break
            time.sleep(0.2)
        time.sleep(1.0)  # let the duplicate delivery run too
        assert Run.objects.get(pk=run.pk).status == RunStatus.EXECUTED
        assert DemoLedgerEntry.objects.count() == 1
    finally:
        worker.terminate()
        try:
            worker.wait(timeout=20)
        except subprocess.TimeoutExpired:
            worker.kill()
        app.conf.task_always_eager = True


def _test_db_url() -> str:
    db = connection.settings_dict
    return f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"
