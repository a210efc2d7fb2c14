"""Trace events lose their database foreign key to runs; runs can no longer be deleted.

The FK check cost a FOR KEY SHARE lock on the run row for every event, on the heap page
that every concurrent submission writes to: about a third of the gateway's database CPU
(bench/README.md). What it protected is kept another way:
- a trigger refuses DELETE on traces_run (runs are history; TRUNCATE, an owner's
  deliberate act, is not a row delete and is how test and bench databases are emptied);
- events are only written in the same statement as their run or under its row lock;
- verify_traces reports any event whose run is missing.

On SQLite, AlterField rebuilds the table and silently drops its triggers: this migration
also (re)creates the append-only triggers there, which migration 0004's rebuild had lost.
"""

from django.db import migrations, models

from ladder.migration_sql import vendor_sql

PG_UP = """
CREATE OR REPLACE FUNCTION traces_run_no_delete() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'runs are history and cannot be deleted'
        USING ERRCODE = 'insufficient_privilege';
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER traces_run_no_delete BEFORE DELETE ON traces_run
    FOR EACH ROW EXECUTE FUNCTION traces_run_no_delete();
"""
PG_DOWN = """
DROP TRIGGER IF EXISTS traces_run_no_delete ON traces_run;
DROP FUNCTION IF EXISTS traces_run_no_delete();
"""
SQLITE_UP = [
    """CREATE TRIGGER IF NOT EXISTS traces_event_no_update BEFORE UPDATE ON traces_traceevent
       BEGIN SELECT RAISE(ABORT, 'trace events are append-only (UPDATE refused)'); END;""",
    """CREATE TRIGGER IF NOT EXISTS traces_event_no_delete BEFORE DELETE ON traces_traceevent
       BEGIN SELECT RAISE(ABORT, 'trace events are append-only (DELETE refused)'); END;""",
    """CREATE TRIGGER IF NOT EXISTS traces_run_no_delete BEFORE DELETE ON traces_run
       BEGIN SELECT RAISE(ABORT, 'runs are history and cannot be deleted'); END;""",
]
SQLITE_DOWN = ["DROP TRIGGER IF EXISTS traces_run_no_delete;"]


class Migration(migrations.Migration):
    dependencies = [("traces", "0005_run_ids_v7")]

    operations = [
        migrations.AlterField(
            model_name="traceevent",
            name="run",
            field=models.ForeignKey(
                db_constraint=False,
                db_index=False,
                on_delete=models.PROTECT,
                related_name="events",
                to="traces.run",
            ),
        ),
        vendor_sql(
            postgresql=PG_UP,
            postgresql_reverse=PG_DOWN,
            sqlite=SQLITE_UP,
            sqlite_reverse=SQLITE_DOWN,
        ),
    ]
