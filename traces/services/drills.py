"""Rollback drills (docs/drills.md): revert a batch of a workflow's executed, reversible
runs through their compensating actions, one Celery task per run, timed from the start
to the last run finished.

No run is reversed twice: each item is claimed pending -> reverting with a guarded
UPDATE (a redelivered task finds nothing to claim), a run belongs to at most one item
ever (a unique constraint), and the compensating executor gets a key derived from the
run, `rollback:<run id>`, so the system behind it deduplicates too. A compensation that
fails is reported, never retried.
"""

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import transaction
from django.db.models import Count, Exists, Max, OuterRef, Q
from django.utils import timezone
from kombu.exceptions import OperationalError

from ladder.errors import Unprocessable
from ladder.models import ActionType, Alert, Workflow
from ladder.notify import notify
from traces.executors import resolve
from traces.models import RollbackDrill, RollbackDrillItem, Run, RunStatus, TraceEvent
from traces.services.redactors import redactor_for
from traces.services.trace import EventSpec, run_replay_mark, trace_append

log = logging.getLogger(__name__)

Item = RollbackDrillItem.Status

# What a person is told about a compensation whose worker vanished mid-call.
UNKNOWN = (
    "unknown: the worker stopped while calling the compensating action; whether it "
    "happened is not known; reconcile by hand"
)


@dataclass(frozen=True)
class Compensation:
    """How runs of one action type are reverted: the compensating action type's name and
    its server executor."""

    action: str
    executor_path: str


def compensations_for(*, workflow: Workflow) -> dict[int, Compensation]:
    """{action type id: its compensation} for the workflow's reversible action types whose
    compensating action is an action type of the same workflow with a server executor.
    Raises Unprocessable naming why when there is none, or when one cannot be imported."""
    types = list(ActionType.objects.filter(workflow=workflow))
    by_name = {t.name: t for t in types}
    found, why = {}, []
    for t in types:
        if not t.reversible:
            continue
        comp = by_name.get(t.compensating_action)
        if not t.compensating_action:
            why.append(f"{t.name} names no compensating action")
        elif comp is None:
            why.append(f"{t.name}: its compensating action {t.compensating_action} is not defined")
        elif not comp.executor_path:
            why.append(f"{t.name}: {comp.name} has no server executor")
        else:
            resolve(comp.executor_path)  # Unprocessable when it cannot be imported
            found[t.pk] = Compensation(comp.name, comp.executor_path)
    if not found:
        detail = f" ({'; '.join(why)})" if why else ""
        raise Unprocessable(
            f"nothing in {workflow.slug} is reversible: no action type has a compensating "
            f"action run by a server executor{detail}",
            code="nothing_reversible",
        )
    return found


def drill_start(
    *, workflow: Workflow, batch: int, actor=None, trigger: str = RollbackDrill.Trigger.COMMAND
) -> RollbackDrill:
    """Pick up to `batch` executed runs of the workflow that can be reverted (newest
    first, never one already in a drill), record the drill and its items, and dispatch one
    task per item once this commits. Refuses a batch below 1, a workflow with nothing
    reversible, and one with no run to revert."""
    if batch < 1:
        raise Unprocessable("the batch must be at least 1 run", code="invalid_batch")
    comps = compensations_for(workflow=workflow)
    with transaction.atomic():
        in_a_drill = RollbackDrillItem.objects.filter(run=OuterRef("pk"))
        # Rows another drill is picking right now are skipped, not waited for: the unique
        # constraint on items would refuse them anyway.
        runs = list(
            Run.objects.select_for_update(skip_locked=True, of=("self",))
            .filter(
                workflow=workflow,
                status=RunStatus.EXECUTED,
                probe=False,
                action_type__in=list(comps),
            )
            .exclude(Exists(in_a_drill))
            .order_by("-created_at")
            .only("id", "action_type_id")[:batch]
        )
        if not runs:
            raise Unprocessable(
                f"no executed run of {workflow.slug} can be reverted: every reversible run "
                "is already rolled back or in a drill",
                code="nothing_to_revert",
            )
        drill = RollbackDrill.objects.create(
            workflow=workflow,
            batch=batch,
            picked=len(runs),
            started_at=timezone.now(),
            started_by=actor,
            trigger=trigger,
        )
        items = RollbackDrillItem.objects.bulk_create(
            [
                RollbackDrillItem(
                    drill=drill, run=run, compensating_action=comps[run.action_type_id].action
                )
                for run in runs
            ]
        )
        ids = [item.pk for item in items]
        transaction.on_commit(lambda: drill_items_dispatch(item_ids=ids))
    return drill


def drill_items_dispatch(*, item_ids: list[int]) -> int:
    """Publish one revert task per item; returns how many the broker took. A refused
    publish leaves the item pending for the sweep (drills_sweep) to send again."""
    from traces.tasks import revert_drill_item  # traces.tasks imports this module

    sent = 0
    for item_id in item_ids:
        try:
            revert_drill_item.apply_async(args=[item_id], retry_policy={"max_retries": 1})
        except OperationalError as exc:
            log.warning("drill item %s stays pending, not yet queued (broker: %s)", item_id, exc)
            continue
        sent += 1
    return sent


def drill_item_revert(*, item_id: int) -> RollbackDrillItem | None:
    """Revert one item's run, at most once. The claim (pending -> reverting) commits
    before the compensating executor is called, so a second delivery finds nothing to
    claim; the result is written under the run's row lock. None when there was nothing to
    claim."""
    now = timezone.now()
    claimed = RollbackDrillItem.objects.filter(pk=item_id, status=Item.PENDING).update(
        status=Item.REVERTING, started_at=now
    )
    if not claimed:
        return None
    item = RollbackDrillItem.objects.select_related("run", "run__action_type").get(pk=item_id)
    run = item.run
    decision = run.decision or {}
    output, error = None, ""
    try:
        comp = ActionType.objects.get(workflow_id=run.workflow_id, name=item.compensating_action)
        spec = resolve(comp.executor_path)
        output = spec.fn(
            action=comp.name,
            params={**(decision.get("params") or {}), "reverses_run": str(run.id)},
            idempotency_key=f"rollback:{run.id}",
        )
    except SoftTimeLimitExceeded:
        error = UNKNOWN
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"
    return _item_finish(item_id=item_id, output=output, error=error)


@transaction.atomic
def _item_finish(*, item_id: int, output, error: str) -> RollbackDrillItem:
    # Lock order: run, item, drill (the sweep takes item then drill, never a run).
    run_id = RollbackDrillItem.objects.values_list("run_id", flat=True).get(pk=item_id)
    run = Run.objects.select_for_update(of=("self",)).select_related("workflow").get(pk=run_id)
    item = RollbackDrillItem.objects.select_for_update().get(pk=item_id)
    if not error and run.status != RunStatus.EXECUTED:
        error = f"the run was {run.status} when its compensation returned: reconcile by hand"
    payload = redactor_for(run.workflow).redact(
        {
            "drill": item.drill_id,
            "compensating_action": item.compensating_action,
            "status": "failed" if error else "succeeded",
            "output": output,
            "error": error or None,
        }
    )
    if not error:
        run.status = RunStatus.ROLLED_BACK
        run.save(update_fields=["status", "updated_at"])
    # A failed compensation is in the trace too: the run stays executed, and a person
    # reading its replay sees that a reversal was tried and how it failed.
    trace_append(run=run, specs=[EventSpec(TraceEvent.Type.ROLLBACK, payload, "system")])
    if not error:
        run_replay_mark(run=run)
    # A late truth overrides the sweep's "unknown" (the worker was slow, not dead).
    item.status = Item.FAILED if error else Item.REVERTED
    item.output = payload["output"]
    item.error = error
    item.finished_at = timezone.now()
    item.save(update_fields=["status", "output", "error", "finished_at"])
    _drill_settle(drill_id=item.drill_id)
    return item


def _drill_settle(*, drill_id: int) -> RollbackDrill:
    """Count the drill's items under its row lock; when none is open any more, the drill
    is finished: its duration runs from its start to its last item's finish."""
    drill = RollbackDrill.objects.select_for_update().get(pk=drill_id)
    counts = RollbackDrillItem.objects.filter(drill_id=drill_id).aggregate(
        open=Count("pk", filter=Q(status__in=[Item.PENDING, Item.REVERTING])),
        reverted=Count("pk", filter=Q(status=Item.REVERTED)),
        failed=Count("pk", filter=Q(status=Item.FAILED)),
        last=Max("finished_at"),
    )
    drill.succeeded, drill.failed = counts["reverted"], counts["failed"]
    fields = ["succeeded", "failed"]
    if counts["open"] == 0 and drill.status == RollbackDrill.Status.RUNNING:
        drill.status = RollbackDrill.Status.FINISHED
        drill.finished_at = counts["last"] or timezone.now()
        drill.duration_seconds = (drill.finished_at - drill.started_at).total_seconds()
        drill.load_runs, drill.load_rps = gateway_load(
            since=drill.started_at, until=drill.finished_at
        )
        drill.under_load = drill.load_rps >= settings.LADDER_DRILL_LOAD_MIN_RPS
        fields += ["status", "finished_at", "duration_seconds", "load_runs", "load_rps"]
        fields += ["under_load"]
        if not drill.passed:
            transaction.on_commit(lambda: _drill_failed_notify(drill))
    drill.save(update_fields=fields)
    return drill


def _drill_failed_notify(drill: RollbackDrill) -> None:
    """Tell the workflow's owners that a drill finished without passing: on the page and
    by mail (ladder.notify). Never raises: the drill is stored whatever the mail does."""
    try:
        workflow = Workflow.objects.get(pk=drill.workflow_id)
        who = drill.started_by.get_username() if drill.started_by_id else "manage.py"
        notify(
            workflow=workflow,
            kind=Alert.Kind.DRILL_FAILED,
            subject=f"Rollback drill #{drill.pk} of {workflow.name} failed",
            body=(
                f"The rollback drill #{drill.pk} started by {who} reverted {drill.succeeded} "
                f"of {drill.picked} runs; {drill.failed} compensation"
                f"{'' if drill.failed == 1 else 's'} failed and were not retried. Each "
                "failed run is still executed: check it in the target system and reconcile "
                "it by hand. The rollback gate fails until a drill passes."
            ),
            evidence={
                "drill": drill.pk,
                "picked": drill.picked,
                "succeeded": drill.succeeded,
                "failed": drill.failed,
                "duration_seconds": drill.duration_seconds,
            },
        )
    except Exception:
        log.exception("could not tell the owners of drill %s that it failed", drill.pk)


def _uuid7_floor(at: datetime) -> uuid.UUID:
    """The smallest run id (UUIDv7, traces/ids.py) created at `at`'s millisecond."""
    ms = int(at.timestamp() * 1000)
    return uuid.UUID(int=(ms & ((1 << 48) - 1)) << 80)


def gateway_load(*, since: datetime, until: datetime) -> tuple[int, float]:
    """How many runs the gateway stored for any workflow in [since, until), and how many
    a second. Read as a range of the primary key: run ids begin with their creation
    millisecond, so this needs no index on created_at."""
    n = Run.objects.filter(pk__gte=_uuid7_floor(since), pk__lt=_uuid7_floor(until)).count()
    seconds = (until - since).total_seconds()
    return n, (n / seconds if seconds > 0 else 0.0)


def drills_sweep(*, now: datetime | None = None) -> tuple[int, int]:
    """Items nobody finished: a `pending` item older than the execution grace was never
    published (broker down) and is sent again; a `reverting` item older than the lease
    lost its worker and is failed as unknown, for a person to reconcile (the
    compensation may or may not have happened: it is not called again). Returns
    (sent again, failed)."""
    now = now or timezone.now()
    grace = now - timedelta(seconds=settings.LADDER_EXECUTION_GRACE_SECONDS)
    lease = now - timedelta(seconds=settings.LADDER_EXECUTION_LEASE_SECONDS)
    batch = settings.LADDER_EXECUTION_SWEEP_BATCH
    open_items = RollbackDrillItem.objects.filter(status__in=[Item.PENDING, Item.REVERTING])
    waiting = list(
        open_items.filter(status=Item.PENDING, drill__started_at__lt=grace).values_list(
            "pk", flat=True
        )[:batch]
    )
    sent = drill_items_dispatch(item_ids=waiting) if waiting else 0
    lost = list(
        open_items.filter(status=Item.REVERTING, started_at__lt=lease).values_list("pk", flat=True)[
            :batch
        ]
    )
    for item_id in lost:
        with transaction.atomic():
            item = RollbackDrillItem.objects.select_for_update().get(pk=item_id)
            if item.status != Item.REVERTING:
                continue
            item.status, item.error, item.finished_at = Item.FAILED, UNKNOWN, now
            item.save(update_fields=["status", "error", "finished_at"])
            _drill_settle(drill_id=item.drill_id)
    if waiting or lost:
        log.info("drill sweep: %s sent again, %s failed as unknown", sent, len(lost))
    return sent, len(lost)


def drill_latest_finished(*, workflow_ids: list[int]) -> dict[int, RollbackDrill]:
    """Each workflow's newest finished drill (what the gates read)."""
    found: dict[int, RollbackDrill] = {}
    drills = RollbackDrill.objects.filter(
        workflow_id__in=workflow_ids, status=RollbackDrill.Status.FINISHED
    ).order_by("workflow_id", "-finished_at", "-pk")
    for drill in drills.distinct("workflow_id") if _pg() else drills:
        found.setdefault(drill.workflow_id, drill)
    return found


def _pg() -> bool:
    from django.db import connection

    return connection.vendor == "postgresql"
