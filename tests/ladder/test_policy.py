"""Policy envelopes (ladder/policy.py): validation, evaluation, plain language, sampling.

Pure functions: no database. The property tests compare the compiled evaluator with a slow
reference evaluator written straight from docs/policy.md over the raw document.
"""

import hashlib
from decimal import Decimal, InvalidOperation

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench.policy_envelope import ACTIONS as BENCH_ACTIONS
from bench.policy_envelope import envelope as bench_envelope
from bench.policy_envelope import proposals as bench_proposals
from ladder.errors import Unprocessable
from ladder.policy import (
    NO_COUNTERS,
    Counters,
    audit_sampled,
    audit_text,
    compile_policy,
    evaluate,
    parse_policy,
    policy_document,
    policy_text,
    rate_keys,
    rule_text,
    seen_keys,
)

ACTIONS = {"refund.issue": ("amount", "currency"), "notify.send": ("", "")}

CONTRACT = {
    "audit_sample_rate": 0.05,
    "rules": [
        {
            "id": "actions",
            "kind": "allow_actions",
            "actions": ["refund.issue"],
            "control": "allowed_tools",
        },
        {
            "id": "cap",
            "kind": "value_cap",
            "action": "refund.issue",
            "max": "200.00",
            "currency": "EUR",
            "then": "escalate",
            "control": "value_cap",
        },
        {
            "id": "fraud",
            "kind": "flag",
            "flag": "fraud_adjacent",
            "then": "escalate",
            "control": "rbac",
        },
        {
            "id": "rate",
            "kind": "rate_limit",
            "action": "refund.issue",
            "window_seconds": 3600,
            "max_count": 100,
            "max_value": "5000.00",
            "currency": "EUR",
            "per": "workflow",
            "then": "escalate",
            "control": "rate_limit",
        },
        {
            "id": "country",
            "kind": "condition",
            "when": {"param": "country", "op": "not_in", "value": ["DE", "NL"]},
            "then": "deny",
            "control": "data_scope",
        },
    ],
}


def compiled(doc=CONTRACT, actions=ACTIONS):
    return compile_policy(parse_policy(doc, actions=actions), actions=actions)


def refund(amount="120.00", currency="EUR", country="DE", **extra):
    params = {"amount": amount, "currency": currency, "country": country}
    params.update(extra.pop("params", {}))
    return {"action": "refund.issue", "params": params, **extra}


QUIET = Counters(rates={"rate": (0, Decimal(0))})


def problems_of(doc, actions=ACTIONS):
    with pytest.raises(Unprocessable) as err:
        parse_policy(doc, actions=actions)
    assert err.value.code == "invalid_policy"
    assert err.value.status == 422
    return {(p["rule"], p["field"]) for p in err.value.details}


# --- validation ---------------------------------------------------------------------


def test_the_contract_example_is_a_valid_policy():
    policy = parse_policy(CONTRACT, actions=ACTIONS)
    assert [r.id for r in policy.rules] == ["actions", "cap", "fraud", "rate", "country"]
    assert policy.audit_sample_rate == 0.05


def test_a_bad_document_is_refused_with_every_problem_named_at_once():
    doc = {
        "audit_sample_rate": 1.5,
        "rules": [
            {"id": "ok", "kind": "allow_actions", "actions": ["refund.issue"], "control": "rbac"},
            {"id": "k", "kind": "teleport", "control": "rbac", "then": "deny"},
            {
                "id": "cap",
                "kind": "value_cap",
                "action": "refund.issue",
                "max": "two hundred",
                "then": "escalate",
                "control": "value_cap",
            },
            {
                "id": "rate",
                "kind": "rate_limit",
                "action": "refund.issue",
                "window_seconds": 0,
                "max_count": -1,
                "per": "workflow",
                "then": "escalate",
                "control": "rate_limit",
            },
            {"id": "t", "kind": "flag", "flag": "x", "then": "maybe", "control": "rbac"},
            {"id": "c", "kind": "flag", "flag": "x", "then": "deny", "control": "vibes"},
            {"id": "t", "kind": "flag", "flag": "y", "then": "deny", "control": "rbac"},
            {
                "id": "a",
                "kind": "value_cap",
                "action": "wire.send",
                "max": 1,
                "then": "deny",
                "control": "value_cap",
            },
            {
                "id": "op",
                "kind": "condition",
                "when": {"param": "country", "op": "matches", "value": "(a+)+$"},
                "then": "deny",
                "control": "data_scope",
            },
            {"id": "m", "kind": "value_cap", "then": "deny", "control": "value_cap"},
        ],
    }
    found = problems_of(doc)
    assert found >= {
        ("", "audit_sample_rate"),
        ("k", "kind"),
        ("cap", "max"),
        ("rate", "window_seconds"),
        ("rate", "max_count"),
        ("t", "then"),
        ("c", "control"),
        ("t", "id"),  # the duplicate
        ("a", "action"),
        ("op", "when.op"),
        ("m", "action"),
        ("m", "max"),
    }


def test_the_error_message_names_each_problem_too():
    doc = {"audit_sample_rate": -0.1, "rules": [{"id": "x", "kind": "flag"}]}
    with pytest.raises(Unprocessable) as err:
        parse_policy(doc, actions=ACTIONS)
    message = err.value.message
    assert "audit_sample_rate" in message and "x.flag" in message and "x.then" in message


@pytest.mark.parametrize(
    ("rule", "field"),
    [
        ({"kind": "value_cap", "action": "refund.issue", "max": True}, "max"),
        ({"kind": "value_cap", "action": "refund.issue", "max": "NaN"}, "max"),
        ({"kind": "value_cap", "action": "refund.issue", "max": "-1"}, "max"),
        ({"kind": "value_cap", "action": "refund.issue", "max": [1]}, "max"),
        ({"kind": "value_cap", "action": "refund.issue", "max": 1, "maxx": 2}, "maxx"),
        ({"kind": "value_cap", "action": "notify.send", "max": 1}, "action"),
        ({"kind": "rate_limit", "action": "refund.issue", "window_seconds": -5,
          "max_count": 1, "per": "workflow"}, "window_seconds"),
        ({"kind": "rate_limit", "action": "refund.issue", "window_seconds": 1.5,
          "max_count": 1, "per": "workflow"}, "window_seconds"),
        ({"kind": "rate_limit", "action": "refund.issue", "window_seconds": 60,
          "per": "workflow"}, "max_count"),
        ({"kind": "rate_limit", "action": "refund.issue", "window_seconds": 60,
          "max_count": 1, "per": "everyone"}, "per"),
        ({"kind": "first_seen", "per": "workflow"}, "per"),
        ({"kind": "condition", "when": {"param": "x", "op": "lt", "value": "abc"}},
         "when.value"),
        ({"kind": "condition", "when": {"param": "x", "op": "in", "value": []}}, "when.value"),
        ({"kind": "condition", "when": {"param": "x", "op": "exists", "value": 1}},
         "when.value"),
        ({"kind": "condition", "when": {"param": "", "op": "eq", "value": 1}}, "when.param"),
        ({"kind": "condition", "when": "country is DE"}, "when"),
        ({"kind": ["value_cap"], "action": "refund.issue", "max": 1}, "kind"),
        ({"kind": "condition", "when": {"param": "x", "op": "eq", "value": float("nan")}},
         "when.value"),
        ({"kind": "value_cap", "action": "refund.issue", "max": "1e999999999"}, "max"),
        ({"kind": "value_cap", "action": "refund.issue", "max": "0.0000000000001"}, "max"),
        ({"kind": "condition", "when": {"param": "x", "op": "gt", "value": "1e30"}},
         "when.value"),
    ],
)  # fmt: skip
def test_each_kind_of_bad_field_is_refused(rule, field):
    doc = {
        "audit_sample_rate": 0,
        "rules": [
            CONTRACT["rules"][0],
            {"id": "r", "control": "rbac", "then": "deny", **rule},
        ],
    }
    assert ("r", field) in problems_of(doc)


def test_a_policy_must_say_what_it_allows():
    assert ("", "rules") in problems_of({"audit_sample_rate": 0, "rules": []})


def test_validation_also_works_from_bare_action_names():
    parse_policy(CONTRACT, actions=["refund.issue"])
    bad = {**CONTRACT, "rules": [*CONTRACT["rules"], {**CONTRACT["rules"][1], "id": "x",
                                                       "action": "nope"}]}  # fmt: skip
    assert ("x", "action") in problems_of(bad, actions=["refund.issue"])


def test_a_document_round_trips_through_its_normalised_form():
    policy = parse_policy(CONTRACT, actions=ACTIONS)
    again = parse_policy(policy_document(policy), actions=ACTIONS)
    assert again == policy


def test_a_rule_note_is_kept_through_a_save_and_a_bad_one_is_named():
    doc = {**CONTRACT, "rules": [*CONTRACT["rules"][:1], {**CONTRACT["rules"][1], "note": " why "}]}
    policy = parse_policy(doc, actions=ACTIONS)
    assert policy_document(policy)["rules"][1]["note"] == "why"
    assert "note" not in policy_document(policy)["rules"][0]
    assert parse_policy(policy_document(policy), actions=ACTIONS) == policy
    bad = {**CONTRACT, "rules": [{**CONTRACT["rules"][0], "note": ["not", "text"]}]}
    assert problems_of(bad) == {("actions", "note")}
    assert problems_of({**CONTRACT, "rules": [{**CONTRACT["rules"][0], "note": "x" * 501}]}) == {
        ("actions", "note")
    }


# --- evaluation order ---------------------------------------------------------------


def test_an_action_outside_allow_actions_is_denied_before_anything_else():
    decision = evaluate(compiled(), {"action": "notify.send", "params": {}}, QUIET)
    assert decision.outcome == "deny" and decision.rules_fired == ("actions",)


def test_an_unknown_action_is_denied():
    decision = evaluate(compiled(), {"action": "wire.send", "params": {}}, QUIET)
    assert decision.outcome == "deny"


def test_a_fired_deny_beats_a_fired_escalate():
    decision = evaluate(compiled(), refund("900.00", country="FR"), QUIET)
    assert decision.outcome == "deny"
    assert decision.rules_fired == ("cap", "country")
    assert len(decision.reasons) == 2


def test_a_fired_escalate_escalates_and_nothing_fired_allows():
    assert evaluate(compiled(), refund("900.00"), QUIET).outcome == "escalate"
    allowed = evaluate(compiled(), refund("90.00"), QUIET)
    assert allowed.outcome == "allow" and allowed.rules_fired == ()


def test_a_flag_escalates():
    decision = evaluate(compiled(), refund(flags=["fraud_adjacent"]), QUIET)
    assert decision.outcome == "escalate" and decision.rules_fired == ("fraud",)


# --- caps ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("amount", "outcome"),
    [
        ("200.00", "allow"),
        ("200", "allow"),
        (200, "allow"),
        (200.0, "allow"),
        ("199.99", "allow"),
        ("200.01", "escalate"),
        (200.01, "escalate"),
        ("200.004999999", "escalate"),
        (200.004999999, "escalate"),
        ("200.0000000000000000000001", "escalate"),
        ("1e3", "escalate"),
    ],
)
def test_a_cap_is_inclusive_and_exact(amount, outcome):
    assert evaluate(compiled(), refund(amount), QUIET).outcome == outcome


@pytest.mark.parametrize("amount", [None, "lots", True, "NaN", "Infinity", [1]])
def test_a_value_the_cap_cannot_read_escalates(amount):
    assert evaluate(compiled(), refund(amount), QUIET).outcome == "escalate"


def test_a_cap_in_eur_does_not_cover_another_currency():
    decision = evaluate(compiled(), refund("1.00", currency="USD"), QUIET)
    assert decision.outcome == "escalate" and "cap" in decision.rules_fired
    assert "no cap for this currency" in decision.reasons[0]


def test_currency_codes_compare_without_case():
    assert evaluate(compiled(), refund("10.00", currency=" eur"), QUIET).outcome == "allow"


def test_caps_in_two_currencies_each_cover_their_own():
    doc = {**CONTRACT, "rules": [*CONTRACT["rules"][:2], {
        "id": "cap-usd", "kind": "value_cap", "action": "refund.issue", "max": "250",
        "currency": "USD", "then": "deny", "control": "value_cap"}]}  # fmt: skip
    policy = compiled(doc)
    assert evaluate(policy, refund("240", currency="USD"), NO_COUNTERS).outcome == "allow"
    assert evaluate(policy, refund("240", currency="EUR"), NO_COUNTERS).outcome == "escalate"
    assert evaluate(policy, refund("251", currency="USD"), NO_COUNTERS).outcome == "deny"
    assert evaluate(policy, refund("1", currency="GBP"), NO_COUNTERS).rules_fired == (
        "cap",
        "cap-usd",
    )


def test_a_cap_without_currency_covers_every_currency():
    doc = {**CONTRACT, "rules": [*CONTRACT["rules"][:2], {
        "id": "any", "kind": "value_cap", "action": "refund.issue", "max": "500",
        "then": "deny", "control": "value_cap"}]}  # fmt: skip
    policy = compiled(doc)
    assert evaluate(policy, refund("400", currency="USD"), NO_COUNTERS).outcome == "allow"
    assert evaluate(policy, refund("501", currency="USD"), NO_COUNTERS).outcome == "deny"


# --- rate limits --------------------------------------------------------------------


def test_a_rate_limit_of_n_allows_exactly_n():
    policy = compiled()
    outcomes = [
        evaluate(policy, refund("1.00"), Counters(rates={"rate": (done, Decimal(done))})).outcome
        for done in range(102)
    ]
    assert outcomes.count("allow") == 100 and outcomes[:100] == ["allow"] * 100
    assert outcomes[100:] == ["escalate", "escalate"]


def test_a_value_limit_is_inclusive():
    policy = compiled()
    at = Counters(rates={"rate": (5, Decimal("4900.00"))})
    assert evaluate(policy, refund("100.00"), at).outcome == "allow"
    assert evaluate(policy, refund("100.01"), at).outcome == "escalate"


def test_a_rate_limit_without_its_counter_does_not_allow():
    decision = evaluate(compiled(), refund("1.00"), NO_COUNTERS)
    assert decision.outcome == "escalate" and decision.rules_fired == ("rate",)


PER_CUSTOMER = {
    "audit_sample_rate": 0,
    "rules": [
        CONTRACT["rules"][0],
        {"id": "per-cust", "kind": "rate_limit", "action": "refund.issue",
         "window_seconds": 86400, "max_count": 2, "per": "param:customer", "then": "deny",
         "control": "rate_limit"},
        {"id": "new", "kind": "first_seen", "per": "param:customer", "then": "escalate",
         "control": "rbac"},
    ],
}  # fmt: skip


def test_rate_keys_name_the_subject_of_each_limit():
    assert rate_keys(compiled(), refund()) == [("rate", "workflow", 3600)]
    policy = compiled(PER_CUSTOMER)
    assert rate_keys(policy, refund(params={"customer": "c-17"})) == [
        ("per-cust", "customer=c-17", 86400)
    ]
    assert seen_keys(policy, refund(params={"customer": "c-17"})) == [("new", "customer=c-17")]
    assert rate_keys(policy, {"action": "notify.send", "params": {}}) == []


def test_a_per_subject_limit_counts_each_subject_apart():
    policy = compiled(PER_CUSTOMER)
    seen = {"new": True}
    busy = Counters(rates={"per-cust": (2, 0)}, seen=seen)
    quiet = Counters(rates={"per-cust": (1, 0)}, seen=seen)
    assert evaluate(policy, refund(params={"customer": "a"}), busy).outcome == "deny"
    assert evaluate(policy, refund(params={"customer": "b"}), quiet).outcome == "allow"


def test_a_per_subject_limit_without_its_subject_fires():
    decision = evaluate(compiled(PER_CUSTOMER), refund(), Counters(seen={"new": True}))
    assert decision.outcome == "deny" and "per-cust" in decision.rules_fired
    assert rate_keys(compiled(PER_CUSTOMER), refund()) == []


def test_a_subject_never_seen_before_escalates():
    policy = compiled(PER_CUSTOMER)
    proposal = refund(params={"customer": "c-1"})
    counters = Counters(rates={"per-cust": (0, 0)}, seen={"new": False})
    assert evaluate(policy, proposal, counters).rules_fired == ("new",)
    counters = Counters(rates={"per-cust": (0, 0)}, seen={"new": True})
    assert evaluate(policy, proposal, counters).outcome == "allow"


# --- conditions ---------------------------------------------------------------------


def condition(op, value=None, *, then="deny"):
    when = {"param": "x", "op": op}
    if value is not None:
        when["value"] = value
    return {
        "audit_sample_rate": 0,
        "rules": [
            CONTRACT["rules"][0],
            {"id": "c", "kind": "condition", "when": when, "then": then, "control": "rbac"},
        ],
    }


@pytest.mark.parametrize(
    ("op", "value", "x", "fires"),
    [
        ("eq", "a", "a", True),
        ("eq", "a", "b", False),
        ("eq", 1, 1.0, True),
        ("eq", 1, "1", False),
        ("eq", 1, True, False),
        ("eq", True, True, True),
        ("ne", "a", "b", True),
        ("ne", "a", "a", False),
        ("in", ["a", "b"], "b", True),
        ("in", ["a", "b"], "c", False),
        ("in", ["a"], ["a"], False),
        ("not_in", ["DE", "NL"], "FR", True),
        ("not_in", ["DE", "NL"], "NL", False),
        ("lt", "10", "9.99", True),
        ("lt", "10", 10, False),
        ("lte", 10, "10.00", True),
        ("gt", "10", "10.0000001", True),
        ("gt", "10", 10, False),
        ("gte", 10, 10, True),
        ("gte", 10, "abc", True),  # cannot be compared: fails closed
        ("exists", None, "", True),
        ("exists", None, None, False),
        ("missing", None, None, True),
        ("missing", None, 0, False),
    ],
)
def test_each_condition_op(op, value, x, fires):
    decision = evaluate(compiled(condition(op, value)), refund(params={"x": x}), QUIET)
    assert decision.rules_fired == (("c",) if fires else ())


@pytest.mark.parametrize("op", ["eq", "ne", "in", "not_in", "lt", "gte"])
def test_a_condition_on_a_missing_parameter_fires(op):
    value = ["a"] if op in ("in", "not_in") else "1"
    assert evaluate(compiled(condition(op, value)), refund(), QUIET).outcome == "deny"


def test_a_missing_parameter_does_not_fire_exists():
    assert evaluate(compiled(condition("exists")), refund(), QUIET).outcome == "allow"


# --- plain language -----------------------------------------------------------------


def test_every_rule_of_the_contract_reads_as_one_sentence():
    assert policy_text(parse_policy(CONTRACT, actions=ACTIONS)) == [
        "Any action other than refund.issue is refused.",
        "refund.issue above 200.00 EUR always goes to a person; "
        "refund.issue in any currency other than EUR goes to a person too.",
        "Proposals flagged fraud_adjacent always go to a person.",
        "At most 100 refund.issue or 5,000.00 EUR per hour for the whole workflow; "
        "beyond that, a person decides.",
        "Actions where country is not DE or NL are refused.",
        "5% of the actions the policy allows are sampled for a human audit.",
    ]


def test_the_other_kinds_read_as_sentences_too():
    policy = parse_policy(PER_CUSTOMER, actions=ACTIONS)
    assert [rule_text(r) for r in policy.rules[1:]] == [
        "At most 2 refund.issue per day for each customer; beyond that, they are refused.",
        "An action for a customer never seen before always goes to a person.",
    ]
    sentences = [
        ("lte", "1500", "Actions where x is at most 1,500 are refused."),
        ("in", ["a", "b", "c"], "Actions where x is a, b or c are refused."),
        ("missing", None, "Actions where x is not given are refused."),
        ("gt", "2E+2", "Actions where x is above 200 are refused."),
        ("eq", 10**30, f"Actions where x is {10**30} are refused."),
    ]
    for op, value, sentence in sentences:
        assert rule_text(parse_policy(condition(op, value), actions=ACTIONS).rules[1]) == sentence
    assert audit_text(0) == "No action the policy allows is sampled for a human audit."
    assert audit_text(1) == "Every action the policy allows is audited by a person afterwards."
    assert audit_text(0.125).startswith("12.5% ")


# --- audit sampling -----------------------------------------------------------------


def test_audit_sampling_is_deterministic_and_recomputable():
    run_id = "0193f6d2-7a3b-7c00-8000-000000000001"
    x = int.from_bytes(hashlib.sha256(run_id.encode()).digest()[:8], "big") / 2**64
    for rate in (0.0, 0.05, 0.5, 0.99, 1.0):
        assert audit_sampled(run_id, rate) is (x < rate)
        assert audit_sampled(run_id, rate) is audit_sampled(run_id, rate)
    assert audit_sampled(run_id, 1.0) and not audit_sampled(run_id, 0.0)


@settings(max_examples=200, deadline=None)
@given(
    run_id=st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=60),
    rate=st.floats(0, 1),
)
def test_audit_sampling_is_the_documented_formula_for_any_run_id(run_id, rate):
    x = int.from_bytes(hashlib.sha256(run_id.encode("utf-8")).digest()[:8], "big") / 2**64
    assert audit_sampled(run_id, rate) is (x < rate) is audit_sampled(run_id, rate)


@pytest.mark.parametrize("rate", [0.01, 0.05, 0.3])
def test_audit_sampling_samples_about_the_rate(rate):
    n = 40_000
    sampled = sum(audit_sampled(f"run-{i}", rate) for i in range(n))
    # Five standard deviations of a binomial: a false failure is below one in a million.
    assert abs(sampled - rate * n) < 5 * (n * rate * (1 - rate)) ** 0.5


# --- the bench envelope -------------------------------------------------------------


def test_the_bench_envelope_has_100_rules_and_agrees_with_the_reference():
    doc = bench_envelope()
    policy = compiled(doc, BENCH_ACTIONS)
    assert len(doc["rules"]) == 100
    counters = reference_counters(doc, {"seen": True, "count": 1, "total": "50"})
    for proposal in bench_proposals(500):
        decision = evaluate(policy, proposal, counters)
        assert (decision.outcome, set(decision.rules_fired)) == reference(
            doc, BENCH_ACTIONS, proposal, counters
        )


# --- properties against a reference evaluator ---------------------------------------


def dec(raw):
    if raw is None or isinstance(raw, bool) or not isinstance(raw, int | float | str):
        return None
    try:
        value = Decimal(repr(raw) if isinstance(raw, float) else raw)
    except InvalidOperation:
        return None
    return value if value.is_finite() else None


def eq_key(v):
    if isinstance(v, bool):
        return ("bool", v)
    if isinstance(v, int | float):
        d = dec(v)
        return ("num", d) if d is not None else ("odd", id(v))
    if isinstance(v, dict | list):
        return ("odd", id(v))
    return ("val", v)


def reference(doc, actions, proposal, counters):
    """docs/policy.md, read literally, one rule at a time."""
    rules = doc["rules"]
    action = proposal["action"]
    refusers = {
        r["id"] for r in rules if r["kind"] == "allow_actions" and action not in r["actions"]
    }
    if refusers or action not in actions:
        return "deny", refusers or {r["id"] for r in rules if r["kind"] == "allow_actions"}
    params = proposal.get("params") or {}
    flags = proposal.get("flags") or []
    value_param, currency_param = actions[action]
    value = dec(params.get(value_param)) if value_param else None
    currency = params.get(currency_param) if currency_param else None
    currency = currency.strip().upper() if isinstance(currency, str) else ""
    caps = [r for r in rules if r["kind"] == "value_cap" and r["action"] == action]
    covered = any(c.get("currency", "").upper() in ("", currency) for c in caps)
    fired = {}
    for r in rules:
        if r["kind"] == "allow_actions" or r.get("action", action) != action:
            continue
        kind, fire = r["kind"], False
        if kind == "value_cap":
            cur = r.get("currency", "").upper()
            if cur and cur != currency:
                fire = not covered
            else:
                fire = value is None or value > dec(r["max"])
        elif kind == "flag":
            fire = r["flag"] in flags
        elif kind == "first_seen":
            subject = params.get(r["per"][6:])
            fire = subject is None or isinstance(subject, dict | list)
            fire = fire or not counters.seen.get(r["id"], False)
        elif kind == "rate_limit":
            if r["per"] != "workflow":
                subject = params.get(r["per"][6:])
                if subject is None or isinstance(subject, dict | list):
                    fired[r["id"]] = r["then"]
                    continue
            counter = counters.rates.get(r["id"])
            if counter is None:
                fire = True
            else:
                count, total = counter
                if "max_count" in r and count + 1 > r["max_count"]:
                    fire = True
                if "max_value" in r:
                    cur = r.get("currency", "").upper()
                    cannot = value is None or (cur and cur != currency)
                    fire = fire or cannot or Decimal(total) + value > dec(r["max_value"])
        elif kind == "condition":
            when = r["when"]
            op, present = when["op"], when["param"] in params
            x = params.get(when["param"])
            if op == "exists":
                fire = x is not None
            elif op == "missing":
                fire = x is None
            elif not present:
                fire = True
            elif op in ("lt", "lte", "gt", "gte"):
                n, bound = dec(x), dec(when["value"])
                fire = (
                    n is None
                    or {
                        "lt": n < bound if n is not None else True,
                        "lte": n <= bound if n is not None else True,
                        "gt": n > bound if n is not None else True,
                        "gte": n >= bound if n is not None else True,
                    }[op]
                )
            elif op in ("eq", "ne"):
                same = eq_key(x) == eq_key(when["value"])
                fire = same if op == "eq" else not same
            else:
                inside = eq_key(x) in {eq_key(v) for v in when["value"]}
                fire = inside if op == "in" else not inside
        if fire:
            fired[r["id"]] = r["then"]
    if "deny" in fired.values():
        return "deny", set(fired)
    return ("escalate" if fired else "allow"), set(fired)


def reference_counters(doc, spec):
    rates = {
        r["id"]: (spec["count"], Decimal(spec["total"]))
        for r in doc["rules"]
        if r["kind"] == "rate_limit"
    }
    seen = {r["id"]: spec["seen"] for r in doc["rules"] if r["kind"] == "first_seen"}
    return Counters(rates=rates, seen=seen)


PROP_ACTIONS = {"a": ("amount", "currency"), "b": ("amount", ""), "c": ("", "")}
SCALARS = st.one_of(
    st.sampled_from(["DE", "NL", "FR", "x", "", "1", "10.5"]),
    st.integers(-3, 12),
    st.sampled_from([0.5, 1.0, 10.0, True, False, None]),
)
MONEY = st.one_of(
    st.sampled_from(["200.00", "200.01", "199.99", "200.004999999", "0", "50", "abc"]),
    st.integers(0, 400),
    st.sampled_from([200.0, 200.01, 150.5, None, True]),
)
THEN = st.sampled_from(["escalate", "deny"])
SOME_ACTION = st.sampled_from(["a", "b", "c"])


@st.composite
def rule_docs(draw, rid):
    kind = draw(st.sampled_from(["value_cap", "flag", "rate_limit", "condition", "first_seen"]))
    base = {"id": rid, "kind": kind, "then": draw(THEN), "control": "rbac"}
    if kind == "value_cap":
        base |= {"action": draw(st.sampled_from(["a", "b"])), "max": draw(
            st.sampled_from(["200.00", 200, "150.5", "0"]))}  # fmt: skip
        if base["action"] == "a" and draw(st.booleans()):
            base["currency"] = draw(st.sampled_from(["EUR", "USD"]))
    elif kind == "flag":
        base["flag"] = draw(st.sampled_from(["f1", "f2"]))
        if draw(st.booleans()):
            base["action"] = draw(SOME_ACTION)
    elif kind == "rate_limit":
        base |= {"action": draw(st.sampled_from(["a", "b"])), "window_seconds": 60,
                 "per": draw(st.sampled_from(["workflow", "param:who"]))}  # fmt: skip
        if draw(st.booleans()):
            base["max_count"] = draw(st.integers(0, 3))
        if "max_count" not in base or draw(st.booleans()):
            base["max_value"] = draw(st.sampled_from(["100", "250.50"]))
    elif kind == "first_seen":
        base["per"] = "param:who"
        if draw(st.booleans()):
            base["action"] = draw(SOME_ACTION)
    else:
        op = draw(st.sampled_from(["eq", "ne", "in", "not_in", "lt", "lte", "gt", "gte",
                                   "exists", "missing"]))  # fmt: skip
        when = {"param": draw(st.sampled_from(["x", "y"])), "op": op}
        if op in ("in", "not_in"):
            when["value"] = draw(st.lists(SCALARS, min_size=1, max_size=3))
        elif op in ("eq", "ne"):
            when["value"] = draw(SCALARS)
        elif op not in ("exists", "missing"):
            when["value"] = draw(st.sampled_from(["1", 5, "10.5", 0]))
        base["when"] = when
        if draw(st.booleans()):
            base["action"] = draw(SOME_ACTION)
    return base


@st.composite
def envelopes(draw):
    allowed = draw(st.lists(SOME_ACTION, unique=True))
    n = draw(st.integers(0, 12))
    rules = [{"id": "allow", "kind": "allow_actions", "actions": allowed, "control": "rbac"}]
    rules += [draw(rule_docs(f"r{i}")) for i in range(n)]
    return {"audit_sample_rate": 0.1, "rules": rules}


@st.composite
def proposals(draw):
    params = {}
    for name, values in (("amount", MONEY), ("currency", st.sampled_from(["EUR", "usd", "GBP"])),
                         ("x", SCALARS), ("y", SCALARS), ("who", SCALARS)):  # fmt: skip
        if draw(st.booleans()):
            params[name] = draw(values)
    flags = draw(st.lists(st.sampled_from(["f1", "f2", "f3"]), max_size=2))
    return {"action": draw(st.sampled_from(["a", "b", "c", "zz"])), "params": params,
            "flags": flags}  # fmt: skip


@st.composite
def counter_specs(draw):
    return {
        "seen": draw(st.booleans()),
        "count": draw(st.integers(0, 4)),
        "total": draw(st.sampled_from(["0", "50", "100", "249.50"])),
    }


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(doc=envelopes(), proposal=proposals(), spec=counter_specs(), drop=st.booleans())
def test_evaluation_agrees_with_the_reference_and_never_allows_what_a_rule_forbids(
    doc, proposal, spec, drop
):
    counters = reference_counters(doc, spec)
    if drop:
        counters = Counters()
    decision = evaluate(compiled(doc, PROP_ACTIONS), proposal, counters)
    outcome, fired = reference(doc, PROP_ACTIONS, proposal, counters)
    assert (decision.outcome, set(decision.rules_fired)) == (outcome, fired)
    assert len(decision.reasons) == len(decision.rules_fired)
    if fired:
        assert decision.outcome != "allow"


@settings(max_examples=300, deadline=None)
@given(
    doc=envelopes(),
    proposal=proposals(),
    spec=counter_specs(),
    raise_by=st.sampled_from(["0.01", "1", "100", "0.000001"]),
)
def test_raising_the_value_never_turns_a_refusal_into_an_allow(doc, proposal, spec, raise_by):
    # The generated conditions look at x and y, never at the value parameter.
    policy = compiled(doc, PROP_ACTIONS)
    counters = reference_counters(doc, spec)
    amount = dec(proposal["params"].get("amount"))
    if amount is None:
        return
    higher = {**proposal, "params": {**proposal["params"], "amount": str(amount + Decimal(
        raise_by))}}  # fmt: skip
    rank = {"allow": 0, "escalate": 1, "deny": 2}
    before = evaluate(policy, proposal, counters).outcome
    after = evaluate(policy, higher, counters).outcome
    # Caps and value limits can only fire more: never back to allow, never deny → escalate.
    assert rank[after] >= rank[before]


def test_policy_text_never_becomes_code():
    # Names, values and ids that would break out of a string literal or a format field if
    # compile_policy ever spelled them into its generated source.
    evil = '"), __import__("os").system("false"), ("{0}\n'
    doc = {
        "audit_sample_rate": 0,
        "rules": [
            CONTRACT["rules"][0],
            {"id": evil, "kind": "condition", "when": {"param": evil, "op": "eq", "value": evil},
             "then": "deny", "control": "rbac"},
            {"id": "f", "kind": "flag", "flag": evil, "then": "escalate", "control": "rbac"},
        ],
    }  # fmt: skip
    policy = compiled(doc)
    assert evil not in policy.plans["refund.issue"].source
    hit = evaluate(policy, refund(params={evil: evil}, flags=[evil]), QUIET)
    assert hit.outcome == "deny" and hit.rules_fired == (evil, "f")
    miss = evaluate(policy, refund(params={evil: "benign"}), QUIET)
    assert miss.outcome == "allow"


JSON = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.floats(),
        st.sampled_from(["refund.issue", "EUR", "param:x", "workflow", "1e999", "-1", "x"]),
    ),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8),
                                                                         inner, max_size=4)),
    max_leaves=12,
)  # fmt: skip
FIELD_NAMES = ["id", "kind", "control", "then", "action", "actions", "max", "currency", "flag",
               "window_seconds", "max_count", "max_value", "per", "when", "note"]  # fmt: skip
FUZZ_RULE = st.dictionaries(
    st.sampled_from(FIELD_NAMES),
    st.one_of(
        JSON,
        st.sampled_from(list(("allow_actions", "value_cap", "flag", "rate_limit", "condition",
                              "first_seen", "deny", "escalate", "rbac"))),
        st.fixed_dictionaries({"param": JSON, "op": st.sampled_from(["eq", "in", "lt", "x"]),
                               "value": JSON}),
    ),
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(
    doc=st.one_of(
        JSON,
        st.fixed_dictionaries(
            {"audit_sample_rate": JSON, "rules": st.lists(FUZZ_RULE, max_size=5)}
        ),
    )
)
def test_any_document_is_either_a_policy_or_a_named_refusal(doc):
    try:
        policy = parse_policy(doc, actions=ACTIONS)
    except Unprocessable as err:
        assert err.code == "invalid_policy" and err.details
        assert all(set(p) == {"rule", "field", "problem"} for p in err.details)
    else:
        assert len(policy_text(policy)) == len(policy.rules) + 1
        decision = evaluate(compile_policy(policy, actions=ACTIONS), refund(), QUIET)
        assert decision.outcome in ("allow", "escalate", "deny")


CAPS = st.decimals(min_value=0, max_value=10**6, places=2, allow_nan=False, allow_infinity=False)
CURRENCIES = st.sampled_from(["EUR", "USD", "GBP", "JPY", "CHF"])


@settings(max_examples=300, deadline=None)
@given(
    cap=CAPS,
    currency=CURRENCIES,
    other=CURRENCIES,
    spelling=st.sampled_from(["str", "num", "padded"]),
)
def test_caps_hold_at_their_boundary_in_every_spelling_and_currency(cap, currency, other, spelling):
    doc = {"audit_sample_rate": 0, "rules": [
        CONTRACT["rules"][0],
        {"id": "cap", "kind": "value_cap", "action": "refund.issue", "max": str(cap),
         "currency": currency, "then": "escalate", "control": "value_cap"}]}  # fmt: skip
    policy = compiled(doc)

    def spelled(value: Decimal):
        if spelling == "num":
            return float(value) if value != value.to_integral() else int(value)
        if spelling == "padded":
            return f" {value:.4f} "
        return str(value)

    def outcome(value: Decimal, cur: str) -> str:
        return evaluate(
            policy, refund(params={"amount": spelled(value), "currency": cur}), QUIET
        ).outcome

    assert outcome(cap, currency) == "allow"  # inclusive
    assert outcome(cap, currency.lower()) == "allow"  # codes compare without case
    assert outcome(cap + Decimal("0.01"), currency) == "escalate"
    if cap >= Decimal("0.01"):
        assert outcome(cap - Decimal("0.01"), currency) == "allow"
    if other != currency:
        # No cap covers this currency: nothing converts, so a person decides.
        assert outcome(cap, other) == "escalate"
