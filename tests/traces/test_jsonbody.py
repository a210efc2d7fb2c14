import pytest

from ladder.errors import BadRequest, PayloadTooLarge
from traces.jsonbody import parse_json_body


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
