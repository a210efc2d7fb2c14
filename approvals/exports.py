"""Exports of runs, trace events and reviews as CSV or JSON Lines (docs/history.md).

Streamed: rows are read through a server-side cursor (`.iterator(chunk_size=...)`) and
written one at a time, so an export of millions of rows holds one chunk in memory, never
the whole result. Only what is stored is written, which is the redacted data: pseudonyms
stay pseudonyms. Oldest first, so an export reads like the trace it came from.
"""

import csv
import json
import uuid
from collections.abc import Iterable, Iterator
from datetime import datetime
from decimal import Decimal

from django.db.models import QuerySet

from approvals.models import Review
from traces.models import Run, TraceEvent

KINDS = ("runs", "events", "reviews")
FORMATS = ("csv", "jsonl")
CHUNK = 2000
# Events are read for this many runs at a time (each run has a handful of events).
EVENT_BATCH = 500

# (column, where it is read from).
RUN_FIELDS = (
    ("id", "id"),
    ("created_at", "created_at"),
    ("workflow", "workflow__slug"),
    ("rung", "rung"),
    ("status", "status"),
    ("queue", "queue"),
    ("action", "action_type__name"),
    ("value", "value"),
    ("currency", "currency"),
    ("flags", "flags"),
    ("summary", "summary"),
    ("escalation_reason", "escalation_reason"),
    ("decider", "decider"),
    ("decided_by", "decided_by__username"),
    ("decided_at", "decided_at"),
    ("executed_at", "executed_at"),
    ("outcome", "outcome"),
    ("audit", "audit"),
    ("proposal", "proposal"),
    ("decision", "decision"),
    ("policy", "policy"),
    ("result", "result"),
    ("trace_length", "trace_length"),
    ("trace_head", "trace_head"),
)
RUN_COLUMNS = tuple(column for column, _ in RUN_FIELDS)
EVENT_COLUMNS = ("run_id", "seq", "type", "actor", "at", "document", "prev_hash", "hash")
# (column, where it is read from).
REVIEW_FIELDS = (
    ("run_id", "run_id"),
    ("workflow", "run__workflow__slug"),
    ("created_at", "created_at"),
    ("reviewer", "reviewer__username"),
    ("kind", "kind"),
    ("verdict", "verdict"),
    ("reason", "reason"),
    ("submitted", "submitted"),
    ("diff", "diff"),
    ("light_edit", "light_edit"),
    ("matched", "matched"),
    ("chosen_option", "chosen_option"),
    ("seen_hash", "seen_hash"),
)
REVIEW_COLUMNS = tuple(column for column, _ in REVIEW_FIELDS)
COLUMNS = {"runs": RUN_COLUMNS, "events": EVENT_COLUMNS, "reviews": REVIEW_COLUMNS}
CONTENT_TYPES = {"csv": "text/csv; charset=utf-8", "jsonl": "application/x-ndjson"}


def run_rows(runs: QuerySet[Run]) -> Iterator[dict]:
    rows = (
        runs.order_by("created_at", "id")
        .values_list(*(path for _, path in RUN_FIELDS))
        .iterator(chunk_size=CHUNK)
    )
    for row in rows:
        yield dict(zip(RUN_COLUMNS, row, strict=True))


def event_rows(runs: QuerySet[Run]) -> Iterator[dict]:
    """Each run's events in chain order, runs oldest first. The run ids stream from one
    cursor; their events are read a batch of runs at a time."""
    ids = runs.order_by("created_at", "id").values_list("id", flat=True).iterator(chunk_size=CHUNK)
    batch: list = []
    for run_id in ids:
        batch.append(run_id)
        if len(batch) == EVENT_BATCH:
            yield from _events_of(batch)
            batch = []
    if batch:
        yield from _events_of(batch)


def _events_of(run_ids: list) -> Iterator[dict]:
    by_run: dict = {run_id: [] for run_id in run_ids}
    for row in (
        TraceEvent.objects.filter(run_id__in=run_ids)
        .order_by("run_id", "seq")
        .values_list(*EVENT_COLUMNS)
    ):
        by_run[row[0]].append(dict(zip(EVENT_COLUMNS, row, strict=True)))
    for run_id in run_ids:
        yield from by_run[run_id]


def review_rows(runs: QuerySet[Run]) -> Iterator[dict]:
    reviews = (
        Review.objects.filter(run__in=runs.order_by().values("pk"))
        .order_by("created_at", "id")
        .values_list(*(path for _, path in REVIEW_FIELDS))
        .iterator(chunk_size=CHUNK)
    )
    for row in reviews:
        yield dict(zip(REVIEW_COLUMNS, row, strict=True))


ROWS = {"runs": run_rows, "events": event_rows, "reviews": review_rows}


def _plain(value):
    """A value as JSON has it: times in ISO 8601, amounts as decimal strings."""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, uuid.UUID):
        return str(value)
    return value


# A spreadsheet runs a cell that starts with one of these as a formula: agent-written
# text must not become one (CSV injection). Such a cell gets a leading apostrophe.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    plain = _plain(value)
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return str(plain)


class _Line:
    """csv.writer's file: hands back what it was given, so each row becomes a chunk."""

    def write(self, text: str) -> str:
        return text


def csv_lines(columns: tuple[str, ...], rows: Iterable[dict]) -> Iterator[str]:
    writer = csv.writer(_Line())
    yield writer.writerow(columns)
    for row in rows:
        yield writer.writerow([_cell(row[c]) for c in columns])


def jsonl_lines(rows: Iterable[dict]) -> Iterator[str]:
    for row in rows:
        yield (
            json.dumps(
                {k: _plain(v) for k, v in row.items()}, ensure_ascii=False, separators=(",", ":")
            )
            + "\n"
        )


def export_lines(*, kind: str, fmt: str, runs: QuerySet[Run]) -> Iterator[str]:
    """The export of `kind` over `runs` (already limited to what the person may read)."""
    rows = ROWS[kind](runs)
    if fmt == "csv":
        return csv_lines(COLUMNS[kind], rows)
    return jsonl_lines(rows)
