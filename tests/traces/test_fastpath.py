import pytest

from traces.fastpath import EVENT_COLUMNS, RUN_COLUMNS
from traces.models import Run, TraceEvent


def test_the_hand_written_insert_names_every_run_column():
    assert set(RUN_COLUMNS) == {f.column for f in Run._meta.concrete_fields}


def test_the_hand_written_insert_names_every_event_column():
    assert set(EVENT_COLUMNS) == {f.column for f in TraceEvent._meta.concrete_fields}


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
