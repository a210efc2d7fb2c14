"""The hashed event document is canonical JSON; the fast assembly must match it exactly."""

import json
from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from traces.chain import canonical_json, event_document, event_document_json

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
    from traces.services import submission_json

    redacted = {"input": input_, "tool_calls": tool_calls, "output": output, "proposal": proposal}
    parts = submission_json(redacted)
    assert parts.text == canonical_json(redacted)
    assert parts.input == canonical_json(input_)
    assert parts.tool_calls == (
        None if tool_calls is None else [canonical_json(c) for c in tool_calls]
    )
