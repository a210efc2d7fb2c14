"""The breaker's and drift's bounds, the stop button's columns on workflows, the stop and
resume kinds of rung change, and alerts (docs/breaker.md, docs/stop.md)."""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

from ladder.migration_sql import vendor_sql

COLUMNS = [
    "ALTER TABLE ladder_workflow ADD COLUMN breaker_bounds jsonb DEFAULT '{}' NOT NULL",
    "ALTER TABLE ladder_workflow ADD COLUMN drift_bounds jsonb DEFAULT '{}' NOT NULL",
    "ALTER TABLE ladder_workflow ADD COLUMN stopped_at timestamp with time zone NULL",
    "ALTER TABLE ladder_workflow ADD COLUMN stopped_by_id integer NULL "
    "REFERENCES auth_user (id) DEFERRABLE INITIALLY DEFERRED",
    "ALTER TABLE ladder_workflow ADD COLUMN stop_reason varchar(300) DEFAULT '' NOT NULL",
    "CREATE INDEX ladder_workflow_stopped_by_id_idx ON ladder_workflow (stopped_by_id)",
]
DROP = [
    "DROP INDEX IF EXISTS ladder_workflow_stopped_by_id_idx",
    *(
        f"ALTER TABLE ladder_workflow DROP COLUMN {name}"
        for name in ("breaker_bounds", "drift_bounds", "stopped_at", "stopped_by_id", "stop_reason")
    ),
]
SQLITE_COLUMNS = [
    c.replace("jsonb", "text").replace("timestamp with time zone", "datetime") for c in COLUMNS
]


class Migration(migrations.Migration):
    dependencies = [
        ("ladder", "0006_certificates"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        # Added by hand, as in 0003 to 0005: on SQLite an AddField would rebuild
        # ladder_workflow and trip over the rules_version triggers naming it.
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AddField(
                    model_name="workflow",
                    name="breaker_bounds",
                    field=models.JSONField(blank=True, default=dict),
                ),
                migrations.AddField(
                    model_name="workflow",
                    name="drift_bounds",
                    field=models.JSONField(blank=True, default=dict),
                ),
                migrations.AddField(
                    model_name="workflow",
                    name="stop_reason",
                    field=models.CharField(blank=True, db_default="", default="", max_length=300),
                ),
                migrations.AddField(
                    model_name="workflow",
                    name="stopped_at",
                    field=models.DateTimeField(blank=True, null=True),
                ),
                migrations.AddField(
                    model_name="workflow",
                    name="stopped_by",
                    field=models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="+",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
            ],
            database_operations=[
                vendor_sql(
                    postgresql=";".join(COLUMNS),
                    postgresql_reverse=";".join(DROP),
                    sqlite=SQLITE_COLUMNS,
                    sqlite_reverse=DROP,
                )
            ],
        ),
        migrations.AlterField(
            model_name="rungchange",
            name="kind",
            field=models.CharField(
                choices=[
                    ("initial", "Initial rung"),
                    ("promotion", "Promotion"),
                    ("demotion", "Demotion"),
                    ("stop", "Stopped"),
                    ("resume", "Resumed"),
                ],
                max_length=20,
            ),
        ),
        migrations.CreateModel(
            name="Alert",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                (
                    "kind",
                    models.CharField(
                        choices=[
                            ("demotion", "Demotion"),
                            ("stop", "Stopped"),
                            ("resume", "Resumed"),
                            ("drift", "Drift alert"),
                            ("drill_failed", "Rollback drill failed"),
                        ],
                        max_length=20,
                    ),
                ),
                ("subject", models.CharField(max_length=200)),
                ("body", models.TextField()),
                ("evidence", models.JSONField(blank=True, default=dict)),
                ("recipients", models.JSONField(blank=True, default=list)),
                ("created_at", models.DateTimeField(auto_now_add=True)),
                (
                    "workflow",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="alerts",
                        to="ladder.workflow",
                    ),
                ),
            ],
            options={
                "ordering": ["workflow", "-created_at", "-id"],
                "indexes": [
                    models.Index(fields=["workflow", "-created_at"], name="alert_recent_idx")
                ],
            },
        ),
    ]
