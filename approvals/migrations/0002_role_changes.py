"""Role changes: who granted or revoked which role to whom, when. Append-only in the
database itself, like trace events, so no ORM bypass or admin action rewrites who put a
reviewer in place (the four-eyes rules read it).
"""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

from ladder.migration_sql import vendor_sql

PG_UP = """
CREATE OR REPLACE FUNCTION approvals_rolechange_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'role changes are append-only (% refused)', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER approvals_rolechange_no_update BEFORE UPDATE ON approvals_rolechange
    FOR EACH ROW EXECUTE FUNCTION approvals_rolechange_append_only();
CREATE TRIGGER approvals_rolechange_no_delete BEFORE DELETE ON approvals_rolechange
    FOR EACH ROW EXECUTE FUNCTION approvals_rolechange_append_only();
"""
PG_DOWN = """
DROP TRIGGER IF EXISTS approvals_rolechange_no_update ON approvals_rolechange;
DROP TRIGGER IF EXISTS approvals_rolechange_no_delete ON approvals_rolechange;
DROP FUNCTION IF EXISTS approvals_rolechange_append_only();
"""
SQLITE_UP = [
    """CREATE TRIGGER approvals_rolechange_no_update BEFORE UPDATE ON approvals_rolechange
       BEGIN SELECT RAISE(ABORT, 'role changes are append-only (UPDATE refused)'); END;""",
    """CREATE TRIGGER approvals_rolechange_no_delete BEFORE DELETE ON approvals_rolechange
       BEGIN SELECT RAISE(ABORT, 'role changes are append-only (DELETE refused)'); END;""",
]
SQLITE_DOWN = [
    "DROP TRIGGER IF EXISTS approvals_rolechange_no_update;",
    "DROP TRIGGER IF EXISTS approvals_rolechange_no_delete;",
]


class Migration(migrations.Migration):

    dependencies = [
        ('approvals', '0001_initial'),
        ('ladder', '0002_workflow_rules_version'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name='RoleChange',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('role', models.CharField(choices=[('reviewer', 'Reviewer'), ('owner', 'Owner'), ('compliance', 'Compliance'), ('admin', 'Admin')], max_length=12)),
                ('change', models.CharField(choices=[('grant', 'granted'), ('revoke', 'revoked')], max_length=6)),
                ('at', models.DateTimeField(auto_now_add=True)),
                ('by', models.ForeignKey(null=True, on_delete=django.db.models.deletion.PROTECT, related_name='+', to=settings.AUTH_USER_MODEL)),
                ('person', models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='+', to=settings.AUTH_USER_MODEL)),
                ('workflow', models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='+', to='ladder.workflow')),
            ],
            options={
                'ordering': ['-at', '-id'],
                'indexes': [models.Index(fields=['workflow', '-at', '-id'], name='rolechange_by_workflow')],
            },
        ),
        vendor_sql(
            postgresql=PG_UP,
            postgresql_reverse=PG_DOWN,
            sqlite=SQLITE_UP,
            sqlite_reverse=SQLITE_DOWN,
        ),
    ]
