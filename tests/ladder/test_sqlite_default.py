"""`make run` uses SQLite: its migrations must leave the same database guards in place.

SQLite rebuilds a table for many schema changes and drops the table's triggers with it,
so a later migration can silently remove a guard an earlier one installed. This migrates
a fresh SQLite file in a subprocess (the suite itself runs on PostgreSQL) and tries each
guard.
"""

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def sqlite_db(tmp_path_factory):
    path = tmp_path_factory.mktemp("sqlite") / "ladder.sqlite3"
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{path}", "REDIS_URL": ""}
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v0"],
        cwd=REPO,
        env=env,
        check=True,
        timeout=300,
    )
    conn = sqlite3.connect(path, isolation_level=None)
    yield conn
    conn.close()


def test_every_guard_trigger_exists_after_migrating(sqlite_db):
    names = {r[0] for r in sqlite_db.execute("SELECT name FROM sqlite_master WHERE type='trigger'")}
    assert {
        "traces_event_no_update",
        "traces_event_no_delete",
        "traces_run_no_delete",
        "ladder_workflow_rules_version",
        "ladder_actiontype_rules_version_ins",
        "ladder_actiontype_rules_version_upd",
        "ladder_actiontype_rules_version_del",
        "approvals_rolechange_no_update",
        "approvals_rolechange_no_delete",
        "ladder_policyversion_rules_version",
        "ladder_policyversion_no_update",
        "ladder_policyversion_no_delete",
        "ladder_certificate_rules_version",
        "ladder_certificate_no_update",
        "ladder_certificate_no_delete",
    } <= names


def _seed(db):
    db.execute(
        "INSERT INTO ladder_workflow (slug, name, description, rung, max_rung, risk_class, "
        "personal_fields, gate_thresholds, rules_version, created_at) "
        "VALUES ('wf', 'Wf', '', 1, 4, 'low', '[]', '{}', 1, '2026-01-01')"
    )
    wf = db.execute("SELECT id FROM ladder_workflow WHERE slug = 'wf'").fetchone()[0]
    run = "0" * 32
    db.execute(
        "INSERT INTO traces_run (id, workflow_id, idempotency_key, request_hash, rung, status, "
        "queue, summary, currency, flags, escalation_reason, execution_attempts, outcome, "
        "version, trace_head, trace_length, created_at, updated_at) VALUES "
        "(?, ?, 'k', 'h', 1, 'recorded', '', '', '', '[]', '', 0, '', 1, 'x', 1, "
        "'2026-01-01', '2026-01-01')",
        [run, wf],
    )
    db.execute(
        "INSERT INTO traces_traceevent (run_id, seq, type, actor, at, document, prev_hash, hash) "
        "VALUES (?, 1, 'input', 'system', '2026-01-01', '{}', 'p', 'x')",
        [run],
    )
    return wf


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE traces_traceevent SET actor = 'someone else'",
        "DELETE FROM traces_traceevent",
        "DELETE FROM traces_run",
    ],
)
def test_history_cannot_be_rewritten_on_sqlite(sqlite_db, statement):
    if not sqlite_db.execute("SELECT 1 FROM traces_run").fetchone():
        _seed(sqlite_db)
    with pytest.raises(sqlite3.IntegrityError, match=r"append-only|cannot be deleted"):
        sqlite_db.execute(statement)


def test_rules_version_moves_on_sqlite_too(sqlite_db):
    if not sqlite_db.execute("SELECT 1 FROM ladder_workflow").fetchone():
        _seed(sqlite_db)

    def version():
        return sqlite_db.execute("SELECT rules_version FROM ladder_workflow").fetchone()[0]

    start = version()
    sqlite_db.execute("UPDATE ladder_workflow SET rung = 2")
    assert version() == start + 1
    sqlite_db.execute("UPDATE ladder_workflow SET rules_version = 1, rung = 3")
    assert version() == start + 2  # an old copy written back cannot move it backwards
    wf = sqlite_db.execute("SELECT id FROM ladder_workflow").fetchone()[0]
    sqlite_db.execute(
        "INSERT INTO ladder_actiontype (workflow_id, name, description, param_schema, "
        "value_param, currency_param, reversible, executor, executor_path, "
        "compensating_action) VALUES (?, 'a.b', '', '{}', '', '', 0, 'agent', '', '')",
        [wf],
    )
    assert version() == start + 3


def test_every_rule_table_has_its_rules_version_triggers_on_sqlite_too(sqlite_db):
    from ladder.rules import APPEND_ONLY_RULE_TABLES, RULE_TABLES

    triggers = sqlite_db.execute(
        "SELECT tbl_name, upper(sql) FROM sqlite_master WHERE type = 'trigger'"
    ).fetchall()
    for table in RULE_TABLES:
        sqls = [sql for name, sql in triggers if name == table and "RULES_VERSION" in sql]
        needed = ["UPDATE"] if table == "ladder_workflow" else ["INSERT", "UPDATE", "DELETE"]
        if table in APPEND_ONLY_RULE_TABLES:
            needed = ["INSERT"]
            refusals = [sql for name, sql in triggers if name == table and "RAISE(ABORT" in sql]
            for event in ("UPDATE", "DELETE"):
                assert any(f"BEFORE {event} ON {table.upper()}" in sql for sql in refusals), (
                    f"{table}: append-only, but nothing refuses {event}"
                )
        for event in needed:
            assert any(f"AFTER {event} ON {table.upper()}" in sql for sql in sqls), (
                f"{table}: no trigger bumps rules_version after {event}"
            )


def test_make_runs_seed_decides_by_policy_on_sqlite_too(tmp_path):
    """`make run` seeds the demo on SQLite: the gateway's reads (the newest policy version
    among them) and the policy's counters must work there as on PostgreSQL."""
    path = tmp_path / "seeded.sqlite3"
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{path}", "REDIS_URL": ""}
    for command in (["migrate", "--noinput", "-v0"], ["seed_demo"]):
        subprocess.run(
            [sys.executable, "manage.py", *command],
            cwd=REPO,
            env=env,
            check=True,
            timeout=300,
            capture_output=True,
        )
    db = sqlite3.connect(path)
    try:
        decided = db.execute(
            "SELECT count(*) FROM traces_run r JOIN ladder_workflow w ON w.id = r.workflow_id "
            "WHERE w.slug = 'shipping-update' AND r.policy IS NOT NULL"
        ).fetchone()[0]
        shadowed = db.execute(
            "SELECT count(*) FROM traces_run r JOIN ladder_workflow w ON w.id = r.workflow_id "
            "WHERE w.slug = 'support-refund' AND r.shadow IS NOT NULL"
        ).fetchone()[0]
        counted = db.execute("SELECT count(*) FROM traces_policyallowance").fetchone()[0]
    finally:
        db.close()
    assert decided > 0 and shadowed > 0 and counted > 0
