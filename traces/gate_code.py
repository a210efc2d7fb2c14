"""The run's gate categories packed into one integer (Run.gate_code), so the gate count
groups by one key instead of nine (traces/gates.py; docs/gates.md).

The database computes it from the typed columns on every write (a stored generated
column), whoever writes them; nothing in the services maintains it. Each part takes the
position of its value in its list, plus one (0: empty, null or anything else), times the
product of the sizes before it. Pure: importable by the models and by the counting code.
"""

import functools

from django.db.models import Case, GeneratedField, IntegerField, Value, When
from django.db.models.expressions import Combinable

# (column, the values it takes). Booleans that cannot be null list only True.
PARTS: tuple[tuple[str, tuple], ...] = (
    ("decider", ("person", "policy", "deadline")),
    (
        "status",
        (
            "approved",
            "rejected",
            "executing",
            "executed",
            "failed",
            "denied",
            "rolled_back",
            "pending_review",
            "received",
            "recorded",
        ),
    ),
    ("probe", (True,)),
    ("audit", ("correct", "wrong", "due")),
    ("outcome", ("correct", "wrong")),
    ("shadow_outcome", ("allow", "deny", "escalate")),
    ("light_edit", (False, True)),
    ("matched", (False, True)),
    ("replay_ok", (False, True)),
)


def _scales() -> list[int]:
    scales, scale = [], 1
    for _, values in PARTS:
        scales.append(scale)
        scale *= len(values) + 1
    return scales


SCALES = _scales()


class StoredGeneratedField(GeneratedField):
    """A stored generated column. Django's system check asks the database server its
    version to learn whether it supports *virtual* ones (PostgreSQL 18), which made
    `manage.py check` need a live database; a stored one is supported by every database
    this project runs on (PostgreSQL 12+, SQLite 3.31+), and the persistence check,
    which needs no connection, still runs."""

    def __init__(self, **kwargs):
        kwargs.setdefault("db_persist", True)
        super().__init__(**kwargs)

    def _check_supported(self, databases):
        return []


def gate_code_expression() -> Combinable:
    """The generated column's expression."""
    total = None
    for (column, values), scale in zip(PARTS, SCALES, strict=True):
        part = Case(
            *[When(**{column: v}, then=Value(i * scale)) for i, v in enumerate(values, 1)],
            default=Value(0),
            output_field=IntegerField(),
        )
        total = part if total is None else total + part
    return total


@functools.cache  # a few hundred distinct codes at most; callers only read the dict
def gate_code_decode(code: int) -> dict:
    """{column: value} from a code; a part outside its list reads as None (or False for
    a boolean that cannot be null)."""
    out = {}
    for column, values in PARTS:
        code, index = divmod(code, len(values) + 1)
        if index:
            out[column] = values[index - 1]
        else:
            out[column] = (
                False if values == (True,) else ("" if isinstance(values[0], str) else None)
            )
    return out


def gate_code_encode(**columns) -> int:
    """The code the database computes for these column values (tests and docs)."""
    code = 0
    for (column, values), scale in zip(PARTS, SCALES, strict=True):
        value = columns.get(column)
        code += (values.index(value) + 1) * scale if value in values else 0
    return code
