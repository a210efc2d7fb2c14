"""The hashed event document is canonical JSON; the fast assembly must match it exactly."""

import json
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from traces.chain import (
    canonical_json,
    canonical_json_of_parsed,
    event_document,
    event_document_json,
)

_text = st.text(max_size=12)
_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | _text,
    lambda kids: st.lists(kids, max_size=3) | st.dictionaries(_text, kids, max_size=3),
    max_leaves=10,
)


@settings(max_examples=300, deadline=None)
@given(
    payload=_json,
    actor=_text,
    type_=_text,
    seq=st.integers(0, 10**6),
    run_id=st.uuids(),
    at=st.datetimes(timezones=st.just(UTC)),
)
def test_the_assembled_document_is_the_canonical_json_of_the_event(
    payload, actor, type_, seq, run_id, at
):
    expected = canonical_json(
        {
            "run": str(run_id),
            "seq": seq,
            "type": type_,
            "payload": payload,
            "actor": actor,
            "at": at.isoformat(timespec="microseconds"),
        }
    )
    assembled = event_document_json(
        run_id=str(run_id),
        seq=seq,
        type=type_,
        payload_json=canonical_json(payload),
        actor=actor,
        at=at,
    )
    assert assembled == expected
    assert (
        event_document(run_id=str(run_id), seq=seq, type=type_, payload=payload, actor=actor, at=at)
        == expected
    )
    assert json.loads(assembled)["payload"] == json.loads(canonical_json(payload))


def test_a_known_document_keeps_its_exact_bytes():
    # Pinned: stored chains were hashed over exactly this text.
    doc = event_document(
        run_id="r-1",
        seq=2,
        type="tool_call",
        payload={"b": [1, 2.5], "a": "é\\"},
        actor="agent:lat_x",
        at=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
    )
    assert doc == (
        '{"actor":"agent:lat_x","at":"2026-01-02T03:04:05.000000+00:00",'
        '"payload":{"a":"é\\\\","b":[1,2.5]},"run":"r-1","seq":2,"type":"tool_call"}'
    )


@settings(max_examples=300, deadline=None)
@given(
    input_=_json,
    output=_json,
    proposal=st.none() | st.dictionaries(_text, _json, max_size=3),
    tool_calls=st.none() | st.lists(st.dictionaries(_text, _json, max_size=3), max_size=3),
)
def test_a_submission_serialised_in_parts_is_its_canonical_json(
    input_, output, proposal, tool_calls
):
    from traces.services.gateway import submission_json

    redacted = {"input": input_, "tool_calls": tool_calls, "output": output, "proposal": proposal}
    parts = submission_json(redacted)
    assert parts.text == canonical_json(redacted)
    assert parts.input == canonical_json(input_)
    assert parts.tool_calls == (
        None if tool_calls is None else [canonical_json(c) for c in tool_calls]
    )


# -- the gateway's encoder: orjson where it writes what canonical_json writes -------------

_tricky_text = st.sampled_from(
    [
        "",
        "\x00\x1f\x7f",
        '"\\/',
        "\u2028\u2029",
        "é😀",
        "\ud800",
        "1e-7",
        ":0.00001,",
        "<EMAIL:3e5f1a2b>",
    ]
)
_float = st.floats(allow_nan=False, allow_infinity=False) | st.sampled_from(
    [1.5e-05, 1e-07, 0.0001, 9.99e-05, -2.5e-10, 1e16, 1e-320, -0.0, 0.1, 12.5]
)
_parsed = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()  # beyond 64 bits too
    | _float
    | _text
    | _tricky_text,
    lambda kids: (
        st.lists(kids, max_size=4) | st.dictionaries(_text | _tricky_text, kids, max_size=4)
    ),
    max_leaves=16,
)


@settings(max_examples=1000, deadline=None)
@given(value=_parsed)
def test_the_gateways_encoder_writes_exactly_canonical_json(value):
    assert canonical_json_of_parsed(value) == canonical_json(value)


@pytest.mark.parametrize(
    "value",
    [
        1.5e-05,  # a bare small float: nothing before it
        [1e-07, {"a": -3.2e-9}],
        {"n": 2**64, "m": -(2**63) - 1},
        {1: "a key that is not a string"},
        {"s": "\ud800"},
        {"z": 1, "a": {"é": 1, "e": 2, "Z": 3}},
    ],
)
def test_values_orjson_would_write_differently_or_refuse_are_written_canonically(value):
    assert canonical_json_of_parsed(value) == canonical_json(value)
