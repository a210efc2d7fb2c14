"""Raw SQL in migrations, written once per database vendor.

Triggers and other guards are written by hand for PostgreSQL and SQLite (the embedded
default of `make run`); a vendor with no SQL given is refused rather than silently left
unguarded. Migrations import this, so keep its behaviour stable.
"""

from collections.abc import Sequence

from django.db import migrations


def vendor_sql(
    *,
    postgresql: str,
    postgresql_reverse: str,
    sqlite: Sequence[str],
    sqlite_reverse: Sequence[str],
) -> migrations.RunPython:
    """A RunPython operation running the SQL written for the current database."""

    def run(statements: dict, schema_editor) -> None:
        vendor = schema_editor.connection.vendor
        if vendor not in statements:
            raise NotImplementedError(f"this migration has no SQL for {vendor}")
        if vendor == "postgresql":
            schema_editor.execute(statements[vendor], params=None)
        else:
            for sql in statements[vendor]:
                schema_editor.execute(sql)

    def forwards(apps, schema_editor):
        run({"postgresql": postgresql, "sqlite": sqlite}, schema_editor)

    def backwards(apps, schema_editor):
        run({"postgresql": postgresql_reverse, "sqlite": sqlite_reverse}, schema_editor)

    return migrations.RunPython(forwards, backwards)
