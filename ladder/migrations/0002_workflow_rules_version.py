"""Workflow.rules_version: a number that changes whenever the rules of a workflow may have.

Kept by triggers rather than by model code, so an admin edit, a queryset.update(), a
data migration or hand-written SQL all bump it. The gateway holds workflow rules and
token scopes in memory and its INSERT re-checks them in the same statement (see
traces/fastpath.py), so this number is what makes a promotion, a demotion or an edited
action schema apply to the very next run.
"""

from django.db import migrations, models

from ladder.migration_sql import vendor_sql

PG_UP = """
CREATE OR REPLACE FUNCTION ladder_workflow_bump_rules() RETURNS trigger AS $$
BEGIN
    NEW.rules_version := OLD.rules_version + 1;
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER ladder_workflow_rules_version BEFORE UPDATE ON ladder_workflow
    FOR EACH ROW EXECUTE FUNCTION ladder_workflow_bump_rules();

CREATE OR REPLACE FUNCTION ladder_actiontype_bump_rules() RETURNS trigger AS $$
BEGIN
    IF TG_OP <> 'INSERT' THEN
        UPDATE ladder_workflow SET rules_version = rules_version + 1
        WHERE id = OLD.workflow_id;
    END IF;
    IF TG_OP = 'INSERT' OR (TG_OP = 'UPDATE' AND NEW.workflow_id <> OLD.workflow_id) THEN
        UPDATE ladder_workflow SET rules_version = rules_version + 1
        WHERE id = NEW.workflow_id;
    END IF;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER ladder_actiontype_rules_version
    AFTER INSERT OR UPDATE OR DELETE ON ladder_actiontype
    FOR EACH ROW EXECUTE FUNCTION ladder_actiontype_bump_rules();
"""
PG_DOWN = """
DROP TRIGGER IF EXISTS ladder_actiontype_rules_version ON ladder_actiontype;
DROP FUNCTION IF EXISTS ladder_actiontype_bump_rules();
DROP TRIGGER IF EXISTS ladder_workflow_rules_version ON ladder_workflow;
DROP FUNCTION IF EXISTS ladder_workflow_bump_rules();
"""
# SQLite has no BEFORE-trigger assignment: bump after the fact, unless the update itself
# already moved the number forward (which is what the bump does, so it cannot recurse).
SQLITE_UP = [
    """CREATE TRIGGER ladder_workflow_rules_version AFTER UPDATE ON ladder_workflow
       WHEN NEW.rules_version <= OLD.rules_version
       BEGIN UPDATE ladder_workflow SET rules_version = OLD.rules_version + 1
             WHERE id = NEW.id; END;""",
    """CREATE TRIGGER ladder_actiontype_rules_version_ins AFTER INSERT ON ladder_actiontype
       BEGIN UPDATE ladder_workflow SET rules_version = rules_version + 1
             WHERE id = NEW.workflow_id; END;""",
    """CREATE TRIGGER ladder_actiontype_rules_version_upd AFTER UPDATE ON ladder_actiontype
       BEGIN UPDATE ladder_workflow SET rules_version = rules_version + 1
             WHERE id IN (OLD.workflow_id, NEW.workflow_id); END;""",
    """CREATE TRIGGER ladder_actiontype_rules_version_del AFTER DELETE ON ladder_actiontype
       BEGIN UPDATE ladder_workflow SET rules_version = rules_version + 1
             WHERE id = OLD.workflow_id; END;""",
]
SQLITE_DOWN = [
    "DROP TRIGGER IF EXISTS ladder_workflow_rules_version;",
    "DROP TRIGGER IF EXISTS ladder_actiontype_rules_version_ins;",
    "DROP TRIGGER IF EXISTS ladder_actiontype_rules_version_upd;",
    "DROP TRIGGER IF EXISTS ladder_actiontype_rules_version_del;",
]


class Migration(migrations.Migration):
    dependencies = [("ladder", "0001_initial")]

    operations = [
        migrations.AddField(
            model_name="workflow",
            name="rules_version",
            field=models.PositiveBigIntegerField(default=1, editable=False),
        ),
        vendor_sql(
            postgresql=PG_UP,
            postgresql_reverse=PG_DOWN,
            sqlite=SQLITE_UP,
            sqlite_reverse=SQLITE_DOWN,
        ),
    ]
