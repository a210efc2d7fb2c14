"""Backtests: start one, and run it (the Celery task `traces.tasks.run_backtest` calls
`backtest_run`). The figures themselves are traces/backtest.py (pure).

A backtest reads a workflow's history with one streaming query (a server-side cursor
over only the columns the simulation needs), oldest first, and writes its progress
after every chunk, so the page can show how far it got.
"""

import gc
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone
from kombu.exceptions import OperationalError

from ladder.errors import Conflict, Unprocessable
from ladder.models import PolicyVersion, Workflow
from ladder.policies import policy_compile, policy_validate
from ladder.policy import CompiledPolicy, policy_document
from ladder.rungs import Rung
from traces.backtest import Backtester
from traces.models import Backtest, Run, RunStatus
from traces.status import APPROVED_STATUSES

log = logging.getLogger(__name__)

CHUNK = 5000
# The statuses a person's decision leaves an L3 run in: rejected, or approved and after.
DECIDED_BY_PERSON = sorted({RunStatus.REJECTED, *APPROVED_STATUSES})
COLUMNS = ("id", "created_at", "proposal", "status", "value", "currency")


def backtest_history(
    workflow_id: int, *, since: datetime | None = None, until: datetime | None = None
) -> QuerySet:
    """The runs a backtest replays, as (id, created_at, proposal, status, value, currency):
    the workflow's runs handled at L3 that a person decided (approved or rejected),
    created in [since, until), oldest first."""
    runs = Run.objects.filter(
        workflow_id=workflow_id,
        rung=Rung.L3,
        status__in=DECIDED_BY_PERSON,
        decided_by__isnull=False,
        proposal__isnull=False,
    )
    if since is not None:
        runs = runs.filter(created_at__gte=since)
    if until is not None:
        runs = runs.filter(created_at__lt=until)
    return runs.order_by("created_at", "id").values_list(*COLUMNS)


def backtest_start(
    *,
    workflow: Workflow,
    by,
    version: PolicyVersion | None = None,
    document: Any = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> Backtest:
    """Queue a backtest of a saved version or of an unsaved document (validated against
    the workflow's action types first: `Unprocessable`, every problem named, nothing
    stored). The task is sent once the row is committed."""
    if (version is None) == (document is None):
        raise Unprocessable("test either a saved version or a document", code="invalid_backtest")
    if version is not None:
        if version.workflow_id != workflow.pk:
            raise Unprocessable("no such policy version", code="invalid_backtest")
        document = version.document
    # Stored normalised (decimals as strings), as a saved version is.
    document = policy_document(policy_validate(workflow, document))
    if since is not None and until is not None and since >= until:
        raise Unprocessable("the window must end after it starts", code="invalid_window")
    with transaction.atomic():
        _refuse_when_busy(workflow)
        backtest = Backtest.objects.create(
            workflow=workflow,
            version=version,
            document=document,
            since=since,
            until=until,
            requested_by=by,
        )
        transaction.on_commit(lambda: _dispatch(backtest.pk))
    return backtest


def _refuse_when_busy(workflow: Workflow) -> None:
    """At most LADDER_MAX_RUNNING_BACKTESTS of one workflow queued or running at once: each
    reads the workflow's whole history, and a person clicking "start" again and again must
    not fill the workers. One unfinished for more than an hour (its worker died) no longer
    counts, so a lost backtest never blocks the workflow."""
    limit = settings.LADDER_MAX_RUNNING_BACKTESTS
    if not limit:
        return
    # The workflow row's lock makes count-then-create one step (the caller's transaction).
    Workflow.objects.select_for_update().filter(pk=workflow.pk).first()
    busy = Backtest.objects.filter(
        workflow=workflow,
        state__in=(Backtest.State.QUEUED, Backtest.State.RUNNING),
        created_at__gt=timezone.now() - timedelta(hours=1),
    ).count()
    if busy >= limit:
        raise Conflict(
            f"{busy} backtests of this workflow are still running (at most {limit} at "
            "once): wait for one to finish",
            code="backtests_busy",
        )


def _dispatch(backtest_id: int) -> None:
    from traces.tasks import run_backtest  # traces.tasks imports this module

    try:
        run_backtest.delay(backtest_id)
    except OperationalError:
        # The broker is down: say so on the page rather than leave it queued forever.
        log.warning("backtest %s: the task queue could not be reached", backtest_id)
        _fail(backtest_id, "the task queue could not be reached; start the backtest again")


def _fail(backtest_id: int, error: str) -> None:
    Backtest.objects.filter(pk=backtest_id).exclude(state=Backtest.State.DONE).update(
        state=Backtest.State.FAILED, error=error[:300], finished_at=timezone.now()
    )


def backtest_run(backtest_id: int) -> Backtest | None:
    """Run a queued (or redelivered) backtest to the end. A second delivery of a finished
    one does nothing; a delivery after a worker died starts it over from the first run."""
    backtest = Backtest.objects.select_related("workflow").filter(pk=backtest_id).first()
    if backtest is None or backtest.finished:
        return backtest
    compiled = policy_compile(backtest.workflow, backtest.document)
    if compiled is None:
        _fail(backtest_id, "the policy no longer fits the workflow's action types")
        return Backtest.objects.get(pk=backtest_id)
    history = backtest_history(backtest.workflow_id, since=backtest.since, until=backtest.until)
    total = history.count()
    Backtest.objects.filter(pk=backtest_id).update(
        state=Backtest.State.RUNNING,
        progress_done=0,
        progress_total=total,
        started_at=timezone.now(),
    )
    try:
        result = _replay(backtest_id, compiled, history)
    except Exception as exc:
        log.exception("backtest %s failed", backtest_id)
        _fail(backtest_id, f"the backtest failed: {type(exc).__name__}")
        return Backtest.objects.get(pk=backtest_id)
    # The count was taken before the stream: a run decided in between may be in one and
    # not the other, so the finished bar shows what was replayed.
    Backtest.objects.filter(pk=backtest_id).update(
        state=Backtest.State.DONE,
        progress_done=result["runs"],
        progress_total=result["runs"],
        result=result,
        finished_at=timezone.now(),
    )
    return Backtest.objects.get(pk=backtest_id)


@contextmanager
def _collector_paused() -> Iterator[None]:
    """The cyclic garbage collector off while a history streams through: every row
    allocates a few containers and the simulation keeps some, so the collector runs every
    few hundred rows over a growing heap and finds nothing (our rows make no cycles).
    Measured on 100,000 runs: ~20% of a backtest (bench/README.md, "Backtests")."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _replay(backtest_id: int, compiled: CompiledPolicy, history: QuerySet) -> dict:
    tester = Backtester(compiled)
    chunk: list[tuple] = []
    with _collector_paused():
        for row in history.iterator(chunk_size=CHUNK):
            chunk.append(row)
            if len(chunk) == CHUNK:
                tester.feed(chunk)
                chunk = []
                Backtest.objects.filter(pk=backtest_id).update(progress_done=tester.runs)
        tester.feed(chunk)
    return tester.result()
