"""Appending to a run's hash chain (the format is traces.chain's). Every writer holds the
run's row lock, or created the run in the same statement, so the chain never forks."""

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

from django.conf import settings
from django.db.models import Func, IntegerField, Sum
from django.utils import timezone

from ladder.errors import Conflict, PayloadTooLarge
from traces.chain import GENESIS, EventFrame, canonical_json, link_hash
from traces.models import Run, TraceEvent
from traces.selectors import run_replay


class OctetLength(Func):
    """A text's size in UTF-8 bytes (PostgreSQL octet_length; SQLite counts a blob)."""

    function = "OCTET_LENGTH"
    output_field = IntegerField()

    def as_sqlite(self, compiler, connection, **extra):
        return self.as_sql(compiler, connection, template="LENGTH(CAST(%(expressions)s AS BLOB))")


@dataclass(frozen=True)
class EventSpec:
    type: str
    payload: Any
    actor: str
    # The payload's canonical JSON when the caller already has it (the gateway does).
    payload_json: str | None = None


class Link(NamedTuple):
    """One computed chain link, before it becomes a row."""

    seq: int
    type: str
    actor: str
    document: str
    prev_hash: str
    hash: str


def chain_links(
    *, run_id: uuid.UUID, specs: list[EventSpec], prev_hash: str, start_seq: int, at: datetime
) -> list[Link]:
    links = []
    frame = EventFrame(str(run_id), at)
    for offset, spec in enumerate(specs):
        seq = start_seq + offset
        payload_json = spec.payload_json
        if payload_json is None:
            payload_json = canonical_json(spec.payload)
        document = frame.document(
            seq=seq, type=spec.type, payload_json=payload_json, actor=spec.actor
        )
        digest = link_hash(prev_hash, document)
        links.append(Link(seq, spec.type, spec.actor, document, prev_hash, digest))
        prev_hash = digest
    return links


def _build_events(
    *, run_id: uuid.UUID, specs: list[EventSpec], prev_hash: str, start_seq: int, at: datetime
) -> list[TraceEvent]:
    return [
        TraceEvent(run_id=run_id, at=at, **link._asdict())
        for link in chain_links(
            run_id=run_id, specs=specs, prev_hash=prev_hash, start_seq=start_seq, at=at
        )
    ]


def trace_append(
    *, run: Run, specs: list[EventSpec], bump_version: bool = False, bounded: bool = False
) -> list[TraceEvent]:
    """Append events to a run's chain. The caller holds the run's row lock (or created it
    in this transaction): the lock is what keeps two appends from forking the chain.
    `bounded`: an agent's write, refused when the run's trace would outgrow its limits."""
    events = _build_events(
        run_id=run.id,
        specs=specs,
        prev_hash=run.trace_head or GENESIS,
        start_seq=run.trace_length + 1,
        at=timezone.now(),
    )
    if bounded:
        _check_trace_room(run=run, events=events)
    TraceEvent.objects.bulk_create(events)
    run.trace_head = events[-1].hash
    run.trace_length += len(events)
    fields = ["trace_head", "trace_length", "updated_at"]
    if bump_version:
        run.version += 1
        fields.append("version")
    run.save(update_fields=fields)
    return events


def _check_trace_room(*, run: Run, events: list[TraceEvent]) -> None:
    """Bound what an agent may add to one run's trace (events and stored bytes), so that
    no run, page or replay grows without limit. Only agents' writes are bounded: the
    gateway's own events (reviews, policy, execution) are few per run and always kept."""
    max_events = settings.LADDER_MAX_RUN_EVENTS
    if run.trace_length + len(events) > max_events:
        raise Conflict(
            f"this run's trace is full: {run.trace_length} events, at most {max_events} per run "
            "(LADDER_MAX_RUN_EVENTS); nothing was added",
            code="trace_full",
        )
    max_bytes = settings.LADDER_MAX_RUN_TRACE_BYTES
    adding = sum(len(ev.document.encode("utf-8")) for ev in events)
    stored = (
        TraceEvent.objects.filter(run_id=run.id).aggregate(n=Sum(OctetLength("document")))["n"] or 0
    )
    if stored + adding > max_bytes:
        raise PayloadTooLarge(
            f"this run's trace would hold {stored + adding} bytes, at most {max_bytes} per run "
            "(LADDER_MAX_RUN_TRACE_BYTES); nothing was added",
            code="trace_too_large",
        )


def run_replay_mark(*, run: Run) -> bool:
    """Check, once its execution is over, that the run's replay is complete and its
    chain verified, and keep the answer in `replay_ok` for the replay-coverage gate
    (docs/gates.md). recompute_gates checks any finished run left unchecked."""
    result = run_replay(run=run)
    run.replay_ok = bool(result["complete"] and result["verified"])
    Run.objects.filter(pk=run.pk).update(replay_ok=run.replay_ok)
    return run.replay_ok
