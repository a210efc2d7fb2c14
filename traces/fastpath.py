"""The gateway's hot path in plain SQL, with the rules it needs kept in memory.

POST /runs costs one statement on PostgreSQL: the run, its first trace events and the
check that the token and the workflow rules it was judged by are still current, in one
INSERT. An ORM query costs several times its raw SQL in Python CPU here (bench/README.md),
and the gateway sits in front of every agent action, so these few are written by hand;
tests/traces/test_fastpath.py pins their columns to the models' so the two cannot drift.

Memory, not trust: token scopes and workflow rules are memoised per process, and every
insert re-checks them (token not revoked and still scoped to the workflow; workflow still
at the `rules_version` it was read at, a number database triggers bump on any change).
When the check fails nothing is stored, the memo entries are dropped and the caller
starts again from the database. So a revocation, a narrowed scope, a promotion or a
demotion applies to the very next run, in every process, with no invalidation messages.
"""

import dataclasses
import json
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from enum import Enum

import orjson
import psycopg
from django.db import DEFAULT_DB_ALIAS, IntegrityError, connections, transaction

from ladder.decide import ActionRules, WorkflowRules
from ladder.errors import Unprocessable
from ladder.models import linkage_domain
from ladder.policy import compile_policy, parse_policy
from ladder.rungs import Executor
from traces.auth import AgentAuth
from traces.models import Run, TraceEvent


class Memo:
    """A bounded per-process memo of hints. Plain dict operations, atomic under the GIL;
    when full it starts over rather than tracking recency (entries are cheap to re-read)."""

    def __init__(self, size: int):
        self._size = size
        self._data: dict = {}

    def get(self, key):
        return self._data.get(key)

    def put(self, key, value) -> None:
        if len(self._data) >= self._size:
            self._data.clear()
        self._data[key] = value

    def drop(self, key) -> None:
        self._data.pop(key, None)

    def clear(self) -> None:
        self._data.clear()


TOKENS = Memo(4096)  # token sha256 -> AgentAuth (from_memo=True)
WORKFLOWS = Memo(4096)  # slug -> WorkflowRow
# (workflow id, policy version, the action types it was checked against) -> (compiled
# policy or None, the problem). Versions never change (append-only), so this is safe to
# keep whatever rules_version says, also where the workflow memo is off (SQLite).
POLICIES = Memo(1024)


def _db():
    # The connection wrapper itself: `django.db.connection` is a proxy that looks the
    # thread's connection up on every attribute access, which the hot path pays per use.
    return connections[DEFAULT_DB_ALIAS]


def _on_postgresql() -> bool:
    return _db().vendor == "postgresql"


def memo_enabled() -> bool:
    # Only PostgreSQL gets the re-checking INSERT; elsewhere every run reads afresh.
    return _on_postgresql()


def remember_token(auth: AgentAuth) -> None:
    if memo_enabled():
        TOKENS.put(auth.token_hash, dataclasses.replace(auth, from_memo=True))


@contextmanager
def prepared_cursor():
    """A cursor that binds on the server and reuses prepared statements.

    Django's own cursors interpolate parameters on the client, so PostgreSQL parses and
    plans their statements anew every time; these are prepared once per connection (kept
    by CONN_MAX_AGE; settings set psycopg's prepare_threshold, which Django leaves off,
    and tests/traces/test_fastpath.py checks they really are). Elsewhere (SQLite) it is
    Django's cursor.
    """
    db = _db()
    if db.vendor != "postgresql":
        with db.cursor() as cur:
            yield _PortableCursor(cur)
        return
    db.ensure_connection()
    # One psycopg cursor per connection, kept on Django's wrapper (which is per thread):
    # building a cursor copies the connection's type adapters, a cost worth paying once.
    cur = getattr(db, "_ladder_fast_cursor", None)
    if cur is None or cur.closed or cur.connection is not db.connection:
        cur = db._ladder_fast_cursor = psycopg.Cursor(db.connection)
    with db.wrap_database_errors:
        yield cur


class _PortableCursor:
    def __init__(self, cursor):
        self._cursor = cursor

    def execute(self, sql, params, prepare=None):
        self._cursor.execute(sql, params)

    def __getattr__(self, name):
        return getattr(self._cursor, name)


def token_rows(token_hash: str) -> list[tuple[int, str, int]]:
    """(token id, prefix, workflow id) for a live token: one row per scoped workflow."""
    with prepared_cursor() as cur:
        cur.execute(
            "SELECT t.id, t.prefix, tw.workflow_id FROM traces_agenttoken t "
            "JOIN traces_agenttoken_workflows tw ON tw.agenttoken_id = t.id "
            "WHERE t.token_hash = %s AND t.revoked_at IS NULL",
            [token_hash],
            prepare=True,
        )
        return cur.fetchall()


@dataclass(frozen=True)
class WorkflowRow:
    id: int
    slug: str
    rung: int
    rules_version: int
    personal_fields: tuple[str, ...]
    linkage: str  # the pseudonym linkage domain (ladder.models.linkage_domain)
    rules: WorkflowRules
    action_ids: dict[str, int]
    # Actions a worker carries out (Executor.SERVER): a run the policy allows is queued
    # for it at once; the rest wait for their agent's claim.
    server_actions: frozenset[str] = frozenset()
    review_deadline_seconds: int = 72 * 3600
    deadline_action: str = "deny"
    # The stop button: when the workflow was stopped (None while it runs); the reason
    # is rules.stopped. The agent is told both in the answer to POST /runs.
    stopped_at: datetime | None = None


def _json(value):
    return json.loads(value) if isinstance(value, (str, bytes)) else value


def _aware(value) -> datetime | None:
    """A timestamp read by raw SQL: PostgreSQL gives an aware datetime, SQLite the text
    Django stored (naive UTC)."""
    if value is None or isinstance(value, datetime):
        return value
    return datetime.fromisoformat(value).replace(tzinfo=UTC)


def workflow_row(slug: str, *, memo: bool = False) -> WorkflowRow | None:
    """The workflow and its action types in one round trip; `memo=True` may answer from
    memory (insert_run re-checks `rules_version`, so a stale answer is never acted on)."""
    if memo and (known := WORKFLOWS.get(slug)) is not None:
        return known
    with prepared_cursor() as cur:
        cur.execute(
            "SELECT w.id, w.rung, w.personal_fields, w.rules_version, w.linkage_group, "
            "w.review_deadline_seconds, w.deadline_action, p.number, p.document, "
            # The latest expiry of a certificate for the workflow's rung or above: each
            # run compares it with its own time (ladder.decide.rules_at).
            "(SELECT max(c.valid_until) FROM ladder_certificate c "
            "WHERE c.workflow_id = w.id AND c.rung >= w.rung), "
            "w.stopped_at, w.stop_reason, "
            "a.id, a.name, a.param_schema, "
            "a.value_param, a.currency_param, a.executor FROM ladder_workflow w "
            # The newest policy version (portable SQL: SQLite has no LATERAL).
            "LEFT JOIN ladder_policyversion p ON p.workflow_id = w.id AND p.number = "
            "(SELECT max(pv.number) FROM ladder_policyversion pv WHERE pv.workflow_id = w.id) "
            "LEFT JOIN ladder_actiontype a ON a.workflow_id = w.id WHERE w.slug = %s",
            [slug],
            prepare=True,
        )
        rows = cur.fetchall()
    if not rows:
        WORKFLOWS.drop(slug)
        return None
    wf_id, rung, personal, version, group, deadline, deadline_action, number, document = rows[0][:9]
    certified_until = _aware(rows[0][9])
    stopped_at, stop_reason = _aware(rows[0][10]), rows[0][11]
    personal = _json(personal) or []
    actions, ids, server = {}, {}, set()
    for *_, action_id, name, schema, value_param, currency_param, executor in rows:
        if action_id is None:
            continue
        if executor == Executor.SERVER:
            server.add(name)
        actions[name] = ActionRules(
            name=name,
            param_schema=_json(schema) or {},
            value_param=value_param,
            currency_param=currency_param,
        )
        ids[name] = action_id
    compiled, problem = (None, "")
    if number is not None:
        compiled, problem = _compiled_policy(wf_id, number, document, actions)
    row = WorkflowRow(
        id=wf_id,
        slug=slug,
        rung=rung,
        rules_version=version,
        personal_fields=tuple(sorted(personal)),
        linkage=linkage_domain(workflow_id=wf_id, group=group),
        rules=WorkflowRules(
            slug=slug,
            rung=rung,
            actions=actions,
            policy=compiled,
            policy_version=number if compiled is not None else None,
            policy_problem=problem,
            certified_until=certified_until,
            # A stop is recorded with its reason; one without (set by hand) still stops.
            stopped=(stop_reason or "stopped") if stopped_at is not None else "",
        ),
        action_ids=ids,
        server_actions=frozenset(server),
        review_deadline_seconds=deadline,
        deadline_action=deadline_action,
        stopped_at=stopped_at,
    )
    if memo_enabled():
        WORKFLOWS.put(slug, row)
    return row


def _compiled_policy(wf_id: int, number: int, document, actions: dict[str, ActionRules]):
    """(the compiled policy version, "") or (None, why it cannot decide)."""
    value_params = {name: (a.value_param, a.currency_param) for name, a in actions.items()}
    key = (wf_id, number, tuple(sorted(value_params.items())))
    known = POLICIES.get(key)
    if known is not None:
        return known
    try:
        policy = parse_policy(_json(document), actions=value_params)
        found = (compile_policy(policy, actions=value_params), "")
    except Unprocessable:
        # Saved valid, but the workflow's action types changed under it since.
        found = (None, f"policy version {number} no longer fits this workflow's action types")
    POLICIES.put(key, found)
    return found


# The columns POST /runs writes, in order; tests/traces/test_fastpath.py checks they are
# exactly the models' columns, so a new field cannot be forgotten here.
RUN_COLUMNS = (
    "id",
    "workflow_id",
    "idempotency_key",
    "request_hash",
    "rung",
    "status",
    "queue",
    "action_type_id",
    "proposal",
    "summary",
    "value",
    "currency",
    "flags",
    "escalation_reason",
    "decision",
    "decided_by_id",
    "decided_at",
    "result",
    "execution_attempts",
    "executed_at",
    "outcome",
    "policy",
    "shadow",
    "audit",
    "deadline_at",
    "execution_claimed_at",
    "decider",
    "light_edit",
    "matched",
    "shadow_outcome",
    "shadow_version",
    "probe",
    "held",
    "replay_ok",
    "version",
    "trace_head",
    "trace_length",
    "created_at",
    "updated_at",
)
EVENT_COLUMNS = ("run_id", "seq", "type", "actor", "at", "document", "prev_hash", "hash")


# Built once: json.dumps() with options builds a new encoder per call.
_ENCODE = json.JSONEncoder(ensure_ascii=False, allow_nan=False).encode

# The model's fields in RUN_COLUMNS order (tests/traces/test_fastpath.py checks the two
# agree), for building a Run positionally: Django's keyword path looks every field up by
# name and costs several times as much.
_FIELDS = tuple(Run._meta.concrete_fields)


def new_run(values: dict) -> Run:
    """An unsaved Run from column values; the columns not given take the model's
    defaults, as `Run(**values)` would give them."""
    return Run(*[values[f.attname] if f.attname in values else f.get_default() for f in _FIELDS])


def _run_document(run: Run, proposal_json: str | None = None) -> str:
    """The new run row as one JSON object, column name → value, for
    json_populate_record: one C-encoded parameter instead of 26 adapted one by one.

    `proposal_json`, when given, is the proposal already serialised (the gateway has it
    in canonical JSON for the request hash); it is spliced in rather than encoded again.
    """
    row = {}
    values = run.__dict__
    for column in RUN_COLUMNS:
        value = values[column]
        if isinstance(value, (uuid.UUID, Decimal)):
            value = str(value)
        elif isinstance(value, datetime):
            value = value.isoformat()
        row[column] = value
    if proposal_json is None:
        return _ENCODE(row)
    del row["proposal"]
    # What is left is strings, integers, None and a list of strings: orjson writes them
    # as the standard encoder does (and anything it refuses goes the standard way).
    try:
        text = orjson.dumps(row).decode()
    except orjson.JSONEncodeError:
        text = _ENCODE(row)
    return f'{text[:-1]},"proposal":{proposal_json}}}'


# The events' text columns travel as five strings, each joined by the ASCII record
# separator, and PostgreSQL splits them: nothing to escape on either side. The separator
# cannot occur in them: documents are JSON (control characters are always escaped inside
# JSON strings and never stand outside them), types and actors are our own names, and
# hashes are hex.
_SEP = "\x1e"
_SEP_SQL = "E'\\x1e'"


# run_id, seq and at take one value per statement (seq: the first one, plus the
# position); every other event column travels joined.
_EVENT_VALUES = {
    "run_id": "new_run.id",
    "seq": "%s::integer + e.n - 1",
    "at": "%s::timestamptz",
}
_JOINED_EVENT_COLUMNS = tuple(c for c in EVENT_COLUMNS if c not in _EVENT_VALUES)


def _joined_columns(links: list) -> list[str]:
    joined = []
    for column in _JOINED_EVENT_COLUMNS:
        values = [getattr(link, column) for link in links]
        text = _SEP.join(values)
        if text.count(_SEP) != len(values) - 1:
            raise ValueError(f"an event's {column} holds the separator")
        joined.append(text)
    return joined


class Stored(Enum):
    NEW = "new"  # the run and its events are stored
    DUPLICATE = "duplicate"  # the idempotency key is taken on this workflow: nothing stored
    STALE = "stale"  # the token or the workflow rules changed: nothing stored, re-read
    FULL = "full"  # an allowed action no longer fits a rate limit: nothing stored, decide again


@dataclass(frozen=True)
class PolicyWrite:
    """What a policy's counters add to a run's INSERT (traces/services/policy.py builds it).

    `room_*`: for an allowed action under rate limits, the limits to re-check under the
    advisory `locks` (traces_policy_room, migration 0010), one entry per limit; empty
    otherwise. `counted`: (action, subject digest) the allowance is counted under.
    `marks`: first-seen subject digests this run marks as seen.
    """

    locks: list[int]
    room_actions: list[str]
    room_subjects: list[str]
    room_since: list[datetime]
    room_currencies: list[str]
    room_max_counts: list[int | None]
    room_max_values: list[Decimal | None]
    value: Decimal | None
    currency: str
    shadow: bool
    counted: list[tuple[str, str]]
    marks: list[str]

    def params(self, workflow_id: int, at: datetime) -> tuple[list, list]:
        """(the room check's parameters, the writes' parameters) in SQL text order."""
        room = [
            workflow_id,
            self.locks,
            self.room_actions,
            self.room_subjects,
            self.room_since,
            self.room_currencies,
            self.room_max_counts,
            self.room_max_values,
            self.value,
        ]
        writes = [
            workflow_id,
            self.shadow,
            at,
            self.value,
            self.currency,
            [a for a, _ in self.counted],
            [d for _, d in self.counted],
            workflow_id,
            self.marks,
        ]
        return room, writes


def _insert_sql(*, policy: bool = False) -> str:
    columns = ", ".join(RUN_COLUMNS)
    # With a policy's counters: the room re-check under the counters' locks before the
    # run goes in, and the allowance and first-seen rows after it, in the same statement.
    room = (
        "room AS (SELECT traces_policy_room(%s, %s::bigint[], %s::text[], %s::text[], "
        "%s::timestamptz[], %s::text[], %s::bigint[], %s::numeric[], %s::numeric) AS ok), "
        if policy
        else "room AS (SELECT true AS ok), "
    )
    writes = (
        ", counted AS (INSERT INTO traces_policyallowance "
        "(run_id, workflow_id, shadow, action, subject, at, value, currency) "
        "SELECT new_run.id, %s, %s, x.action, x.subject, %s::timestamptz, %s::numeric, %s "
        "FROM new_run, unnest(%s::text[], %s::text[]) AS x(action, subject) RETURNING 1), "
        "marked AS (INSERT INTO traces_subjectseen (workflow_id, subject, first_run) "
        "SELECT %s, m, new_run.id FROM new_run, unnest(%s::text[]) AS m "
        "ON CONFLICT DO NOTHING RETURNING 1) "
        if policy
        else ""
    )
    # Only constant column names are interpolated.
    return (
        "WITH guard AS (SELECT EXISTS (SELECT 1 FROM ladder_workflow w "  # noqa: S608
        "WHERE w.id = %s AND w.slug = %s AND w.rules_version = %s) "
        "AND (NOT %s OR EXISTS (SELECT 1 FROM traces_agenttoken t "
        "JOIN traces_agenttoken_workflows tw "
        "ON tw.agenttoken_id = t.id WHERE t.id = %s AND t.token_hash = %s "
        "AND t.revoked_at IS NULL AND tw.workflow_id = %s)) AS ok), "
        f"{room}"
        f"new_run AS (INSERT INTO traces_run ({columns}) "
        f"SELECT {columns} FROM json_populate_record(NULL::traces_run, %s::json), guard, room "
        "WHERE guard.ok AND room.ok "
        "ON CONFLICT (workflow_id, idempotency_key) DO NOTHING RETURNING id), "
        f"new_events AS (INSERT INTO traces_traceevent ({', '.join(EVENT_COLUMNS)}) "
        f"SELECT {', '.join(_EVENT_VALUES.get(c, f'e.{c}') for c in EVENT_COLUMNS)} "
        "FROM new_run, unnest("
        f"{', '.join([f'string_to_array(%s, {_SEP_SQL})'] * len(_JOINED_EVENT_COLUMNS))}) "
        f"WITH ORDINALITY AS e({', '.join(_JOINED_EVENT_COLUMNS)}, n) "
        "RETURNING 1) "
        f"{writes}"
        "SELECT guard.ok, room.ok, (SELECT count(*) FROM new_events) FROM guard, room"
    )


_INSERT_SQL = _insert_sql()
_INSERT_POLICY_SQL = _insert_sql(policy=True)


def insert_run(
    run: Run,
    links: list,
    *,
    at,
    auth: AgentAuth,
    workflow: WorkflowRow,
    proposal_json: str | None = None,
    policy: PolicyWrite | None = None,
) -> Stored:
    """Store a new run and its first trace events, if the token and the workflow rules
    they were decided under are still current.

    On PostgreSQL this is one statement: the guard re-checks `rules_version` and, when the
    token came from the memo, that it is still live and scoped to the workflow; the run
    row is inserted only if that holds (and ON CONFLICT DO NOTHING on the idempotency
    key), and the events only if the run row was, so a concurrent duplicate can never
    leave orphans. Elsewhere the caller has just read both afresh.

    `proposal_json`, when given, is `run.proposal` as JSON (see _run_document).
    `policy`, when given, adds the policy's counters (PolicyWrite): on PostgreSQL in this
    same statement; elsewhere the caller writes them in its transaction.
    """
    if not _on_postgresql():
        events = [TraceEvent(run_id=run.id, at=at, **link._asdict()) for link in links]
        try:
            with transaction.atomic():
                run.save(force_insert=True)
                TraceEvent.objects.bulk_create(events)
        except IntegrityError:
            return Stored.DUPLICATE
        return Stored.NEW
    room, writes = policy.params(workflow.id, at) if policy is not None else ([], [])
    params = [
        workflow.id,
        workflow.slug,
        workflow.rules_version,
        auth.from_memo,  # a token just read from the database needs no second look
        auth.token_id,
        auth.token_hash,
        workflow.id,
        *room,
        _run_document(run, proposal_json),
        links[0].seq,
        at,
        *_joined_columns(links),
        *writes,
    ]
    sql = _INSERT_SQL if policy is None else _INSERT_POLICY_SQL
    with prepared_cursor() as cur:
        cur.execute(sql, params, prepare=True)
        ok, room_ok, stored = cur.fetchone()
    if not ok:
        TOKENS.drop(auth.token_hash)
        WORKFLOWS.drop(workflow.slug)
        return Stored.STALE
    if not room_ok:
        return Stored.FULL
    return Stored.NEW if stored == len(links) else Stored.DUPLICATE
