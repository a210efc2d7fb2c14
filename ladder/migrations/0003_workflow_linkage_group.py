"""Workflow.linkage_group: which workflows' pseudonyms link (docs/security.md, finding 6).

The column is added by hand with a database default, not by AddField: on SQLite Django
would rebuild the table to add a NOT NULL column, which drops the rules_version trigger
on it and trips over the triggers of ladder_actiontype that name it. No trigger change is
needed: those of 0002 fire on every UPDATE of a workflow row, whatever columns it sets,
so a changed group bumps rules_version like any other edit and the gateway's memo
re-reads the workflow before the next run is stored.
"""

from django.db import migrations, models

import ladder.models
from ladder.migration_sql import vendor_sql

ADD = "ALTER TABLE ladder_workflow ADD COLUMN linkage_group varchar(80) DEFAULT '' NOT NULL"
DROP = "ALTER TABLE ladder_workflow DROP COLUMN linkage_group"


class Migration(migrations.Migration):
    dependencies = [("ladder", "0002_workflow_rules_version")]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AddField(
                    model_name="workflow",
                    name="linkage_group",
                    field=models.CharField(
                        blank=True,
                        db_default="",
                        default="",
                        max_length=80,
                        validators=[ladder.models.slug_validator],
                    ),
                ),
            ],
            database_operations=[
                vendor_sql(
                    postgresql=ADD, postgresql_reverse=DROP, sqlite=[ADD], sqlite_reverse=[DROP]
                )
            ],
        ),
    ]
