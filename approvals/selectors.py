"""Reads for the people: queues, runs they may see, counts."""

import uuid
from dataclasses import dataclass
from datetime import datetime

from django.contrib.auth.models import User
from django.db import connection
from django.db.models import Q, QuerySet

from approvals.roles import COMPLY, OWN, REVIEW, VIEW_PERMS, workflows_for
from ladder.errors import NotFound
from traces.models import Run, RunStatus, TraceEvent

PAGE_SIZE = 50


@dataclass(frozen=True)
class QueueFilters:
    workflow: str = ""
    queue: str = ""
    action: str = ""


def reviewable_workflow_ids(*, user: User) -> list[int]:
    return list(workflows_for(user=user, perm=REVIEW).values_list("id", flat=True))


def owned_workflow_ids(*, user: User) -> list[int]:
    return list(workflows_for(user=user, perm=OWN).values_list("id", flat=True))


def visible_workflow_ids(*, user: User) -> list[int]:
    return list(workflows_for(user=user, perm=VIEW_PERMS).values_list("id", flat=True))


def runs_waiting_for(*, workflow_ids: list[int], filters: QueueFilters) -> QuerySet[Run]:
    """Waiting runs of the given workflows, oldest first, filtered. Served by the partial
    indexes on pending_review rows (traces.Run.Meta.indexes)."""
    runs = Run.objects.filter(status=RunStatus.PENDING_REVIEW, workflow_id__in=workflow_ids)
    if filters.workflow:
        runs = runs.filter(workflow__slug=filters.workflow)
    if filters.queue:
        runs = runs.filter(queue=filters.queue)
    if filters.action:
        runs = runs.filter(action_type__name=filters.action)
    return runs.select_related("workflow", "action_type").order_by("created_at", "id")


def page_after(
    runs: QuerySet[Run], *, after: tuple[datetime, uuid.UUID] | None, size: int = PAGE_SIZE
) -> tuple[list[Run], bool]:
    """Keyset pagination: constant cost however deep the page (no OFFSET scan)."""
    if after is not None:
        at, run_id = after
        runs = runs.filter(Q(created_at__gt=at) | Q(created_at=at, id__gt=run_id))
    rows = list(runs[: size + 1])
    return rows[:size], len(rows) > size


def facet_counts(*, workflow_ids: list[int]) -> dict[str, dict]:
    """Waiting counts per workflow, per queue and per action type, in one scan."""
    if not workflow_ids:
        return {"workflow": {}, "queue": {}, "action": {}, "total": 0}
    sql = """
        SELECT w.slug, r.queue, a.name, GROUPING(w.slug, r.queue, a.name), count(*)
        FROM traces_run r
        JOIN ladder_workflow w ON w.id = r.workflow_id
        LEFT JOIN ladder_actiontype a ON a.id = r.action_type_id
        WHERE r.status = 'pending_review' AND r.workflow_id = ANY(%s)
        GROUP BY GROUPING SETS ((w.slug), (r.queue), (a.name), ())
    """
    if connection.vendor != "postgresql":
        return _facet_counts_portable(workflow_ids)
    out: dict[str, dict] = {"workflow": {}, "queue": {}, "action": {}, "total": 0}
    with connection.cursor() as cur:
        cur.execute(sql, [list(workflow_ids)])
        for slug, queue, action, grouping, count in cur.fetchall():
            # GROUPING bits: 4 = slug rolled up, 2 = queue, 1 = action.
            if grouping == 7:
                out["total"] = count
            elif grouping == 3:
                out["workflow"][slug] = count
            elif grouping == 5:
                out["queue"][queue] = count
            elif grouping == 6 and action is not None:
                out["action"][action] = count
    return out


def _facet_counts_portable(workflow_ids: list[int]) -> dict[str, dict]:
    from django.db.models import Count

    base = Run.objects.filter(status=RunStatus.PENDING_REVIEW, workflow_id__in=workflow_ids)
    return {
        "workflow": dict(base.values_list("workflow__slug").annotate(n=Count("id"))),
        "queue": dict(base.values_list("queue").annotate(n=Count("id"))),
        "action": dict(
            base.exclude(action_type=None).values_list("action_type__name").annotate(n=Count("id"))
        ),
        "total": base.count(),
    }


def failed_runs_for_owner(*, workflow_ids: list[int], limit: int = 20) -> list[Run]:
    if not workflow_ids:
        return []
    return list(
        Run.objects.filter(status=RunStatus.FAILED, workflow_id__in=workflow_ids)
        .select_related("workflow", "action_type")
        .order_by("-executed_at")[:limit]
    )


def run_for_person(*, user: User, run_id) -> Run:
    """A run the person may see (any role on its workflow); otherwise 404, so a guessed
    URL reveals nothing about other workflows."""
    try:
        run_uuid = uuid.UUID(str(run_id))
    except ValueError:
        raise NotFound("no such run") from None
    run = (
        Run.objects.select_related("workflow", "action_type", "decided_by")
        .filter(pk=run_uuid, workflow_id__in=visible_workflow_ids(user=user))
        .first()
    )
    if run is None:
        raise NotFound("no such run")
    return run


def run_context(*, run: Run) -> dict:
    """What the agent had: input, tool calls, output — from the trace."""
    context: dict = {"input": None, "tool_calls": [], "output": None}
    for event in TraceEvent.objects.filter(
        run=run, type__in=["input", "tool_call", "output"]
    ).order_by("seq"):
        payload = event.payload
        if event.type == "input":
            context["input"] = payload.get("input")
        elif event.type == "tool_call":
            context["tool_calls"].append(payload)
        else:
            context["output"] = payload.get("output")
    return context


def neighbours(*, run: Run, workflow_ids: list[int]) -> tuple[Run | None, Run | None]:
    """The previous and next waiting run in the reviewer's queue order."""
    waiting = Run.objects.filter(
        status=RunStatus.PENDING_REVIEW, workflow_id__in=workflow_ids
    ).exclude(pk=run.pk)
    before = Q(created_at__lt=run.created_at) | Q(created_at=run.created_at, id__lt=run.id)
    prev_run = waiting.filter(before).order_by("-created_at", "-id").only("id").first()
    next_run = waiting.exclude(before).order_by("created_at", "id").only("id").first()
    return prev_run, next_run


def next_waiting(*, workflow_ids: list[int], exclude=None) -> Run | None:
    runs = Run.objects.filter(status=RunStatus.PENDING_REVIEW, workflow_id__in=workflow_ids)
    if exclude is not None:
        runs = runs.exclude(pk=exclude)
    return runs.order_by("created_at", "id").only("id").first()


def can(user: User, perm: str, run: Run) -> bool:
    return user.has_perm(perm, run.workflow)


__all__ = ["COMPLY", "OWN", "REVIEW"]
