"""The compliance history (/history/) and its exports: which runs a person may read back,
filtered, newest first, a keyset page at a time (docs/history.md).

Who sees what: compliance (and admins) every run of the workflows they hold the role on,
owners their workflows' runs, reviewers only the runs they decided themselves, for their
own memory. Nothing here counts, ranks or times people.
"""

import json
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, date, datetime, time, timedelta

from django.contrib.auth.models import User
from django.db import connection
from django.db.models import BooleanField, Exists, OuterRef, Q, QuerySet
from django.db.models.expressions import RawSQL

from approvals.roles import access_for
from approvals.selectors import parse_after
from ladder.models import ActionType, Workflow
from ladder.rungs import Rung
from traces.models import Decider, Run, RunStatus, TraceEvent

PAGE_SIZE = 50
# The events whose payload the search reads, in the order of the index's predicate
# (traces migration 0016): the planner proves the partial index usable by comparing them.
SEARCHED_EVENTS = ("input", "output", "proposal")
DECIDERS = {
    "person": Decider.PERSON,
    "policy": Decider.POLICY,
    "deadline": Decider.DEADLINE,
    "nobody": Decider.NONE,
}
OUTCOMES = ("correct", "wrong", "none")
MAX_SEARCH = 200


@dataclass(frozen=True)
class HistoryFilters:
    """The filters as the person typed them (kept in the form), all strings."""

    workflow: str = ""
    rung: str = ""
    status: str = ""
    action: str = ""
    decider: str = ""
    since: str = ""
    until: str = ""
    failure: str = ""
    outcome: str = ""
    q: str = ""

    def query(self) -> dict[str, str]:
        """The non-empty filters, for links that keep them."""
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name)}


@dataclass
class Parsed:
    """The filters checked: typed values, and a message per filter that made no sense."""

    filters: HistoryFilters
    rung: int | None = None
    since: datetime | None = None
    until: datetime | None = None
    errors: dict[str, str] = field(default_factory=dict)


def _moment(raw: str, *, end: bool) -> datetime:
    """A date (YYYY-MM-DD: its whole day in UTC) or an ISO datetime (exact). `end`: the
    first instant after the bound (an `until` date includes its whole day)."""
    raw = raw.strip()
    if len(raw) == 10:
        day = date.fromisoformat(raw)
        start = datetime.combine(day, time.min, tzinfo=UTC)
        return start + timedelta(days=1) if end else start
    when = datetime.fromisoformat(raw)
    return when.astimezone(UTC) if when.tzinfo else when.replace(tzinfo=UTC)


def parse_moment(raw: str, *, end: bool) -> datetime:
    """`_moment` with one error type, for the command line; ValueError when unreadable."""
    try:
        return _moment(raw, end=end)
    except (ValueError, OverflowError) as exc:
        raise ValueError(f"{raw!r} is not a date (YYYY-MM-DD) or an ISO date and time") from exc


def parse_filters(params) -> Parsed:
    """Read the filters from a query dict. Bad values are reported, never raised: the page
    shows a message beside the filter and ignores it."""
    raw = HistoryFilters(
        **{
            f.name: (params.get(f.name) or "").strip()[: MAX_SEARCH if f.name == "q" else 100]
            for f in fields(HistoryFilters)
        }
    )
    out = Parsed(filters=raw)
    if raw.rung:
        if raw.rung.isdigit() and int(raw.rung) in Rung.values:
            out.rung = int(raw.rung)
        else:
            out.errors["rung"] = "Rung must be one of L0 to L5 (a number 0-5)."
    if raw.status and raw.status not in RunStatus.values:
        out.errors["status"] = f"{raw.status!r} is not a run status."
    if raw.decider and raw.decider not in DECIDERS:
        out.errors["decider"] = "Decided by must be a person, the policy, the deadline or nobody."
    if raw.outcome and raw.outcome not in OUTCOMES:
        out.errors["outcome"] = "Outcome must be correct, wrong or none."
    if raw.failure and raw.failure != "1":
        out.errors["failure"] = "Has failure is a checkbox (1 or absent)."
    for name, end in (("since", False), ("until", True)):
        value = getattr(raw, name)
        if value:
            try:
                setattr(out, name, _moment(value, end=end))
            except (ValueError, OverflowError):
                out.errors[name] = f"{value!r} is not a date (YYYY-MM-DD)."
    if out.since and out.until and out.since >= out.until:
        out.errors["until"] = "Until must not be before since."
    if "\x00" in raw.q:
        out.errors["q"] = "The search cannot contain a NUL character."
    return out


def without_errors(parsed: Parsed) -> Parsed:
    """The same filters with the unreadable ones dropped (their messages kept)."""
    if not parsed.errors:
        return parsed
    cleared = replace(parsed.filters, **dict.fromkeys(parsed.errors, ""))
    if "until" in parsed.errors:
        parsed.until = None
    if "since" in parsed.errors:
        parsed.since = None
    parsed.filters = cleared
    return parsed


@dataclass(frozen=True)
class Scope:
    """Which runs a person may read back: whole workflows, plus their own decisions."""

    workflow_ids: frozenset[int]
    decided_in: frozenset[int]
    person_id: int | None

    @property
    def empty(self) -> bool:
        return not self.workflow_ids and not self.decided_in

    @property
    def readable_workflow_ids(self) -> frozenset[int]:
        return self.workflow_ids | self.decided_in


def scope_for(user: User) -> Scope:
    access = access_for(user)
    whole = access.comply | access.own
    # A reviewer's own decisions, in the workflows they still review (a run of a workflow
    # they no longer hold a role on is a 404 on its own page too).
    own_decisions = access.review - whole
    return Scope(
        workflow_ids=frozenset(whole),
        decided_in=frozenset(own_decisions),
        person_id=user.pk if own_decisions else None,
    )


def _scope_q(scope: Scope, workflow_ids: set[int] | None = None) -> Q | None:
    whole = set(scope.workflow_ids)
    mine = set(scope.decided_in)
    if workflow_ids is not None:
        whole &= workflow_ids
        mine &= workflow_ids
    parts = []
    if whole:
        parts.append(Q(workflow_id__in=sorted(whole)))
    if mine:
        parts.append(Q(workflow_id__in=sorted(mine), decided_by_id=scope.person_id))
    if not parts:
        return None
    q = parts[0]
    for part in parts[1:]:
        q |= part
    return q


# Search routing (PostgreSQL). A word in fewer events than this is read from the GIN
# index, its runs listed by id; a commoner word is checked run by run, newest first,
# which finds a page of matches within a few hundred runs. Measured in bench/history.py:
# walking costs ~30 µs per run checked, listing ~10 µs per matching event.
RARE_EVENTS = 10_000
# The most run ids ever listed: past it the estimate was wrong and the walk is used.
MAX_LISTED = 20_000
_TSVECTOR = "to_tsvector('simple'::regconfig, translate(document, '<>', '  ')::jsonb -> 'payload')"
_TSQUERY = "websearch_to_tsquery('simple'::regconfig, translate(%s, '<>', '  '))"


def _matching_events(text: str) -> QuerySet[TraceEvent]:
    # Fixed SQL; the words are a parameter.
    matches = RawSQL(f"{_TSVECTOR} @@ {_TSQUERY}", [text], output_field=BooleanField())  # noqa: S611
    return TraceEvent.objects.filter(type__in=SEARCHED_EVENTS).filter(matches)


def _estimated_rows(queryset: QuerySet) -> float:
    sql, params = queryset.query.sql_with_params()
    with connection.cursor() as cur:
        cur.execute("EXPLAIN (FORMAT JSON) " + sql, params)
        plan = cur.fetchone()[0]
    if isinstance(plan, str):
        plan = json.loads(plan)
    return float(plan[0]["Plan"]["Plan Rows"])


def search_condition(text: str) -> Q | Exists:
    """Runs whose input, output or proposal (summary included) match the words.

    PostgreSQL: web-search syntax ("quoted phrase", -excluded, or) over the GIN index of
    traces migration 0016, same expression. The words must all be in one event: each
    event is indexed on its own, and a run holds a handful. SQLite (`make run`): the
    summary contains the text, case-insensitive."""
    if connection.vendor != "postgresql":
        return Q(summary__icontains=text)
    events = _matching_events(text)
    # The planner prices the run-by-run check far too low (each one parses a document),
    # so the choice is made here, from its estimate of the word's events (traces
    # migration 0016 gives it statistics on the expression).
    if _estimated_rows(events) <= RARE_EVENTS:
        run_ids = list(
            events.order_by().values_list("run_id", flat=True).distinct()[: MAX_LISTED + 1]
        )
        if len(run_ids) <= MAX_LISTED:
            return Q(pk__in=run_ids)
    return Exists(events.filter(run_id=OuterRef("pk")))


def history_runs(*, scope: Scope, parsed: Parsed) -> QuerySet[Run]:
    """The runs the person may read back that pass the filters (unordered)."""
    f = parsed.filters
    ids = None
    if f.workflow:
        ids = set(
            Workflow.objects.filter(
                pk__in=sorted(scope.readable_workflow_ids), slug=f.workflow
            ).values_list("id", flat=True)
        )
    scope_q = _scope_q(scope, ids)
    if scope_q is None:
        return Run.objects.none()
    runs = Run.objects.filter(scope_q)
    if parsed.rung is not None:
        runs = runs.filter(rung=parsed.rung)
    if f.status:
        runs = runs.filter(status=f.status)
    if f.action:
        action_ids = list(
            ActionType.objects.filter(
                workflow_id__in=sorted(ids if ids is not None else scope.readable_workflow_ids),
                name=f.action,
            ).values_list("id", flat=True)
        )
        runs = runs.filter(action_type_id__in=action_ids)
    if f.decider:
        runs = runs.filter(decider=DECIDERS[f.decider])
    if parsed.since:
        runs = runs.filter(created_at__gte=parsed.since)
    if parsed.until:
        runs = runs.filter(created_at__lt=parsed.until)
    if f.failure:
        # The same disjunction as run_history_failure_idx's predicate, so it is used.
        runs = runs.filter(Q(status=RunStatus.FAILED) | Q(outcome="wrong") | Q(audit="wrong"))
    if f.outcome:
        runs = runs.filter(outcome="" if f.outcome == "none" else f.outcome)
    if f.q:
        runs = runs.filter(search_condition(f.q))
    return runs


@dataclass(frozen=True)
class Page:
    runs: list[Run]
    older: str | None  # cursor for the next older page
    newer: str | None  # cursor for the next newer page


def cursor_of(run: Run) -> str:
    return f"{run.created_at.isoformat()}_{run.id}"


def history_page(
    runs: QuerySet[Run], *, before: str = "", after: str = "", size: int = PAGE_SIZE
) -> Page:
    """Newest first, keyset on (created_at, id): `before` a cursor gives the next older
    page, `after` one the next newer page; constant cost however deep (no OFFSET)."""
    runs = runs.select_related("workflow", "action_type", "decided_by")
    older_than = parse_after(before)
    newer_than = parse_after(after) if older_than is None else None
    if newer_than is not None:
        at, run_id = newer_than
        # The plain `>= at` gives the index scan its start key; the OR alone does not.
        rows = list(
            runs.filter(created_at__gte=at)
            .filter(Q(created_at__gt=at) | Q(created_at=at, id__gt=run_id))
            .order_by("created_at", "id")[: size + 1]
        )
        more_newer = len(rows) > size
        rows = rows[:size][::-1]
        return Page(
            runs=rows,
            older=cursor_of(rows[-1]) if rows else None,
            newer=cursor_of(rows[0]) if rows and more_newer else None,
        )
    if older_than is not None:
        at, run_id = older_than
        runs = runs.filter(created_at__lte=at).filter(
            Q(created_at__lt=at) | Q(created_at=at, id__lt=run_id)
        )
    rows = list(runs.order_by("-created_at", "-id")[: size + 1])
    more_older = len(rows) > size
    rows = rows[:size]
    return Page(
        runs=rows,
        older=cursor_of(rows[-1]) if rows and more_older else None,
        # Coming from a newer page, there is one to go back to.
        newer=cursor_of(rows[0]) if rows and older_than is not None else None,
    )
