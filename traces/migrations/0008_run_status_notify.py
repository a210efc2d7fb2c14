"""A run whose status changes NOTIFYs `ladder_run_status` with its id.

Parked `?wait=` polls (traces/server.py) listen on that channel, one connection per
server process, and wake at once instead of re-reading their run on a timer. The
notification is sent at commit, so whoever reads the run on waking sees the change.
Written as a trigger so that every writer (reviews, execution, the admin) notifies,
whoever makes the change. Inserts do not notify: the gateway's hot path pays nothing.
SQLite (`make run`) has no NOTIFY; polls there re-read their run every second.
"""

from django.db import migrations

from ladder.migration_sql import vendor_sql

PG_UP = """
CREATE FUNCTION traces_run_status_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('ladder_run_status', NEW.id::text);
    RETURN NULL;
END $$;
CREATE TRIGGER traces_run_status_notify AFTER UPDATE OF status ON traces_run
    FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status)
    EXECUTE FUNCTION traces_run_status_notify();
"""
PG_DOWN = """
DROP TRIGGER IF EXISTS traces_run_status_notify ON traces_run;
DROP FUNCTION IF EXISTS traces_run_status_notify();
"""


class Migration(migrations.Migration):
    dependencies = [("traces", "0007_events_keyed_by_run_and_seq")]

    operations = [vendor_sql(postgresql=PG_UP, postgresql_reverse=PG_DOWN, sqlite=[], sqlite_reverse=[])]
