"""Gate settings on workflows and gate snapshots (append-only: the evidence a promotion
request freezes must stay what it was; docs/gates.md)."""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

from ladder.migration_sql import vendor_sql

COLUMNS = [
    "ALTER TABLE ladder_workflow ADD COLUMN gate_window_days smallint DEFAULT 90 NOT NULL "
    "CHECK (gate_window_days >= 0)",
    "ALTER TABLE ladder_workflow ADD COLUMN outcome_metric varchar(100) DEFAULT '' NOT NULL",
    "ALTER TABLE ladder_workflow ADD COLUMN outcome_direction varchar(4) DEFAULT 'up' NOT NULL",
    "ALTER TABLE ladder_workflow ADD COLUMN outcome_baseline_days smallint DEFAULT 30 NOT NULL "
    "CHECK (outcome_baseline_days >= 0)",
    "ALTER TABLE ladder_workflow ADD COLUMN certificate_valid_days smallint DEFAULT 90 NOT NULL "
    "CHECK (certificate_valid_days >= 0)",
    "ALTER TABLE ladder_workflow ADD COLUMN probe_rate double precision DEFAULT 0.0 NOT NULL",
]
DROP = [
    f"ALTER TABLE ladder_workflow DROP COLUMN {name}"
    for name in (
        "gate_window_days",
        "outcome_metric",
        "outcome_direction",
        "outcome_baseline_days",
        "certificate_valid_days",
        "probe_rate",
    )
]
SQLITE_COLUMNS = [
    c.replace("smallint", "integer").replace("double precision", "real") for c in COLUMNS
]

PG_GUARD = """
CREATE OR REPLACE FUNCTION ladder_gatesnapshot_guard() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'gate snapshots are append-only (% refused)', TG_OP
        USING ERRCODE = 'integrity_constraint_violation';
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER ladder_gatesnapshot_append_only BEFORE UPDATE OR DELETE ON ladder_gatesnapshot
    FOR EACH ROW EXECUTE FUNCTION ladder_gatesnapshot_guard();
"""
PG_UNGUARD = """
DROP TRIGGER IF EXISTS ladder_gatesnapshot_append_only ON ladder_gatesnapshot;
DROP FUNCTION IF EXISTS ladder_gatesnapshot_guard();
"""
SQLITE_GUARD = [
    """CREATE TRIGGER ladder_gatesnapshot_no_update BEFORE UPDATE ON ladder_gatesnapshot
       BEGIN SELECT RAISE(ABORT, 'gate snapshots are append-only (UPDATE refused)'); END;""",
    """CREATE TRIGGER ladder_gatesnapshot_no_delete BEFORE DELETE ON ladder_gatesnapshot
       BEGIN SELECT RAISE(ABORT, 'gate snapshots are append-only (DELETE refused)'); END;""",
]
SQLITE_UNGUARD = [
    "DROP TRIGGER IF EXISTS ladder_gatesnapshot_no_update;",
    "DROP TRIGGER IF EXISTS ladder_gatesnapshot_no_delete;",
]


class Migration(migrations.Migration):
    dependencies = [
        ("ladder", "0004_policy_versions_and_deadlines"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        # Added by hand with database defaults, as in 0003 and 0004: on SQLite an AddField
        # would rebuild ladder_workflow and trip over the rules_version triggers naming it.
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AddField(
                    model_name="workflow",
                    name="gate_window_days",
                    field=models.PositiveSmallIntegerField(db_default=90, default=90),
                ),
                migrations.AddField(
                    model_name="workflow",
                    name="outcome_metric",
                    field=models.CharField(blank=True, db_default="", default="", max_length=100),
                ),
                migrations.AddField(
                    model_name="workflow",
                    name="outcome_direction",
                    field=models.CharField(
                        choices=[("up", "Higher is better"), ("down", "Lower is better")],
                        db_default="up",
                        default="up",
                        max_length=4,
                    ),
                ),
                migrations.AddField(
                    model_name="workflow",
                    name="outcome_baseline_days",
                    field=models.PositiveSmallIntegerField(db_default=30, default=30),
                ),
                migrations.AddField(
                    model_name="workflow",
                    name="certificate_valid_days",
                    field=models.PositiveSmallIntegerField(db_default=90, default=90),
                ),
                migrations.AddField(
                    model_name="workflow",
                    name="probe_rate",
                    field=models.FloatField(db_default=0.0, default=0.0),
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
        migrations.CreateModel(
            name="GateSnapshot",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("computed_at", models.DateTimeField()),
                (
                    "rung",
                    models.PositiveSmallIntegerField(
                        choices=[
                            (0, "L0 Assistant"),
                            (1, "L1 Draft + approval"),
                            (2, "L2 Recommend"),
                            (3, "L3 Execute with approval"),
                            (4, "L4 Execute under policy"),
                            (5, "L5 Autonomous"),
                        ]
                    ),
                ),
                (
                    "target_rung",
                    models.PositiveSmallIntegerField(
                        choices=[
                            (0, "L0 Assistant"),
                            (1, "L1 Draft + approval"),
                            (2, "L2 Recommend"),
                            (3, "L3 Execute with approval"),
                            (4, "L4 Execute under policy"),
                            (5, "L5 Autonomous"),
                        ],
                        null=True,
                    ),
                ),
                ("window_days", models.PositiveSmallIntegerField()),
                ("window_start", models.DateTimeField()),
                ("window_end", models.DateTimeField()),
                ("eligible", models.BooleanField()),
                ("reasons", models.JSONField(default=list)),
                ("tallies", models.JSONField()),
                ("gates", models.JSONField()),
                (
                    "trigger",
                    models.CharField(
                        choices=[
                            ("nightly", "Nightly recompute"),
                            ("on_demand", "Recomputed on demand"),
                            ("command", "manage.py recompute_gates"),
                        ],
                        max_length=10,
                    ),
                ),
                (
                    "requested_by",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="+",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
                (
                    "workflow",
                    models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="+",
                        to="ladder.workflow",
                    ),
                ),
            ],
            options={
                "ordering": ["workflow", "-computed_at", "-id"],
                "indexes": [
                    models.Index(
                        fields=["workflow", "-computed_at", "-id"], name="gatesnapshot_latest_idx"
                    )
                ],
            },
        ),
        vendor_sql(
            postgresql=PG_GUARD,
            postgresql_reverse=PG_UNGUARD,
            sqlite=SQLITE_GUARD,
            sqlite_reverse=SQLITE_UNGUARD,
        ),
    ]
