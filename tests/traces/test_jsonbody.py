import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ladder.errors import BadRequest, PayloadTooLarge
from traces.jsonbody import check_tree, parse_json_body


def parse(raw: bytes, **kw):
    return parse_json_body(raw, max_bytes=kw.get("max_bytes", 1000), max_depth=kw.get("depth", 4))


def test_valid_json_is_returned():
    assert parse(b'{"a": [1, {"b": "c"}]}') == {"a": [1, {"b": "c"}]}


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        (b"", "invalid_json"),
        (b"{", "invalid_json"),
        (b'{"a": Infinity}', "invalid_json"),
        (b'{"a": -1e999}', "invalid_json"),
        (b'{"a": "\xc3\x28"}', "invalid_unicode"),
        (b'{"\\udc00": 1}', "invalid_unicode"),
        (b'{"a": "\\u0000"}', "invalid_unicode"),
        (b"[[[[[1]]]]]", "too_deep"),
        (b'{"a": {"b": {"c": {"d": {}}}}}', "too_deep"),
    ],
)
def test_unstorable_or_malformed_bodies_are_refused(raw, code):
    with pytest.raises(BadRequest) as err:
        parse(raw)
    assert err.value.code == code


def test_depth_at_the_limit_passes():
    assert parse(b"[[[[1]]]]") == [[[[1]]]]


def test_size_is_checked_before_parsing():
    with pytest.raises(PayloadTooLarge):
        parse(b'{"a": "' + b"x" * 2000 + b'"}')


def test_an_integer_too_long_to_read_is_a_clear_400():
    with pytest.raises(BadRequest) as err:
        parse(b'{"a": ' + b"9" * 5000 + b"}", max_bytes=10_000)
    assert err.value.code == "invalid_json"


# Strings that stress the checks: NUL, lone and paired surrogates, backslashes that look
# like escapes, brackets inside strings.
_tricky = st.sampled_from(["\x00", "\ud800", "\udfff", "\U0001f600", "\\u0000", "\\ud800", "[{"])
_text = st.lists(st.one_of(_tricky, st.text(max_size=4)), max_size=4).map("".join)
_leaf = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), _text)
_tree = st.recursive(
    _leaf,
    lambda kids: st.lists(kids, max_size=3) | st.dictionaries(_text, kids, max_size=3),
    max_leaves=12,
)


def _no_constants(name):
    raise BadRequest(name, code="invalid_json")


def _reference(raw: bytes, depth: int):
    """The rules applied the slow way: parse, then always walk the whole tree."""
    try:
        value = json.loads(raw.decode("utf-8"), parse_constant=_no_constants)
        check_tree(value, max_depth=depth)
    except BadRequest as exc:
        return exc.code
    return "ok"


@settings(max_examples=400, deadline=None)
@given(tree=_tree, ascii_only=st.booleans(), depth=st.integers(1, 6))
def test_the_fast_path_refuses_exactly_what_a_full_walk_refuses(tree, ascii_only, depth):
    try:
        raw = json.dumps(tree, ensure_ascii=ascii_only).encode("utf-8")
    except UnicodeEncodeError:  # a raw lone surrogate cannot even be sent as UTF-8
        return
    try:
        parse(raw, max_bytes=10**6, depth=depth)
        got = "ok"
    except BadRequest as exc:
        got = exc.code
    # A body with two problems may be refused for either one first: compare the verdict.
    assert (got == "ok") == (_reference(raw, depth) == "ok")


# -- orjson reads, the standard library decides the rest ----------------------------------

from traces.jsonbody import read_json_strictly  # noqa: E402

_number = st.one_of(
    st.integers(),  # beyond 64 bits too: orjson would turn those into floats
    st.integers(min_value=-(2**63), max_value=2**64),
    st.floats(allow_nan=False, allow_infinity=False),
    st.floats(allow_nan=False, allow_infinity=False, width=32),
)
_any_leaf = st.one_of(st.none(), st.booleans(), _number, _text)
_any_tree = st.recursive(
    _any_leaf,
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(_text, kids, max_size=4),
    max_leaves=16,
)


def _typed(value):
    """`value` with every number tagged by its type and exact repr (1 != 1.0, -0.0 != 0.0)."""
    if isinstance(value, dict):
        return {k: _typed(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_typed(v) for v in value]
    if isinstance(value, bool | int | float):
        return (type(value).__name__, repr(value))
    return value


def _verdict(read, raw, depth):
    try:
        return "ok", _typed(read(raw, depth))
    except BadRequest as exc:
        return "refused", exc.code


def _both_ways(raw: bytes, depth: int = 64):
    fast = _verdict(lambda r, d: parse_json_body(r, max_bytes=10**7, max_depth=d), raw, depth)
    strict = _verdict(lambda r, d: read_json_strictly(r, max_depth=d), raw, depth)
    return fast, strict


@settings(max_examples=500, deadline=None)
@given(
    tree=_any_tree,
    ascii_only=st.booleans(),
    indent=st.sampled_from([None, 0, 2]),
    depth=st.integers(1, 8),
)
def test_orjson_reads_every_body_exactly_as_the_standard_parser(tree, ascii_only, indent, depth):
    try:
        raw = json.dumps(tree, ensure_ascii=ascii_only, indent=indent).encode("utf-8")
    except UnicodeEncodeError:
        return
    fast, strict = _both_ways(raw, depth)
    if strict[0] == "ok":
        assert fast == strict
    else:  # refused either way (a body with two problems may name either first)
        assert fast[0] == "refused"


@settings(max_examples=500, deadline=None)
@given(tree=_any_tree, cut=st.integers(0, 200), junk=st.binary(max_size=6))
def test_broken_bodies_are_refused_as_the_standard_parser_refuses_them(tree, cut, junk):
    try:
        raw = json.dumps(tree, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return
    broken = raw[: cut % (len(raw) + 1)] + junk
    fast, strict = _both_ways(broken)
    assert fast == strict


@pytest.mark.parametrize(
    "raw",
    [
        b"12345678901234567890123",  # beyond 64 bits: exact, not a float
        b'{"n": -9223372036854775809, "m": 18446744073709551616}',
        b'{"n": 1e400}',
        b'{"n": 1e-400}',
        b'{"a": 1, "a": 2}',
        b"\xef\xbb\xbf{}",  # a UTF-8 byte order mark
        b"  ",
        b'"\\ud83d\\ude00"',  # a paired surrogate escape is one character
        b"[" * 2000 + b"]" * 2000,
        b'{"iban": "DE89370400440532013000"}',  # a long digit run inside a string
    ],
)
def test_edge_bodies_read_alike(raw):
    fast, strict = _both_ways(raw)
    assert fast == strict
