"""Trace events are append-only: the database itself refuses UPDATE and DELETE.

Enforced in the database rather than in model code so that no ORM bypass, admin action
or hand-written SQL from the application role can rewrite history.
"""

from django.db import migrations

PG_UP = """
CREATE OR REPLACE FUNCTION traces_event_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'trace events are append-only (% refused)', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER traces_event_no_update BEFORE UPDATE ON traces_traceevent
    FOR EACH ROW EXECUTE FUNCTION traces_event_append_only();
CREATE TRIGGER traces_event_no_delete BEFORE DELETE ON traces_traceevent
    FOR EACH ROW EXECUTE FUNCTION traces_event_append_only();
"""
PG_DOWN = """
DROP TRIGGER IF EXISTS traces_event_no_update ON traces_traceevent;
DROP TRIGGER IF EXISTS traces_event_no_delete ON traces_traceevent;
DROP FUNCTION IF EXISTS traces_event_append_only();
"""
SQLITE_UP = [
    """CREATE TRIGGER traces_event_no_update BEFORE UPDATE ON traces_traceevent
       BEGIN SELECT RAISE(ABORT, 'trace events are append-only (UPDATE refused)'); END;""",
    """CREATE TRIGGER traces_event_no_delete BEFORE DELETE ON traces_traceevent
       BEGIN SELECT RAISE(ABORT, 'trace events are append-only (DELETE refused)'); END;""",
]
SQLITE_DOWN = [
    "DROP TRIGGER IF EXISTS traces_event_no_update;",
    "DROP TRIGGER IF EXISTS traces_event_no_delete;",
]


def up(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        schema_editor.execute(PG_UP, params=None)
    elif vendor == "sqlite":
        for sql in SQLITE_UP:
            schema_editor.execute(sql)


def down(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        schema_editor.execute(PG_DOWN, params=None)
    elif vendor == "sqlite":
        for sql in SQLITE_DOWN:
            schema_editor.execute(sql)


class Migration(migrations.Migration):
    dependencies = [("traces", "0001_initial")]
    operations = [migrations.RunPython(up, down)]
