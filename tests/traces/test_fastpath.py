import json
import uuid
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from traces.chain import canonical_json
from traces.fastpath import EVENT_COLUMNS, RUN_COLUMNS, _run_document, new_run
from traces.models import Run, TraceEvent


def test_the_hand_written_insert_names_every_run_column():
    # Every column but the ones the database computes itself (Run.gate_code).
    written = {f.column for f in Run._meta.concrete_fields if not f.generated}
    assert set(RUN_COLUMNS) == written
    assert {f.column for f in Run._meta.concrete_fields if f.generated} == {"gate_code"}


def test_the_hand_written_insert_names_every_event_column():
    assert set(EVENT_COLUMNS) == {f.column for f in TraceEvent._meta.concrete_fields}


def _values():
    now = datetime(2026, 11, 24, 9, 30, 1, 123456, tzinfo=UTC)
    return {
        "id": uuid.UUID("0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"),
        "workflow_id": 7,
        "idempotency_key": "k-1",
        "request_hash": "ab" * 32,
        "rung": 3,
        "status": "pending_review",
        "queue": "approve",
        "action_type_id": 9,
        "proposal": {"action": "refund.issue", "params": {"amount": 12.5, "note": "é<x>"}},
        "summary": "refund",
        "value": Decimal("12.5000"),
        "currency": "EUR",
        "flags": ["first"],
        "escalation_reason": "",
        "trace_head": "cd" * 32,
        "trace_length": 5,
        "created_at": now,
        "updated_at": now,
    }


def test_a_run_built_positionally_is_the_run_keyword_arguments_build():
    fast, slow = new_run(_values()), Run(**_values())
    assert [getattr(fast, c) for c in RUN_COLUMNS] == [getattr(slow, c) for c in RUN_COLUMNS]
    # The columns not given take the model's defaults, fresh ones (no shared list).
    assert fast.execution_attempts == 0 and fast.decision is None and fast.outcome == ""
    assert fast._state.adding is True


def test_the_run_document_with_a_spliced_proposal_is_the_same_row():
    run = new_run(_values())
    whole = json.loads(_run_document(run))
    spliced = json.loads(_run_document(run, canonical_json(run.proposal)))
    assert spliced == whole
    assert whole["id"] == str(run.id) and whole["value"] == "12.5000"
    assert whole["created_at"] == "2026-11-24T09:30:01.123456+00:00"
    assert set(whole) == set(RUN_COLUMNS)


@pytest.mark.django_db
def test_the_gateway_insert_is_a_prepared_statement(make_workflow, agent):
    # Django switches psycopg's prepared statements off by default; settings turn them
    # back on, and without them the insert is parsed and planned on every run.
    from django.db import connection

    from tests.traces.test_gateway import body

    wf = make_workflow()
    a = agent(wf)
    for key in ("p1", "p2"):
        assert a.post("/runs", body(wf, key=key)).status_code == 201
    with connection.cursor() as cur:
        cur.execute(
            "SELECT count(*) FROM pg_prepared_statements WHERE statement LIKE %s",
            ["WITH guard AS%"],
        )
        assert cur.fetchone()[0] == 1
