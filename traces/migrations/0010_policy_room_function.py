"""traces_policy_room(): the re-check, under the counters' locks, that an allowed action
still fits its rate limits, run inside the gateway's INSERT (traces/fastpath.py).

The gateway reads the counters without a lock, decides, and stores the run in one
statement; for an allowed action that statement first calls this function, which takes
the advisory locks of the counters (in key order) and counts again. A VOLATILE function
takes a fresh snapshot for each query it runs, so the count sees every allowance
committed by whoever held the lock before; the locks are held until the statement's
transaction commits, with the new allowance rows in it. When there is no longer room,
nothing is stored and the gateway decides again on fresh counters. The critical section
is thus one statement inside PostgreSQL: no client round trip (or Python thread waiting
for the GIL) ever holds a lock.
"""

from django.db import migrations

from ladder.migration_sql import vendor_sql

PG_UP = """
CREATE OR REPLACE FUNCTION traces_policy_room(
    wf bigint, locks bigint[], actions text[], subjects text[], since timestamptz[],
    currencies text[], max_counts bigint[], max_values numeric[], val numeric
) RETURNS boolean AS $$
DECLARE
    i integer;
    n bigint;
    total numeric;
BEGIN
    PERFORM pg_advisory_xact_lock(k) FROM (SELECT DISTINCT k FROM unnest(locks) AS k) AS l
        ORDER BY k;
    FOR i IN 1 .. coalesce(array_length(actions, 1), 0) LOOP
        SELECT count(*), coalesce(sum(a.value) FILTER
               (WHERE currencies[i] = '' OR a.currency = currencies[i]), 0)
          INTO n, total
          FROM traces_policyallowance a
         WHERE a.workflow_id = wf AND NOT a.shadow AND a.action = actions[i]
           AND a.subject = subjects[i] AND a.at > since[i];
        IF max_counts[i] IS NOT NULL AND n + 1 > max_counts[i] THEN
            RETURN false;
        END IF;
        IF max_values[i] IS NOT NULL AND total + coalesce(val, 0) > max_values[i] THEN
            RETURN false;
        END IF;
    END LOOP;
    RETURN true;
END;
$$ LANGUAGE plpgsql VOLATILE;
"""
PG_DOWN = """
DROP FUNCTION IF EXISTS traces_policy_room(bigint, bigint[], text[], text[], timestamptz[],
    text[], bigint[], numeric[], numeric);
"""


class Migration(migrations.Migration):
    dependencies = [("traces", "0009_policy_decisions_on_runs")]

    operations = [
        # SQLite (the single-process `make run` default) has no such function: there the
        # gateway decides and stores inside one transaction, which SQLite serialises.
        vendor_sql(postgresql=PG_UP, postgresql_reverse=PG_DOWN, sqlite=[], sqlite_reverse=[]),
    ]
