"""The gateway's hot path in plain SQL.

POST /runs runs these three statements and nothing else: who is this token, what are the
workflow's rules, store the run with its trace. An ORM query costs several times its raw
SQL in Python CPU here (bench/README.md), and the gateway sits in front of every agent
action, so these few are written by hand; tests/traces/test_fastpath.py pins their
columns to the models' so the two cannot drift apart.
"""

import json
from contextlib import contextmanager
from dataclasses import dataclass

import psycopg
from django.db import IntegrityError, connection, transaction
from psycopg.types.json import Jsonb

from ladder.decide import ActionRules, WorkflowRules
from traces.models import Run, TraceEvent


@contextmanager
def _prepared_cursor():
    """A cursor that binds on the server and reuses prepared statements.

    Django's own cursors interpolate parameters on the client, so PostgreSQL parses and
    plans these statements anew on every request; prepared once per connection (kept by
    CONN_MAX_AGE), the hot path skips that. Elsewhere (SQLite) it is Django's cursor.
    """
    if connection.vendor != "postgresql":
        with connection.cursor() as cur:
            yield _PortableCursor(cur)
        return
    connection.ensure_connection()
    with connection.wrap_database_errors, psycopg.Cursor(connection.connection) as cur:
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
    with _prepared_cursor() as cur:
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
    personal_fields: tuple[str, ...]
    rules: WorkflowRules
    action_ids: dict[str, int]


def _json(value):
    return json.loads(value) if isinstance(value, (str, bytes)) else value


def workflow_row(slug: str) -> WorkflowRow | None:
    """The workflow and its action types in one round trip. Read fresh on every run, so
    a promotion or a demotion applies to the very next request."""
    with _prepared_cursor() as cur:
        cur.execute(
            "SELECT w.id, w.rung, w.personal_fields, a.id, a.name, a.param_schema, "
            "a.value_param, a.currency_param FROM ladder_workflow w "
            "LEFT JOIN ladder_actiontype a ON a.workflow_id = w.id WHERE w.slug = %s",
            [slug],
            prepare=True,
        )
        rows = cur.fetchall()
    if not rows:
        return None
    wf_id, rung, personal = rows[0][0], rows[0][1], _json(rows[0][2]) or []
    actions, ids = {}, {}
    for *_, action_id, name, schema, value_param, currency_param in rows:
        if action_id is None:
            continue
        actions[name] = ActionRules(
            name=name,
            param_schema=_json(schema) or {},
            value_param=value_param,
            currency_param=currency_param,
        )
        ids[name] = action_id
    return WorkflowRow(
        id=wf_id,
        slug=slug,
        rung=rung,
        personal_fields=tuple(sorted(personal)),
        rules=WorkflowRules(slug=slug, rung=rung, actions=actions),
        action_ids=ids,
    )


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
    "version",
    "trace_head",
    "trace_length",
    "created_at",
    "updated_at",
)
EVENT_COLUMNS = ("run_id", "seq", "type", "actor", "at", "document", "prev_hash", "hash")
_JSON_COLUMNS = {"proposal", "flags", "decision", "result"}


def _run_values(run: Run) -> list:
    values = []
    for column in RUN_COLUMNS:
        value = getattr(run, column)
        if column in _JSON_COLUMNS:
            value = None if value is None else Jsonb(value)
        values.append(value)
    return values


def _insert_sql() -> str:
    run_cols = ", ".join(RUN_COLUMNS)
    marks = ", ".join(["%s"] * len(RUN_COLUMNS))
    # Only constant column names and placeholders are interpolated.
    return (
        f"WITH new_run AS (INSERT INTO traces_run ({run_cols}) VALUES ({marks}) "  # noqa: S608
        "ON CONFLICT (workflow_id, idempotency_key) DO NOTHING RETURNING id) "
        f"INSERT INTO traces_traceevent ({', '.join(EVENT_COLUMNS)}) "
        "SELECT new_run.id, e.seq, e.type, e.actor, %s::timestamptz, e.document, "
        "e.prev_hash, e.hash FROM new_run, unnest(%s::integer[], %s::text[], %s::text[], "
        "%s::text[], %s::text[], %s::text[]) AS e(seq, type, actor, document, prev_hash, hash)"
    )


_INSERT_SQL = _insert_sql()


def insert_run(run: Run, links: list, *, at) -> bool:
    """Store a new run and its first trace events; False when its idempotency key is
    already taken on this workflow (nothing is stored then).

    On PostgreSQL this is one statement: the events are inserted only if the run row
    was (ON CONFLICT DO NOTHING), so a concurrent duplicate can never leave orphans.
    """
    if connection.vendor != "postgresql":
        events = [TraceEvent(run_id=run.id, at=at, **link._asdict()) for link in links]
        try:
            with transaction.atomic():
                run.save(force_insert=True)
                TraceEvent.objects.bulk_create(events)
        except IntegrityError:
            return False
        return True
    columns = list(zip(*links, strict=True))  # seq, type, actor, document, prev_hash, hash
    params = [*_run_values(run), at, *(list(c) for c in columns)]
    with _prepared_cursor() as cur:
        cur.execute(_INSERT_SQL, params, prepare=True)
        return cur.rowcount == len(links)
