"""Strict JSON for the gateway: everything that could hurt the store is refused here.

A body is refused with a clear 4xx when it is over the size limit, not UTF-8, not JSON,
uses NaN/Infinity, nests deeper than the limit, or holds strings PostgreSQL cannot store
(NUL characters, lone surrogates from `\\ud800`-style escapes).

Bodies are read by orjson (C, a fraction of the standard library's CPU on the gateway's
hot path). Whatever orjson refuses, and any body with a run of 19 or more digits (orjson
reads an integer beyond 64 bits as a float, losing digits), is read again by the
standard library's parser, which keeps such integers exact and says precisely what is
wrong; tests/traces/test_jsonbody.py holds the two paths to the same values and verdicts.
"""

import json
import math
import re
from typing import Any

import orjson

from ladder.errors import BadRequest, PayloadTooLarge


def _refuse_constant(name: str) -> Any:
    raise BadRequest(f"{name} is not valid JSON", code="invalid_json")


def _check_string(text: str) -> None:
    if "\x00" in text:
        raise BadRequest("strings may not contain NUL (\\u0000) characters", code="invalid_unicode")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise BadRequest(
            "strings may not contain lone UTF-16 surrogates", code="invalid_unicode"
        ) from None


def check_tree(value: Any, *, max_depth: int) -> None:
    """Walk without recursion: depth limit, finite numbers, every key and string storable."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict | list):
            if depth > max_depth:
                raise BadRequest(f"JSON nests deeper than {max_depth} levels", code="too_deep")
            if isinstance(node, dict):
                for key in node:
                    _check_string(key)
                children = node.values()
            else:
                children = node
            stack.extend((child, depth + 1) for child in children)
        elif isinstance(node, str):
            _check_string(node)
        elif isinstance(node, float) and not math.isfinite(node):
            raise BadRequest("numbers must be finite (1e400 overflows)", code="invalid_json")


def _finite_float(literal: str) -> float:
    value = float(literal)
    if not math.isfinite(value):
        raise BadRequest(f"numbers must be finite ({literal[:40]} overflows)", code="invalid_json")
    return value


def _needs_walk(body: bytes, max_depth: int) -> bool:
    """Whether the parsed tree could break a rule only a walk can see.

    Raw NUL or control characters are not valid JSON and unpaired surrogates are not
    valid UTF-8, so a bad string can only come from a `\\u0000` or `\\udXXX` escape;
    and a tree cannot nest deeper than its count of opening brackets. Bodies with neither
    (nearly every real one) skip the walk; the rest get it in full.
    """
    if body.count(b"{") + body.count(b"[") > max_depth:
        return True
    return b"\\u0000" in body or b"\\ud" in body or b"\\uD" in body


_LONG_DIGIT_RUN = re.compile(rb"[0-9]{19}")
_NOT_READ = object()


def _read_fast(body: bytes) -> Any:
    """The body as orjson reads it, or _NOT_READ when the standard parser must decide."""
    if _LONG_DIGIT_RUN.search(body) is not None:
        return _NOT_READ
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return _NOT_READ


def parse_json_body(body: bytes, *, max_bytes: int, max_depth: int) -> Any:
    if len(body) > max_bytes:
        raise PayloadTooLarge(f"request body is over {max_bytes} bytes")
    value = _read_fast(body)
    if value is _NOT_READ:
        return read_json_strictly(body, max_depth=max_depth)
    if _needs_walk(body, max_depth):
        check_tree(value, max_depth=max_depth)
    return value


def read_json_strictly(body: bytes, *, max_depth: int) -> Any:
    """The standard library's reading of a body, with every rule and a precise error;
    parse_json_body's answer for anything orjson does not read."""
    if not body.strip():
        raise BadRequest("request body is empty; send a JSON object", code="invalid_json")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadRequest(
            f"request body is not valid UTF-8 (byte {exc.start})", code="invalid_unicode"
        ) from None
    try:
        value = json.loads(text, parse_constant=_refuse_constant, parse_float=_finite_float)
    except json.JSONDecodeError as exc:
        raise BadRequest(
            f"malformed JSON: {exc.msg} at line {exc.lineno} column {exc.colno}",
            code="invalid_json",
        ) from None
    except RecursionError:
        raise BadRequest(f"JSON nests deeper than {max_depth} levels", code="too_deep") from None
    except ValueError as exc:  # e.g. an integer of more than 4300 digits
        raise BadRequest(f"JSON value cannot be read: {exc}", code="invalid_json") from None
    if _needs_walk(body, max_depth):
        check_tree(value, max_depth=max_depth)
    return value
