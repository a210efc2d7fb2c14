"""The tamper-evident chain: hash = sha256(prev_hash ‖ canonical JSON of the event).

The canonical JSON is stored as text, byte for byte what was hashed: a database's own
JSON type may reorder keys or rewrite numbers (jsonb turns 1e+20 into an integer), which
would make an intact chain look tampered. The document names the run and the position,
so an event cannot be moved to another run or reordered without breaking the chain.
"""

import hashlib
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

GENESIS = "0" * 64


# json.dumps() with any non-default option builds a new encoder on every call; these are
# built once (encoders keep no state between calls, so sharing them is safe).
_CANONICAL = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
).encode
_TEXT = json.JSONEncoder(ensure_ascii=False).encode


def canonical_json(value: Any) -> str:
    return _CANONICAL(value)


# orjson writes numbers as the standard library does except floats below 1e-4 in
# magnitude ("1e-7" for "1e-07", "0.000015" for "1.5e-05"); output holding such a number
# (or, rarely, a string that looks like one after a ':' ',' or '[') is made again the
# standard way.
_ORJSON_MAY_DIFFER = re.compile(rb"(?:^|[:,\[])-?(?:[0-9]+(?:\.[0-9]+)?e-|0\.0000)").search


def canonical_json_of_parsed(value: Any) -> str:
    """canonical_json(value), byte for byte, at a fraction of the CPU, for a value read
    from JSON (and redacted): only dicts, lists, str, int, finite float, bool, None.

    orjson serialises; whatever it refuses (integers beyond 64 bits, lone surrogates,
    keys that are not strings) or may write differently goes to canonical_json. It
    writes NaN and Infinity as null where canonical_json refuses them, hence the
    precondition: parsed bodies cannot hold them (traces/jsonbody.py, and the API's
    float fields refuse them). tests/traces/test_chain_format.py checks the two agree.
    """
    try:
        data = orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    except (orjson.JSONEncodeError, TypeError):
        return _CANONICAL(value)
    if _ORJSON_MAY_DIFFER(data) is not None:
        return _CANONICAL(value)
    return data.decode()


def event_document(
    *, run_id: str, seq: int, type: str, payload: Any, actor: str, at: datetime
) -> str:
    return event_document_json(
        run_id=run_id, seq=seq, type=type, payload_json=canonical_json(payload), actor=actor, at=at
    )


def event_document_json(
    *, run_id: str, seq: int, type: str, payload_json: str, actor: str, at: datetime
) -> str:
    """The canonical JSON of an event around a payload already in canonical JSON.

    Byte for byte `canonical_json({"actor", "at", "payload", "run", "seq", "type"})`
    (keys in sorted order; tests/traces/test_chain.py checks the two agree on arbitrary
    values), assembled around the payload so the gateway serialises each part of a
    submission once for both the request hash and the events.
    """
    return EventFrame(run_id, at).document(
        seq=seq, type=type, payload_json=payload_json, actor=actor
    )


class EventFrame:
    """What the events of one run written at one moment share, encoded once: their
    documents differ only in seq, type, actor and payload."""

    __slots__ = ("_at", "_run")

    def __init__(self, run_id: str, at: datetime):
        self._run = _text(str(run_id))
        self._at = _text(at.isoformat(timespec="microseconds"))

    def document(self, *, seq: int, type: str, payload_json: str, actor: str) -> str:
        return (
            f'{{"actor":{_text(actor)},"at":{self._at},"payload":{payload_json},'
            f'"run":{self._run},"seq":{int(seq)},"type":{_text(type)}}}'
        )


def _text(value: str) -> str:
    return _TEXT(value)


def link_hash(prev_hash: str, document: str) -> str:
    return hashlib.sha256((prev_hash + document).encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class ChainProblem:
    seq: int | None
    problem: str


def verify_chain(
    run_id: str, events: Iterable[dict], *, head: str = "", length: int = -1
) -> list[ChainProblem]:
    """Return the problems in one run's chain (empty when intact).

    `events` are dicts with seq, type, document, prev_hash, hash, in seq order.
    `head`/`length` are what the run row says the chain ends with, so a deleted tail is
    caught too.
    """
    problems: list[ChainProblem] = []
    prev = GENESIS
    expected_seq = 1
    count = 0
    for ev in events:
        count += 1
        seq = ev["seq"]
        if seq != expected_seq:
            problems.append(ChainProblem(seq, f"missing link: expected seq {expected_seq}"))
        if ev["prev_hash"] != prev:
            problems.append(ChainProblem(seq, "prev_hash does not match the previous hash"))
        if link_hash(ev["prev_hash"], ev["document"]) != ev["hash"]:
            problems.append(ChainProblem(seq, "content does not match its hash"))
        else:
            try:
                doc = json.loads(ev["document"])
            except ValueError:
                doc = {}
            if (doc.get("run"), doc.get("seq"), doc.get("type")) != (
                str(run_id),
                seq,
                ev["type"],
            ):
                problems.append(ChainProblem(seq, "columns disagree with the hashed document"))
        prev = ev["hash"]
        expected_seq = seq + 1
    if length >= 0 and count != length:
        problems.append(ChainProblem(None, f"run records {length} events, trace has {count}"))
    if head and count and prev != head:
        problems.append(ChainProblem(None, "last event is not the run's recorded head"))
    return problems
