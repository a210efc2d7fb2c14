"""Every table the gateway decides by bumps `rules_version` (ladder/rules.py).

The gateway's memo of a workflow's rules is trusted only while rules_version is unchanged,
so a table it reads whose changes do not bump the number would leave every process
deciding by stale rules. These tests derive the tables from the gateway's read itself and
look for the triggers in the database (SQLite: tests/ladder/test_sqlite_default.py; what
the triggers do: tests/traces/test_gateway_memo.py).
"""

import re
from contextlib import contextmanager

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from ladder.models import Workflow
from ladder.rules import RULE_TABLES
from tests.factories import ActionTypeFactory, WorkflowFactory
from traces import fastpath

pytestmark = pytest.mark.django_db

_TABLE = re.compile(r'\b(?:FROM|JOIN)\s+"?([A-Za-z_][A-Za-z0-9_]*)"?', re.IGNORECASE)

# pg_trigger.tgtype bits (PostgreSQL's include/catalog/pg_trigger.h).
_INSERT, _DELETE, _UPDATE = 1 << 2, 1 << 3, 1 << 4


def tables_read_by_the_gateway_memo(monkeypatch, slug: str) -> set[str]:
    """The tables named by every statement the workflow-rules loader runs, through the
    hot path's own cursor or through Django's."""
    statements: list[str] = []
    real = fastpath.prepared_cursor

    class Recording:
        def __init__(self, cur):
            self._cur = cur

        def execute(self, sql, params=None, **kwargs):
            statements.append(sql)
            return self._cur.execute(sql, params, **kwargs)

        def __getattr__(self, name):
            return getattr(self._cur, name)

    @contextmanager
    def recording():
        with real() as cur:
            yield Recording(cur)

    monkeypatch.setattr(fastpath, "prepared_cursor", recording)
    with CaptureQueriesContext(connection) as django_queries:
        row = fastpath.workflow_row(slug, memo=False)
    assert row is not None and row.rules.actions
    statements += [q["sql"] for q in django_queries.captured_queries]
    return {name.lower() for sql in statements for name in _TABLE.findall(sql)}


def test_every_table_the_gateway_decides_by_is_a_rule_table(monkeypatch):
    wf = WorkflowFactory(rung=3)
    ActionTypeFactory(workflow=wf, name="refund.issue")
    read = tables_read_by_the_gateway_memo(monkeypatch, wf.slug)
    assert Workflow._meta.db_table in read
    missing = read - set(RULE_TABLES)
    assert not missing, (
        f"the gateway's workflow memo reads {sorted(missing)}, which ladder/rules.py "
        "RULE_TABLES does not list: changes there would not bump rules_version"
    )


def _bump_triggers(table: str) -> list[tuple[str, int]]:
    with connection.cursor() as cur:
        cur.execute(
            "SELECT t.tgname, t.tgtype FROM pg_trigger t JOIN pg_proc p ON p.oid = t.tgfoid "
            "WHERE t.tgrelid = %s::regclass AND NOT t.tgisinternal AND t.tgenabled <> 'D' "
            "AND p.prosrc LIKE '%%rules_version%%'",
            [table],
        )
        return cur.fetchall()


@pytest.mark.parametrize("table", RULE_TABLES)
def test_every_rule_table_has_a_trigger_that_bumps_rules_version(table):
    triggers = _bump_triggers(table)
    assert triggers, f"{table} is a rule table but no trigger bumps rules_version on it"
    events = 0
    for _name, tgtype in triggers:
        events |= tgtype
    # The workflow row carries the number (its UPDATE bumps it); a row of any other rule
    # table changes the rules by being added and removed too.
    needed = _UPDATE if table == Workflow._meta.db_table else _INSERT | _UPDATE | _DELETE
    assert events & needed == needed, f"{table}: the bump misses some of INSERT/UPDATE/DELETE"
