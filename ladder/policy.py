"""Policy envelopes for L4/L5: parse, validate, render, compile and evaluate.

Pure functions over plain data (no database, no settings), so the gateway can compile a
workflow's policy once per version and evaluate every proposal in a few microseconds.

    policy = parse_policy(document, actions={"refund.issue": ("amount", "currency")})
    compiled = compile_policy(policy, actions={"refund.issue": ("amount", "currency")})
    keys = rate_keys(compiled, proposal)          # which counters the caller must read
    decision = evaluate(compiled, proposal, Counters(rates={...}, seen={...}))

docs/policy.md describes the document format, the evaluation order and every rule kind.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from decimal import Decimal, InvalidOperation
from typing import Any, NamedTuple

from ladder.errors import Unprocessable

KINDS = ("allow_actions", "value_cap", "flag", "rate_limit", "condition", "first_seen")
CONTROLS = (
    "rbac",
    "value_cap",
    "rate_limit",
    "kms_scoped_credential",
    "allowed_tools",
    "data_scope",
)
THENS = ("escalate", "deny")
# No regular-expression operator on purpose: a pattern written in a policy editor would run
# on every proposal, and a backtracking pattern is a denial of service on the gateway.
OPS = ("eq", "ne", "in", "not_in", "lt", "lte", "gt", "gte", "exists", "missing")
_ORDER_OPS = ("lt", "lte", "gt", "gte")
_SET_OPS = ("in", "not_in")
_PRESENCE_OPS = ("exists", "missing")

ALLOW = "allow"
ESCALATE = "escalate"
DENY = "deny"

# Fields every rule may carry, then the fields of each kind (required, optional).
_COMMON = {"id", "kind", "control", "then", "note"}
_FIELDS: dict[str, tuple[set[str], set[str]]] = {
    "allow_actions": ({"actions"}, set()),
    "value_cap": ({"action", "max"}, {"currency"}),
    "flag": ({"flag"}, {"action"}),
    "rate_limit": (
        {"action", "window_seconds", "per"},
        {"max_count", "max_value", "currency"},
    ),
    "condition": ({"when"}, {"action"}),
    "first_seen": ({"per"}, {"action"}),
}
_MAX_RULES = 1000
_MAX_ID = 100
_MAX_NOTE = 500

# An action's (value_param, currency_param), as its ActionType declares them ("" = none).
ActionValue = tuple[str, str]


# ---------------------------------------------------------------------------------------
# The parsed document


@dataclass(frozen=True)
class AllowActions:
    id: str
    control: str
    actions: tuple[str, ...]
    kind: str = "allow_actions"
    then: str = DENY
    action: str = ""
    note: str = ""


@dataclass(frozen=True)
class ValueCap:
    id: str
    control: str
    then: str
    action: str
    max: Decimal
    currency: str = ""
    kind: str = "value_cap"
    note: str = ""


@dataclass(frozen=True)
class Flag:
    id: str
    control: str
    then: str
    flag: str
    action: str = ""
    kind: str = "flag"
    note: str = ""


@dataclass(frozen=True)
class RateLimit:
    id: str
    control: str
    then: str
    action: str
    window_seconds: int
    per: str  # "workflow" or "param:<name>"
    max_count: int | None = None
    max_value: Decimal | None = None
    currency: str = ""
    kind: str = "rate_limit"
    note: str = ""


@dataclass(frozen=True)
class Condition:
    id: str
    control: str
    then: str
    param: str
    op: str
    value: Any = None  # a scalar, a tuple of scalars (in/not_in) or a Decimal (lt..gte)
    action: str = ""
    kind: str = "condition"
    note: str = ""


@dataclass(frozen=True)
class FirstSeen:
    id: str
    control: str
    then: str
    per: str  # "param:<name>"
    action: str = ""
    kind: str = "first_seen"
    note: str = ""


Rule = AllowActions | ValueCap | Flag | RateLimit | Condition | FirstSeen


@dataclass(frozen=True)
class Policy:
    audit_sample_rate: float
    rules: tuple[Rule, ...]


@dataclass(frozen=True)
class Counters:
    """What the caller read for one proposal, so that evaluation stays pure.

    `rates[rule_id]` = (count, total value) of actions this policy ALLOWED in the rule's
    window for the proposal's subject (see `rate_keys`); `seen[rule_id]` = whether the
    proposal's subject was seen before, for `first_seen` rules. A counter the caller did
    not supply makes its rule fire: a policy that cannot count does not allow.
    """

    rates: Mapping[str, tuple[int, Decimal | int]] = field(default_factory=dict)
    seen: Mapping[str, bool] = field(default_factory=dict)


NO_COUNTERS = Counters()


class PolicyDecision(NamedTuple):
    # A NamedTuple rather than a frozen dataclass: built on every evaluation that fires a
    # rule, and a frozen dataclass's __init__ costs about a microsecond.
    outcome: str  # "allow" | "escalate" | "deny"
    rules_fired: tuple[str, ...] = ()
    reasons: tuple[str, ...] = ()


# ---------------------------------------------------------------------------------------
# Parsing and validation


def to_decimal(raw: Any) -> Decimal | None:
    """A finite Decimal from a number or a decimal string, else None (bools are not numbers).

    Floats go through `repr()`, i.e. the shortest text that reads back as the same float,
    so 200.004999999 stays 200.004999999 and is never rounded to 200.00.
    """
    # Dispatch on the exact type: this runs on every evaluation, and `type() is` is several
    # times cheaper than isinstance() against a union (bool is its own type, so excluded).
    kind = type(raw)
    if kind is str:
        try:
            value = Decimal(raw)
        except (InvalidOperation, ValueError):
            return None
    elif kind is int:
        return Decimal(raw)
    elif kind is float:
        value = Decimal(repr(raw))
    elif kind is Decimal:
        value = raw
    else:
        return None
    return value if value.is_finite() else None


_RANGE_PROBLEM = "must have at most 18 digits before the decimal point and 12 after"


def _in_range(value: Decimal) -> bool:
    # Bounds in a policy are rendered as text ("1,500.00"): "1e999999999" would be a
    # billion-digit sentence. No real cap or threshold is near these limits.
    return value.is_zero() or (value.adjusted() < 18 and value.as_tuple().exponent >= -12)


def _is_scalar(value: Any) -> bool:
    if isinstance(value, float):
        return to_decimal(value) is not None  # NaN and infinities are not JSON values
    return value is None or isinstance(value, str | int | bool)


class _Problems:
    def __init__(self) -> None:
        self.items: list[dict[str, str]] = []

    def add(self, rule: str, field_name: str, problem: str) -> None:
        self.items.append({"rule": rule, "field": field_name, "problem": problem})


def parse_policy(document: Any, *, actions: Mapping[str, ActionValue] | Iterable[str]) -> Policy:
    """Validate a policy document against the workflow's action types; return a `Policy`.

    `actions` is the workflow's action names, or a mapping name → (value_param,
    currency_param); with the mapping, caps and value limits on an action that declares no
    value (or currency) parameter are refused too. Every problem is named at once:
    `Unprocessable(code="invalid_policy", details=[{rule, field, problem}, ...])`.
    """
    value_params: Mapping[str, ActionValue] | None
    if isinstance(actions, Mapping):
        value_params = actions
        known = set(actions)
    else:
        value_params = None
        known = set(actions)
    problems = _Problems()
    if not isinstance(document, dict):
        problems.add("", "", "the policy must be a JSON object")
        _refuse(problems)
    for key in sorted(set(document) - {"audit_sample_rate", "rules"}):
        problems.add("", key, "unknown field")
    rate = document.get("audit_sample_rate")
    if "audit_sample_rate" not in document:
        problems.add("", "audit_sample_rate", "is required")
    elif isinstance(rate, bool) or not isinstance(rate, int | float) or not 0 <= rate <= 1:
        problems.add("", "audit_sample_rate", "must be a number from 0 to 1")
    raw_rules = document.get("rules")
    rules: list[Rule] = []
    if not isinstance(raw_rules, list):
        problems.add("", "rules", "must be a list of rules")
        raw_rules = []
    elif len(raw_rules) > _MAX_RULES:
        problems.add("", "rules", f"at most {_MAX_RULES} rules")
        raw_rules = []
    seen_ids: set[str] = set()
    for index, raw in enumerate(raw_rules):
        rule = _parse_rule(raw, index, known, value_params, seen_ids, problems)
        if rule is not None:
            rules.append(rule)
    if isinstance(document.get("rules"), list) and not any(
        isinstance(r, dict) and r.get("kind") == "allow_actions" for r in raw_rules
    ):
        # Fail closed: a policy that never says what it allows would allow everything.
        problems.add("", "rules", "a policy needs an allow_actions rule naming what it allows")
    _refuse(problems)
    return Policy(audit_sample_rate=float(rate), rules=tuple(rules))


def _refuse(problems: _Problems) -> None:
    if not problems.items:
        return
    summary = "; ".join(
        f"{p['rule'] or 'policy'}.{p['field']}: {p['problem']}"
        if p["field"]
        else f"{p['rule'] or 'policy'}: {p['problem']}"
        for p in problems.items
    )
    raise Unprocessable(
        f"invalid policy: {summary}",
        code="invalid_policy",
        details=problems.items,  # type: ignore[arg-type]  # a list: one entry per problem
    )


def _parse_rule(
    raw: Any,
    index: int,
    known: set[str],
    value_params: Mapping[str, ActionValue] | None,
    seen_ids: set[str],
    problems: _Problems,
) -> Rule | None:
    if not isinstance(raw, dict):
        problems.add(f"#{index + 1}", "", "a rule must be a JSON object")
        return None
    rid = raw.get("id")
    if not isinstance(rid, str) or not rid.strip() or len(rid) > _MAX_ID:
        name = f"#{index + 1}"
        problems.add(name, "id", f"is required: a non-empty string of at most {_MAX_ID} characters")
        rid = name
    elif rid in seen_ids:
        problems.add(rid, "id", "duplicate rule id")
    else:
        seen_ids.add(rid)
    before = len(problems.items)

    kind = raw.get("kind")
    if not isinstance(kind, str) or kind not in _FIELDS:
        problems.add(rid, "kind", f"unknown kind {kind!r} (known: {', '.join(KINDS)})")
        return None
    required, optional = _FIELDS[kind]
    for key in sorted(set(raw) - _COMMON - required - optional):
        problems.add(rid, key, "unknown field")
    for key in sorted(required - set(raw)):
        problems.add(rid, key, "is required")

    control = raw.get("control")
    if "control" not in raw:
        problems.add(rid, "control", f"is required (one of: {', '.join(CONTROLS)})")
    elif control not in CONTROLS:
        problems.add(rid, "control", f"unknown control {control!r} (known: {', '.join(CONTROLS)})")
    then = raw.get("then", DENY if kind == "allow_actions" else None)
    if kind == "allow_actions":
        if then != DENY:
            problems.add(rid, "then", "an action outside allow_actions is always denied")
    elif "then" not in raw:
        problems.add(rid, "then", "is required (escalate or deny)")
    elif then not in THENS:
        problems.add(rid, "then", f"unknown then {then!r} (known: escalate, deny)")

    action = raw.get("action", "")
    if "action" in raw and (not isinstance(action, str) or action not in known):
        problems.add(rid, "action", f"{action!r} is not an action type of this workflow")
        action = ""

    def decimal_field(name: str) -> Decimal | None:
        if name not in raw:
            return None
        value = to_decimal(raw[name])
        if value is None:
            problems.add(rid, name, "must be a decimal number or a decimal string")
        elif value < 0:
            problems.add(rid, name, "must not be negative")
        elif not _in_range(value):
            problems.add(rid, name, _RANGE_PROBLEM)
        return value

    def currency_field() -> str:
        currency = raw.get("currency", "")
        if not isinstance(currency, str) or ("currency" in raw and not currency.strip()):
            problems.add(rid, "currency", "must be a currency code such as EUR")
            return ""
        currency = currency.strip().upper()
        if (
            currency
            and value_params is not None
            and action in value_params
            and not value_params[action][1]
        ):
            problems.add(rid, "currency", f"{action} declares no currency parameter")
        return currency

    def needs_value() -> None:
        if value_params is not None and action in value_params and not value_params[action][0]:
            problems.add(rid, "action", f"{action} declares no value parameter")

    def per_field(*, allow_workflow: bool) -> str:
        per = raw.get("per")
        if "per" not in raw:
            return ""
        if per == "workflow" and allow_workflow:
            return per
        if isinstance(per, str) and per.startswith("param:") and per[6:].strip():
            return per
        expected = "'workflow' or 'param:<name>'" if allow_workflow else "'param:<name>'"
        problems.add(rid, "per", f"must be {expected}")
        return ""

    note = raw.get("note", "")
    if not isinstance(note, str) or len(note) > _MAX_NOTE:
        problems.add(rid, "note", f"must be text of at most {_MAX_NOTE} characters")
        note = ""

    rule: Rule | None = None
    if kind == "allow_actions":
        names = raw.get("actions")
        if "actions" in raw:
            if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
                problems.add(rid, "actions", "must be a list of action names")
                names = []
            for name in names:
                if name not in known:
                    problems.add(rid, "actions", f"{name!r} is not an action type of this workflow")
        rule = AllowActions(id=rid, control=control, actions=tuple(names or ()))
    elif kind == "value_cap":
        cap = decimal_field("max")
        currency = currency_field()
        if "max" in raw:
            needs_value()
        rule = ValueCap(
            id=rid,
            control=control,
            then=then,
            action=action,
            max=cap if cap is not None else Decimal(0),
            currency=currency,
        )
    elif kind == "flag":
        flag = raw.get("flag")
        if "flag" in raw and (not isinstance(flag, str) or not flag.strip()):
            problems.add(rid, "flag", "must be a flag name")
        rule = Flag(id=rid, control=control, then=then, flag=str(flag), action=action)
    elif kind == "rate_limit":
        window = raw.get("window_seconds")
        if "window_seconds" in raw and (
            isinstance(window, bool) or not isinstance(window, int) or window <= 0
        ):
            problems.add(rid, "window_seconds", "must be a whole number of seconds above 0")
        max_count = raw.get("max_count")
        if "max_count" in raw and (
            isinstance(max_count, bool) or not isinstance(max_count, int) or max_count < 0
        ):
            problems.add(rid, "max_count", "must be a whole number, 0 or more")
        max_value = decimal_field("max_value")
        if "max_count" not in raw and "max_value" not in raw:
            problems.add(rid, "max_count", "a rate limit needs max_count, max_value or both")
        if "max_value" in raw:
            needs_value()
        currency = currency_field()
        per = per_field(allow_workflow=True)
        rule = RateLimit(
            id=rid,
            control=control,
            then=then,
            action=action,
            window_seconds=window if isinstance(window, int) else 0,
            per=per,
            max_count=max_count if isinstance(max_count, int) else None,
            max_value=max_value,
            currency=currency,
        )
    elif kind == "condition":
        rule = _parse_condition(raw, rid, control, then, action, problems)
    elif kind == "first_seen":
        per = per_field(allow_workflow=False)
        rule = FirstSeen(id=rid, control=control, then=then, per=per, action=action)
    if rule is None or len(problems.items) != before:
        return None
    # Kept with the rule (policy_document), so the reason for a rule survives each save.
    return replace(rule, note=note.strip()) if note.strip() else rule


def _parse_condition(
    raw: dict, rid: str, control: str, then: str, action: str, problems: _Problems
) -> Condition | None:
    when = raw.get("when")
    if "when" not in raw:
        return None
    if not isinstance(when, dict):
        problems.add(rid, "when", "must be an object {param, op, value}")
        return None
    for key in sorted(set(when) - {"param", "op", "value"}):
        problems.add(rid, f"when.{key}", "unknown field")
    param = when.get("param")
    if not isinstance(param, str) or not param.strip():
        problems.add(rid, "when.param", "is required: the name of a parameter")
    op = when.get("op")
    if op not in OPS:
        problems.add(rid, "when.op", f"unknown op {op!r} (known: {', '.join(OPS)})")
        return None
    value = when.get("value")
    if op in _PRESENCE_OPS:
        if "value" in when:
            problems.add(rid, "when.value", f"'{op}' takes no value")
        value = None
    elif "value" not in when:
        problems.add(rid, "when.value", "is required")
    elif op in _ORDER_OPS:
        number = to_decimal(value)
        if number is None:
            problems.add(rid, "when.value", f"'{op}' compares numbers: give a decimal")
        elif not _in_range(number):
            problems.add(rid, "when.value", _RANGE_PROBLEM)
        value = number
    elif op in _SET_OPS:
        if not isinstance(value, list) or not value or not all(_is_scalar(v) for v in value):
            problems.add(rid, "when.value", f"'{op}' needs a non-empty list of plain values")
        else:
            value = tuple(value)
    elif not _is_scalar(value):
        problems.add(rid, "when.value", f"'{op}' compares one plain value (text, number, …)")
    return Condition(
        id=rid, control=control, then=then, param=str(param), op=op, value=value, action=action
    )


def policy_document(policy: Policy) -> dict:
    """The normalised JSON document of a policy (decimals as strings), e.g. for the API."""
    rules = []
    for rule in policy.rules:
        doc: dict[str, Any] = {"id": rule.id, "kind": rule.kind}
        if isinstance(rule, AllowActions):
            doc["actions"] = list(rule.actions)
        elif isinstance(rule, ValueCap):
            doc |= {"action": rule.action, "max": str(rule.max)}
            if rule.currency:
                doc["currency"] = rule.currency
        elif isinstance(rule, Flag):
            doc["flag"] = rule.flag
        elif isinstance(rule, RateLimit):
            doc |= {"action": rule.action, "window_seconds": rule.window_seconds}
            if rule.max_count is not None:
                doc["max_count"] = rule.max_count
            if rule.max_value is not None:
                doc["max_value"] = str(rule.max_value)
            if rule.currency:
                doc["currency"] = rule.currency
            doc["per"] = rule.per
        elif isinstance(rule, Condition):
            when: dict[str, Any] = {"param": rule.param, "op": rule.op}
            if rule.op in _ORDER_OPS:
                when["value"] = str(rule.value)
            elif rule.op in _SET_OPS:
                when["value"] = list(rule.value)
            elif rule.op not in _PRESENCE_OPS:
                when["value"] = rule.value
            doc["when"] = when
        elif isinstance(rule, FirstSeen):
            doc["per"] = rule.per
        if rule.action and "action" not in doc:
            doc["action"] = rule.action
        doc["then"] = rule.then
        doc["control"] = rule.control
        if rule.note:
            doc["note"] = rule.note
        rules.append(doc)
    return {"audit_sample_rate": policy.audit_sample_rate, "rules": rules}


# ---------------------------------------------------------------------------------------
# Plain language

_WINDOWS = {60: "minute", 3600: "hour", 86400: "day", 604800: "week"}


def _number(value: Decimal) -> str:
    if value.as_tuple().exponent > 0:  # "2E+2" reads as 200
        value = value.quantize(Decimal(1))
    return f"{value:,}"


def _money(value: Decimal, currency: str = "") -> str:
    text = _number(value)
    return f"{text} {currency}" if currency else text


def _window(seconds: int) -> str:
    if seconds in _WINDOWS:
        return f"per {_WINDOWS[seconds]}"
    for unit, name in ((86400, "days"), (3600, "hours"), (60, "minutes")):
        if seconds % unit == 0:
            return f"per {seconds // unit:,} {name}"
    return f"per {seconds:,} seconds"


def _or_list(items: Iterable[Any]) -> str:
    words = [_plain(v) for v in items]
    if len(words) <= 1:
        return "".join(words)
    return ", ".join(words[:-1]) + " or " + words[-1]


def _plain(value: Any) -> str:
    if value is None:
        return "empty"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Decimal | int | float):
        number = to_decimal(value)
        return str(value) if number is None or not _in_range(number) else _number(number)
    return str(value)


def _consequence(then: str, *, plural: bool = True) -> str:
    if then == DENY:
        return "are refused" if plural else "is refused"
    return "always go to a person" if plural else "always goes to a person"


_OP_WORDS = {
    "eq": "is {}",
    "ne": "is not {}",
    "in": "is {}",
    "not_in": "is not {}",
    "lt": "is below {}",
    "lte": "is at most {}",
    "gt": "is above {}",
    "gte": "is at least {}",
    "exists": "is given",
    "missing": "is not given",
}


def rule_text(rule: Rule) -> str:
    """One sentence a non-engineer can read, e.g. 'refund.issue above 200.00 EUR always
    goes to a person.'"""
    if isinstance(rule, AllowActions):
        if not rule.actions:
            return "Every action is refused."
        return f"Any action other than {_or_list(rule.actions)} is refused."
    if isinstance(rule, ValueCap):
        amount = _money(rule.max, rule.currency)
        text = f"{rule.action} above {amount} {_consequence(rule.then, plural=False)}"
        if rule.currency:
            other = "is refused" if rule.then == DENY else "goes to a person"
            text += f"; {rule.action} in any currency other than {rule.currency} {other} too"
        return text + "."
    if isinstance(rule, Flag):
        what = f"{rule.action} proposals" if rule.action else "Proposals"
        return f"{what} flagged {rule.flag} {_consequence(rule.then)}."
    if isinstance(rule, RateLimit):
        limits = []
        if rule.max_count is not None:
            limits.append(f"{rule.max_count:,} {rule.action}")
        if rule.max_value is not None:
            limits.append(_money(rule.max_value, rule.currency))
        scope = (
            "for the whole workflow"
            if rule.per == "workflow"
            else f"for each {rule.per.removeprefix('param:')}"
        )
        after = "they are refused" if rule.then == DENY else "a person decides"
        return (
            f"At most {' or '.join(limits)} {_window(rule.window_seconds)} {scope}; "
            f"beyond that, {after}."
        )
    if isinstance(rule, Condition):
        words = _OP_WORDS[rule.op]
        test = words.format(_or_list(rule.value) if rule.op in _SET_OPS else _plain(rule.value))
        what = f"{rule.action} proposals" if rule.action else "Actions"
        return f"{what} where {rule.param} {test} {_consequence(rule.then)}."
    subject = rule.per.removeprefix("param:")
    what = f"A {rule.action}" if rule.action else "An action"
    return f"{what} for a {subject} never seen before {_consequence(rule.then, plural=False)}."


def audit_text(rate: float) -> str:
    if rate <= 0:
        return "No action the policy allows is sampled for a human audit."
    if rate >= 1:
        return "Every action the policy allows is audited by a person afterwards."
    percent = f"{Decimal(str(rate)) * 100:f}".rstrip("0").rstrip(".")
    return f"{percent}% of the actions the policy allows are sampled for a human audit."


def policy_text(policy: Policy) -> list[str]:
    """Every rule as one sentence, in document order, then the audit sentence."""
    return [rule_text(rule) for rule in policy.rules] + [audit_text(policy.audit_sample_rate)]


# ---------------------------------------------------------------------------------------
# Compilation and evaluation


class _Missing:
    """A parameter the proposal does not carry (distinct from JSON null)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<missing>"


_MISSING = _Missing()
_ODD = object()  # the equality key of a list, an object or a non-finite number: equals nothing
_CONTAINERS = (dict, list)


def _key(value: Any) -> Any:
    """Equality key for eq/ne/in/not_in: JSON values compare as JSON does (1 == 1.0), but a
    number never equals a string and true is not 1. Always hashable."""
    kind = type(value)
    if kind is str or value is None or value is _MISSING:
        return value
    if kind is bool:
        return ("bool", value)
    if kind is int or kind is float:
        number = to_decimal(value)
        return _ODD if number is None else number
    return _ODD


@dataclass(frozen=True)
class _Plan:
    value_param: str
    currency_param: str
    check: Callable[..., list]  # generated: -> [(rule index, reason), ...]
    ids: tuple[str, ...]  # rule index -> rule id
    denies: tuple[bool, ...]  # rule index -> then == deny
    rates: tuple[RateLimit, ...]
    first_seen: tuple[FirstSeen, ...]
    source: str  # the generated code, for reading and debugging


@dataclass(frozen=True)
class CompiledPolicy:
    policy: Policy
    plans: dict[str, _Plan]  # allowed action -> its plan
    refused: dict[str, tuple[str, ...]]  # known but not allowed action -> allow_actions ids
    denied_ids: tuple[str, ...]  # allow_actions ids (for an unknown action)
    # Every first_seen rule's `per` (seen_params): what each run marks as seen.
    seen_pers: tuple[str, ...] = ()


def compile_policy(policy: Policy, *, actions: Mapping[str, ActionValue]) -> CompiledPolicy:
    """Build, once per policy version, one check function per allowed action holding only
    the rules that can apply to it.

    The function is generated Python: a closure per rule measured ~13 µs a proposal on an
    early draft of the 100-rule bench envelope, straight-line code ~4 µs. Policy data never
    becomes code: every value, name and reason is bound as a default argument `_k<n>`, so
    the generated text only ever holds our own identifiers, operators and integers (the
    `source` of each plan shows it). A 1,000-rule policy compiles in ~50 ms.
    """
    allow_rules = [r for r in policy.rules if isinstance(r, AllowActions)]
    allowed = set(actions)
    for rule in allow_rules:
        allowed &= set(rule.actions)
    plans: dict[str, _Plan] = {}
    refused: dict[str, tuple[str, ...]] = {}
    for action, (value_param, currency_param) in actions.items():
        if action not in allowed:
            refused[action] = tuple(r.id for r in allow_rules if action not in r.actions)
            continue
        mine = [
            r
            for r in policy.rules
            if not isinstance(r, AllowActions) and (not r.action or r.action == action)
        ]
        check, source = _generate(action, mine)
        plans[action] = _Plan(
            value_param=value_param,
            currency_param=currency_param,
            check=check,
            ids=tuple(r.id for r in mine),
            denies=tuple(r.then == DENY for r in mine),
            rates=tuple(r for r in mine if isinstance(r, RateLimit)),
            first_seen=tuple(r for r in mine if isinstance(r, FirstSeen)),
            source=source,
        )
    return CompiledPolicy(
        policy=policy,
        plans=plans,
        refused=refused,
        denied_ids=tuple(r.id for r in allow_rules),
        seen_pers=seen_params(policy),
    )


class _Source:
    def __init__(self) -> None:
        self.consts: list[Any] = []
        self.lines: list[str] = []

    def k(self, value: Any) -> str:
        # Bound as a default argument (a fast local), never spelled out in the code.
        self.consts.append(value)
        return f"_k{len(self.consts) - 1}"

    def emit(self, line: str, depth: int = 1) -> None:
        self.lines.append("    " * depth + line)


_ORDER_SYMBOL = {"lt": "<", "lte": "<=", "gt": ">", "gte": ">="}


def _generate(action: str, rules: list[Rule]) -> tuple[Callable[..., list], str]:
    """The source of one action's check function, and the function.

    It returns the (rule index, reason) pairs of the rules that fired. Conditions on one
    parameter share one lookup: equality and membership tests become one dict lookup from
    the parameter's value to the precomputed pairs that fire for it.
    """
    src = _Source()
    params: dict[str, int] = {}  # parameter name -> local variable number

    def local(name: str) -> int:
        if name not in params:
            params[name] = len(params)
            src.emit(f"p{params[name]} = params.get({src.k(name)}, _M)")
        return params[name]

    def hit(index: int, reason: str) -> str:
        return f"hits.append({src.k((index, reason))})"

    caps = [r for r in rules if isinstance(r, ValueCap)]
    covered = frozenset(c.currency for c in caps)
    generic = "" in covered
    if caps and not generic:
        src.emit(f"covered = currency in {src.k(covered)}")
    flagged: list[tuple[int, Flag]] = []
    conditions: dict[str, list[tuple[int, Condition]]] = {}
    for index, rule in enumerate(rules):
        if isinstance(rule, ValueCap):
            over = f"{action} above {_money(rule.max, rule.currency)}"
            unknown = f"{action} has no readable value to compare with its cap"
            depth = 1
            if rule.currency:
                src.emit(f"if currency == {src.k(rule.currency)}:")
                depth = 2
            src.emit("if value is None:", depth)
            src.emit(hit(index, unknown), depth + 1)
            src.emit(f"elif value > {src.k(rule.max)}:", depth)
            src.emit(hit(index, over), depth + 1)
            if rule.currency and not generic:
                # A currency no cap of this action names is not covered: fail closed.
                src.emit("elif not covered:")
                src.emit(hit(index, f"no cap for this currency on {action}"), 2)
        elif isinstance(rule, Flag):
            flagged.append((index, rule))
        elif isinstance(rule, RateLimit):
            _generate_rate(src, rule, index, local, hit)
        elif isinstance(rule, FirstSeen):
            name = rule.per.removeprefix("param:")
            n = local(name)
            src.emit(f"if p{n} is _M or p{n} is None or type(p{n}) in _CT:")
            src.emit(hit(index, f"{name} is missing, so {rule.id} cannot tell who it is"), 2)
            src.emit(f"elif not seen.get({src.k(rule.id)}, False):")
            src.emit(hit(index, f"first {rule.action or 'action'} for this {name}"), 2)
        elif isinstance(rule, Condition):
            conditions.setdefault(rule.param, []).append((index, rule))
    for name, group in conditions.items():
        _generate_conditions(src, local(name), group)
    if flagged:
        src.emit("if flags:")
        for index, rule in flagged:
            src.emit(f"if {src.k(rule.flag)} in flags:", 2)
            src.emit(hit(index, f"flagged {rule.flag}"), 3)
    body = "\n".join(src.lines)
    bound = "".join(f", _k{i}=_K[{i}]" for i in range(len(src.consts)))
    text = (
        "def check(params, flags, value, currency, counters, "
        f"_M=_M, _dec=_dec, _key=_key, _CT=_CT{bound}):\n"
        "    hits = []\n"
        "    rates = counters.rates\n"
        "    seen = counters.seen\n"
        f"{body}\n"
        "    return hits\n"
    )
    namespace = {
        "_K": tuple(src.consts),
        "_M": _MISSING,
        "_dec": to_decimal,
        "_key": _key,
        "_CT": _CONTAINERS,
    }
    exec(compile(text, f"<policy {action}>", "exec"), namespace)  # noqa: S102 - see docstring
    return namespace["check"], text


def _generate_conditions(src: _Source, n: int, group: list[tuple[int, Condition]]) -> None:
    def reason(rule: Condition) -> str:
        return rule_text(rule).rstrip(".")

    def cannot(index: int, rule: Condition) -> tuple[int, str]:
        return (index, f"{rule.param} cannot be checked, so {rule.id} applies")

    equal = [(i, r) for i, r in group if r.op in ("eq", "ne", "in", "not_in")]
    if equal:
        members = {
            i: frozenset(_key(v) for v in (r.value if r.op in _SET_OPS else (r.value,)))
            for i, r in equal
        }
        positive = {i for i, r in equal if r.op in ("eq", "in")}

        def fired(key: Any) -> tuple[tuple[int, str], ...]:
            return tuple((i, reason(r)) for i, r in equal if (key in members[i]) is (i in positive))

        table = {key: fired(key) for key in frozenset().union(*members.values())}
        otherwise = fired(_ODD)  # a value no rule names: the ne/not_in rules fire
        src.emit(f"if p{n} is _M:")
        src.emit(f"hits.extend({src.k(tuple(cannot(i, r) for i, r in equal))})", 2)
        src.emit("else:")
        # Text is its own key: skip the call for the common case.
        key = f"(p{n} if type(p{n}) is str else _key(p{n}))"
        src.emit(f"hits.extend({src.k(table)}.get({key}, {src.k(otherwise)}))", 2)
    exists = tuple((i, reason(r)) for i, r in group if r.op == "exists")
    missing = tuple((i, reason(r)) for i, r in group if r.op == "missing")
    if exists or missing:
        src.emit(f"if p{n} is _M or p{n} is None:")
        src.emit(f"hits.extend({src.k(missing)})", 2)
        src.emit("else:")
        src.emit(f"hits.extend({src.k(exists)})", 2)
    ordered = [(i, r) for i, r in group if r.op in _ORDER_OPS]
    if ordered:
        # An int compares exactly with a Decimal bound: skip the conversion for it.
        src.emit(f"d{n} = p{n} if type(p{n}) is int else _dec(p{n})")
        src.emit(f"if d{n} is None:")
        src.emit(f"hits.extend({src.k(tuple(cannot(i, r) for i, r in ordered))})", 2)
        src.emit("else:")
        # One guard per direction: on the common path no bound is crossed, and one
        # comparison with the loosest bound skips the others.
        for ops, loosest, symbol in ((("gt", "gte"), min, ">="), (("lt", "lte"), max, "<=")):
            side = [(i, r) for i, r in ordered if r.op in ops]
            if not side:
                continue
            src.emit(f"if d{n} {symbol} {src.k(loosest(r.value for _, r in side))}:", 2)
            for i, r in side:
                src.emit(f"if d{n} {_ORDER_SYMBOL[r.op]} {src.k(r.value)}:", 3)
                src.emit(f"hits.append({src.k((i, reason(r)))})", 4)


def _generate_rate(src: _Source, rule: RateLimit, index: int, local, hit) -> None:
    """A rate limit fires when this action would make count + 1 > max_count or
    total + value > max_value (see `Counters`); it fails closed when it cannot count."""
    depth = 1
    if rule.per != "workflow":
        name = rule.per.removeprefix("param:")
        n = local(name)
        src.emit(f"if p{n} is _M or p{n} is None or type(p{n}) in _CT:")
        src.emit(hit(index, f"{name} is missing, so {rule.id} cannot count"), 2)
        src.emit("else:")
        depth = 2
    window = _window(rule.window_seconds)
    src.emit(f"c = rates.get({src.k(rule.id)})", depth)
    src.emit("if c is None:", depth)
    src.emit(hit(index, f"no counter for {rule.id}: it cannot count"), depth + 1)
    if rule.max_count is not None:
        src.emit(f"elif c[0] + 1 > {src.k(rule.max_count)}:", depth)
        src.emit(hit(index, f"more than {rule.max_count:,} {rule.action} {window}"), depth + 1)
    if rule.max_value is not None:
        test = "value is None"
        if rule.currency:
            test += f" or currency != {src.k(rule.currency)}"
        src.emit(f"elif {test}:", depth)
        src.emit(hit(index, f"{rule.action} has no value {rule.id} can count"), depth + 1)
        src.emit(f"elif c[1] + value > {src.k(rule.max_value)}:", depth)
        over = f"more than {_money(rule.max_value, rule.currency)} {window}"
        src.emit(hit(index, over), depth + 1)


def seen_params(policy: Policy) -> tuple[str, ...]:
    """The `per` of every first_seen rule: the subjects a workflow records as seen for
    every run, whatever its action (so "first seen" means in any earlier run)."""
    return tuple(sorted({r.per for r in policy.rules if isinstance(r, FirstSeen)}))


def subject_key(per: str, params: dict) -> str | None:
    """The counted subject of a proposal's params: "workflow", or "<param>=<value>" for
    `per: "param:<name>"` (None when the parameter is missing or not a plain value)."""
    if per == "workflow":
        return "workflow"
    name = per[6:]
    raw = params.get(name)
    if raw is None or isinstance(raw, _CONTAINERS):
        return None
    return f"{name}={_plain(raw) if isinstance(raw, bool) else raw}"


def _value(plan: _Plan, params: dict) -> tuple[Decimal | None, str]:
    value = to_decimal(params.get(plan.value_param)) if plan.value_param else None
    currency = params.get(plan.currency_param) if plan.currency_param else None
    return value, currency.strip().upper() if type(currency) is str else ""


def evaluate(compiled: CompiledPolicy, proposal: dict, counters: Counters) -> PolicyDecision:
    """allow / escalate / deny for one proposal {action, params, flags}.

    An action outside allow_actions is denied; otherwise every rule for the action runs,
    and any fired `deny` denies, else any fired `escalate` escalates, else allow.
    `rules_fired` lists every rule that fired, in document order, with one reason each.
    """
    action = proposal.get("action")
    plan = compiled.plans.get(action) if type(action) is str else None
    if plan is None:
        fired = compiled.refused.get(action, compiled.denied_ids) if type(action) is str else ()
        return PolicyDecision(DENY, fired or compiled.denied_ids, (f"{action} is not allowed",))
    params = proposal.get("params")
    if type(params) is not dict:
        params = {}
    flags = proposal.get("flags")
    if flags and type(flags) is not list:
        flags = list(flags) if isinstance(flags, tuple | set | frozenset) else [flags]
    value, currency = _value(plan, params)
    hits = plan.check(params, flags, value, currency, counters)
    if not hits:
        return _ALLOWED
    hits.sort()
    indexes, reasons = zip(*hits, strict=True)
    outcome = DENY if any(map(plan.denies.__getitem__, indexes)) else ESCALATE
    # tuple.__new__ skips the NamedTuple's Python-level __new__ (this is the hot path).
    return _new_decision(
        PolicyDecision, (outcome, tuple(map(plan.ids.__getitem__, indexes)), reasons)
    )


_ALLOWED = PolicyDecision(ALLOW)
_new_decision = tuple.__new__


def rate_keys(compiled: CompiledPolicy, proposal: dict) -> list[tuple[str, str, int]]:
    """(rule id, subject key, window seconds) of every rate limit that applies to this
    proposal: the counters the caller reads before `evaluate` and, when the outcome is
    allow, adds this action (count 1, its value) to. A limit whose subject parameter is
    missing has no key (and fires in `evaluate`)."""
    plan = compiled.plans.get(proposal.get("action"))  # type: ignore[arg-type]
    if plan is None or not plan.rates:
        return []
    params = proposal.get("params") or {}
    keys = []
    for rule in plan.rates:
        subject = subject_key(rule.per, params)
        if subject is not None:
            keys.append((rule.id, subject, rule.window_seconds))
    return keys


def seen_keys(compiled: CompiledPolicy, proposal: dict) -> list[tuple[str, str]]:
    """(rule id, subject key) of every first_seen rule that applies to this proposal."""
    plan = compiled.plans.get(proposal.get("action"))  # type: ignore[arg-type]
    if plan is None:
        return []
    params = proposal.get("params") or {}
    keys = []
    for rule in plan.first_seen:
        subject = subject_key(rule.per, params)
        if subject is not None:
            keys.append((rule.id, subject))
    return keys


# ---------------------------------------------------------------------------------------
# Audit sampling


def audit_sampled(run_id: str, rate: float) -> bool:
    """Whether an allowed run goes to the audit sample, recomputable by an examiner:

        x = int.from_bytes(sha256(run_id as UTF-8)[:8], "big") / 2**64   # in [0, 1)
        sampled = x < rate

    so rate 0 samples nothing, rate 1 everything, and the same run id always gets the
    same answer."""
    digest = hashlib.sha256(run_id.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < rate
