"""Drift checks of L4/L5 workflows (append-only, like gate snapshots: an alert or a
demotion a check raised must stay explainable by the figures it stored; docs/drift.md)."""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

from ladder.migration_sql import vendor_sql

PG_GUARD = """
CREATE OR REPLACE FUNCTION ladder_driftcheck_guard() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'drift checks are append-only (% refused)', TG_OP
        USING ERRCODE = 'integrity_constraint_violation';
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER ladder_driftcheck_append_only BEFORE UPDATE OR DELETE ON ladder_driftcheck
    FOR EACH ROW EXECUTE FUNCTION ladder_driftcheck_guard();
"""
PG_UNGUARD = """
DROP TRIGGER IF EXISTS ladder_driftcheck_append_only ON ladder_driftcheck;
DROP FUNCTION IF EXISTS ladder_driftcheck_guard();
"""
SQLITE_GUARD = [
    """CREATE TRIGGER ladder_driftcheck_no_update BEFORE UPDATE ON ladder_driftcheck
       BEGIN SELECT RAISE(ABORT, 'drift checks are append-only (UPDATE refused)'); END;""",
    """CREATE TRIGGER ladder_driftcheck_no_delete BEFORE DELETE ON ladder_driftcheck
       BEGIN SELECT RAISE(ABORT, 'drift checks are append-only (DELETE refused)'); END;""",
]
SQLITE_UNGUARD = [
    "DROP TRIGGER IF EXISTS ladder_driftcheck_no_update;",
    "DROP TRIGGER IF EXISTS ladder_driftcheck_no_delete;",
]


class Migration(migrations.Migration):

    dependencies = [
        ('ladder', '0007_breaker_stop_alerts'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name='DriftCheck',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('computed_at', models.DateTimeField()),
                ('rung', models.PositiveSmallIntegerField(choices=[(0, 'L0 Assistant'), (1, 'L1 Draft + approval'), (2, 'L2 Recommend'), (3, 'L3 Execute with approval'), (4, 'L4 Execute under policy'), (5, 'L5 Autonomous')])),
                ('baseline_start', models.DateTimeField()),
                ('baseline_end', models.DateTimeField()),
                ('recent_start', models.DateTimeField()),
                ('recent_end', models.DateTimeField()),
                ('bounds', models.JSONField(default=dict)),
                ('checks', models.JSONField(default=list)),
                ('breached', models.BooleanField()),
                ('trigger', models.CharField(choices=[('nightly', 'Nightly check'), ('on_demand', 'Checked on demand'), ('command', 'manage.py drift_check')], max_length=10)),
                ('requested_by', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.PROTECT, related_name='+', to=settings.AUTH_USER_MODEL)),
                ('workflow', models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.PROTECT, related_name='+', to='ladder.workflow')),
            ],
            options={
                'ordering': ['workflow', '-computed_at', '-id'],
                'indexes': [models.Index(fields=['workflow', '-computed_at', '-id'], name='driftcheck_latest_idx')],
            },
        ),
        vendor_sql(
            postgresql=PG_GUARD,
            postgresql_reverse=PG_UNGUARD,
            sqlite=SQLITE_GUARD,
            sqlite_reverse=SQLITE_UNGUARD,
        ),
    ]
