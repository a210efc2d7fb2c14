from traces.fastpath import EVENT_COLUMNS, RUN_COLUMNS
from traces.models import Run, TraceEvent


def test_the_hand_written_insert_names_every_run_column():
    assert set(RUN_COLUMNS) == {f.column for f in Run._meta.concrete_fields}


def test_the_hand_written_insert_names_every_event_column_but_the_key():
    expected = {f.column for f in TraceEvent._meta.concrete_fields if not f.primary_key}
    assert set(EVENT_COLUMNS) == expected
