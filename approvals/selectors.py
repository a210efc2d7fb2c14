"""Reads for the people: queues, runs they may see, counts."""

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from django.contrib.auth.models import User
from django.db.models import Count, OuterRef, Q, QuerySet, Subquery

from approvals.models import PromotionRequest, Review
from approvals.roles import access_for
from ladder.errors import LadderError, NotFound
from ladder.models import ActionType, GateSnapshot, PolicyVersion, Workflow
from ladder.policy import parse_policy, rule_text
from traces.models import Run, RunStatus
from traces.selectors import decision_context

PAGE_SIZE = 50


@dataclass(frozen=True)
class QueueFilters:
    workflow: str = ""
    queue: str = ""
    action: str = ""


def reviewable_workflow_ids(*, user: User) -> list[int]:
    return sorted(access_for(user).review)


def owned_workflow_ids(*, user: User) -> list[int]:
    return sorted(access_for(user).own)


def visible_workflow_ids(*, user: User) -> list[int]:
    return sorted(access_for(user).view)


def waiting_filtered(*, workflow_ids: list[int], filters: QueueFilters) -> QuerySet[Run]:
    """Waiting runs of the given workflows under the queue's filters, unordered.

    Filters are resolved to ids first so each one lands on a partial index over waiting
    rows (traces.Run.Meta.indexes) instead of a join the planner must guess through.
    """
    ids = list(workflow_ids)
    if filters.workflow:
        ids = list(
            Workflow.objects.filter(pk__in=ids, slug=filters.workflow).values_list("id", flat=True)
        )
    runs = Run.objects.filter(status=RunStatus.PENDING_REVIEW, workflow_id__in=ids)
    if filters.queue:
        runs = runs.filter(queue=filters.queue)
    if filters.action:
        action_ids = list(
            ActionType.objects.filter(workflow_id__in=ids, name=filters.action).values_list(
                "id", flat=True
            )
        )
        runs = runs.filter(action_type_id__in=action_ids)
    return runs


def runs_waiting_for(*, workflow_ids: list[int], filters: QueueFilters) -> QuerySet[Run]:
    """Waiting runs of the given workflows, oldest first, filtered."""
    return (
        waiting_filtered(workflow_ids=workflow_ids, filters=filters)
        .select_related("workflow", "action_type")
        .order_by("created_at", "id")
    )


def waiting_since(
    *, workflow_ids: list[int], filters: QueueFilters, since: datetime, cap: int = 100
) -> int:
    """How many runs under the filters started waiting after `since` (the queue page's
    "N new runs" poll), counted up to `cap`."""
    runs = waiting_filtered(workflow_ids=workflow_ids, filters=filters).filter(created_at__gt=since)
    return runs.order_by()[:cap].count()


def parse_after(raw: str) -> tuple[datetime, uuid.UUID] | None:
    """A page cursor ("<created_at>_<id>") from a query string; None when absent or bad."""
    if not raw:
        return None
    try:
        at, run_id = raw.rsplit("_", 1)
        when = datetime.fromisoformat(at)
        # In UTC, as the cursor was written: PostgreSQL refuses offsets past ±15:59, and
        # 9999-12-31T23:59-23:59 is past the last datetime (OverflowError).
        when = when.astimezone(UTC) if when.tzinfo else when.replace(tzinfo=UTC)
        return when, uuid.UUID(run_id)
    except (ValueError, OverflowError):
        return None


def page_after(
    runs: QuerySet[Run], *, after: tuple[datetime, uuid.UUID] | None, size: int = PAGE_SIZE
) -> tuple[list[Run], bool]:
    """Keyset pagination: constant cost however deep the page (no OFFSET scan)."""
    if after is not None:
        at, run_id = after
        # The redundant `>= at` gives the index scan a start key; the OR alone does not.
        runs = runs.filter(created_at__gte=at).filter(
            Q(created_at__gt=at) | Q(created_at=at, id__gt=run_id)
        )
    rows = list(runs[: size + 1])
    return rows[:size], len(rows) > size


def facet_counts(*, workflow_ids: list[int], filters: QueueFilters | None = None) -> dict:
    """Waiting counts per workflow, per queue and per action type.

    Each group's counts are narrowed by the filters of the *other* groups (with "Rung
    L2" chosen, the workflow counts are the L2 runs of each workflow), so a count says
    what clicking it would show. `total` is every waiting run; `matching` the runs under
    all the filters.

    One pass over the covering partial index (run_waiting_facets_idx), grouped by ids;
    names are attached afterwards from the two small tables.
    """
    filters = filters or QueueFilters()
    out: dict = {"workflow": {}, "queue": {}, "action": {}, "total": 0, "matching": 0}
    if not workflow_ids:
        return out
    rows = (
        Run.objects.filter(status=RunStatus.PENDING_REVIEW, workflow_id__in=workflow_ids)
        .values_list("workflow_id", "queue", "action_type_id")
        .annotate(n=Count("id"))
        .order_by()
    )
    slugs = dict(Workflow.objects.filter(pk__in=workflow_ids).values_list("id", "slug"))
    actions = dict(
        ActionType.objects.filter(workflow_id__in=workflow_ids).values_list("id", "name")
    )
    wanted = {"workflow": filters.workflow, "queue": filters.queue, "action": filters.action}
    for wf_id, queue, action_id, n in rows:
        out["total"] += n
        values = {
            "workflow": slugs[wf_id],
            "queue": queue,
            "action": actions[action_id] if action_id is not None else None,
        }
        passes = {k: not wanted[k] or values[k] == wanted[k] for k in values}
        if all(passes.values()):
            out["matching"] += n
        for key, value in values.items():
            if value is None or not all(ok for k, ok in passes.items() if k != key):
                continue
            out[key][value] = out[key].get(value, 0) + n
    return out


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
    """What the agent had when the decision was (or will be) made: input, tool calls,
    output — from the trace, as traces.replay rebuilds it."""
    return decision_context(run_id=run.id).context


def neighbours(
    *, run: Run, workflow_ids: list[int], filters: QueueFilters | None = None
) -> tuple[Run | None, Run | None]:
    """The previous and next waiting run in the reviewer's queue order, under the
    filters the reviewer was working in."""
    waiting = waiting_filtered(workflow_ids=workflow_ids, filters=filters or QueueFilters())
    at, run_id = run.created_at, run.id
    # Each side gets a plain range on created_at as well, so the index scan starts at
    # this run instead of filtering its way there from one end of the queue.
    prev_run = (
        waiting.filter(created_at__lte=at)
        .filter(Q(created_at__lt=at) | Q(created_at=at, id__lt=run_id))
        .order_by("-created_at", "-id")
        .only("id")
        .first()
    )
    next_run = (
        waiting.filter(created_at__gte=at)
        .filter(Q(created_at__gt=at) | Q(created_at=at, id__gt=run_id))
        .order_by("created_at", "id")
        .only("id")
        .first()
    )
    return prev_run, next_run


def queue_position(
    *, run: Run, workflow_ids: list[int], filters: QueueFilters, cap: int = 1000
) -> tuple[int, int, bool] | None:
    """(place, of, capped): "3 of 12" for a waiting run in the filtered queue, oldest
    first; None when the run is not in it (decided, or outside the filters). Both
    numbers are counted up to `cap`."""
    waiting = waiting_filtered(workflow_ids=workflow_ids, filters=filters)
    if run.status != RunStatus.PENDING_REVIEW or not waiting.filter(pk=run.pk).exists():
        return None
    at, run_id = run.created_at, run.id
    before = (
        waiting.filter(created_at__lte=at)
        .filter(Q(created_at__lt=at) | Q(created_at=at, id__lt=run_id))
        .order_by()[:cap]
        .count()
    )
    total = waiting.order_by()[:cap].count()
    return before + 1, total, total >= cap


def count_waiting(*, workflow_ids: list[int], cap: int = 1000) -> tuple[int, bool]:
    """How many runs wait, counted up to `cap` (a page title needs "1000+", not a full
    scan of a 100,000-run queue on every decision). Returns (count, capped)."""
    # A sliced queryset counts as SELECT COUNT(*) FROM (... LIMIT cap).
    n = (
        Run.objects.filter(status=RunStatus.PENDING_REVIEW, workflow_id__in=workflow_ids)
        .order_by()[:cap]
        .count()
    )
    return n, n >= cap


def next_waiting(
    *, workflow_ids: list[int], exclude=None, filters: QueueFilters | None = None
) -> Run | None:
    runs = waiting_filtered(workflow_ids=workflow_ids, filters=filters or QueueFilters())
    if exclude is not None:
        runs = runs.exclude(pk=exclude)
    return runs.order_by("created_at", "id").only("id").first()


def decided_by(
    *, user: User, after: tuple[datetime, int] | None = None, size: int = PAGE_SIZE
) -> tuple[list, bool]:
    """The reviews the person made, newest first, a page at a time (keyset on
    (created_at, id)), with their runs. For their own memory: nothing here is counted."""
    reviews = Review.objects.filter(reviewer=user)
    if after is not None:
        at, review_id = after
        reviews = reviews.filter(created_at__lte=at).filter(
            Q(created_at__lt=at) | Q(created_at=at, id__lt=review_id)
        )
    rows = list(
        reviews.select_related("run", "run__workflow", "run__action_type").order_by(
            "-created_at", "-id"
        )[: size + 1]
    )
    return rows[:size], len(rows) > size


# -- gates and promotions -------------------------------------------------------------------


def gate_snapshots_latest(*, workflow_ids) -> dict[int, GateSnapshot]:
    """The newest gate snapshot of each workflow, in one query (a correlated subquery on
    gatesnapshot_latest_idx per workflow, not a scan of the whole history)."""
    if not workflow_ids:
        return {}
    newest = GateSnapshot.objects.filter(workflow_id=OuterRef("pk")).order_by("-computed_at", "-id")
    ids = Workflow.objects.filter(pk__in=workflow_ids).values(
        latest=Subquery(newest.values("id")[:1])
    )
    return {s.workflow_id: s for s in GateSnapshot.objects.filter(pk__in=ids)}


def waiting_counts(*, workflow_ids) -> dict[int, int]:
    """Runs waiting for a person, per workflow."""
    if not workflow_ids:
        return {}
    rows = (
        Run.objects.filter(status=RunStatus.PENDING_REVIEW, workflow_id__in=workflow_ids)
        .values_list("workflow_id")
        .annotate(n=Count("id"))
        .order_by()
    )
    return dict(rows)


def promotions_open_by_workflow(*, workflow_ids) -> dict[int, PromotionRequest]:
    if not workflow_ids:
        return {}
    rows = PromotionRequest.objects.filter(
        workflow_id__in=workflow_ids, state=PromotionRequest.State.OPEN
    ).select_related("requested_by")
    return {r.workflow_id: r for r in rows}


def promotions_for(*, workflow_ids, decided: bool, limit: int = 100) -> list[PromotionRequest]:
    """Promotion requests of the given workflows, newest first, with their workflow and
    people in the same query: the open ones, or (`decided`) the decided and withdrawn."""
    rows = PromotionRequest.objects.filter(workflow_id__in=workflow_ids)
    if decided:
        rows = rows.exclude(state=PromotionRequest.State.OPEN)
    else:
        rows = rows.filter(state=PromotionRequest.State.OPEN)
    return list(
        rows.select_related("workflow", "requested_by", "decided_by").order_by(
            "-requested_at", "-id"
        )[:limit]
    )


def promotion_for_person(*, user: User, request_id: int) -> PromotionRequest:
    """A promotion request the person may see (any role on its workflow), else 404."""
    found = (
        PromotionRequest.objects.select_related(
            "workflow", "requested_by", "decided_by", "certificate"
        )
        .filter(pk=request_id, workflow_id__in=visible_workflow_ids(user=user))
        .first()
    )
    if found is None:
        raise NotFound("no such promotion request")
    return found


# -- the replay page -------------------------------------------------------------------------


def people_names(*, user_ids: set[int]) -> dict[int, str]:
    """user id → username, in one query, for the people a replay names."""
    if not user_ids:
        return {}
    return dict(User.objects.filter(pk__in=user_ids).values_list("pk", "username"))


def policy_sentences(
    *, workflow: Workflow, numbers: set[int], actions: dict[str, tuple[str, str]]
) -> dict[int, dict[str, str]]:
    """policy version → rule id → the rule's plain sentence, for the versions a replay
    names. A version that no longer parses against the workflow's action types (they
    changed since) gives no sentences: the page then shows the rule ids and reasons the
    trace recorded. `actions`: action type name → (value param, currency param), what the policy
    parser takes."""
    if not numbers:
        return {}
    versions = PolicyVersion.objects.filter(workflow=workflow, number__in=numbers)
    out: dict[int, dict[str, str]] = {}
    for version in versions.only("number", "document"):
        try:
            policy = parse_policy(version.document, actions=actions)
        except LadderError:
            continue
        out[version.number] = {rule.id: rule_text(rule) for rule in policy.rules}
    return out
