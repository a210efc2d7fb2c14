"""The value param lands in numeric(18, 4): the decide layer refuses what it cannot hold
exactly, naming the param (security review, finding 9)."""

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ladder.decide import ActionRules, WorkflowRules, decide
from ladder.errors import Unprocessable

REFUND = ActionRules(
    name="refund.issue",
    value_param="amount",
    currency_param="currency",
    param_schema={"amount": {"type": "number", "required": True}},
)
LOOSE = ActionRules(name="note.add", value_param="amount")  # no declared type
RULES = WorkflowRules(slug="wf", rung=3, actions={"refund.issue": REFUND, "note.add": LOOSE})


def _decide(amount, action="refund.issue"):
    return decide(RULES, {"action": action, "params": {"amount": amount, "currency": "EUR"}})


@pytest.mark.parametrize(
    ("amount", "problem"),
    [
        (1e20, "must be below 100,000,000,000,000 in absolute value"),
        (-1e15, "must be below 100,000,000,000,000 in absolute value"),
        (10**14, "must be below 100,000,000,000,000 in absolute value"),
        ("1e400", "must be below 100,000,000,000,000 in absolute value"),
        ("1e999999999", "must be below 100,000,000,000,000 in absolute value"),
        ("99999999999999.99999", "may have at most 4 decimal places"),
        (1e-10, "may have at most 4 decimal places"),
        ("1e-400", "may have at most 4 decimal places"),
    ],
)
def test_a_value_the_run_row_cannot_hold_is_a_422_naming_the_param(amount, problem):
    with pytest.raises(Unprocessable) as err:
        _decide(amount)
    assert err.value.message == f"proposal.params.amount: {problem}"
    assert err.value.details == {"field": "proposal.params.amount", "problem": problem}


@pytest.mark.parametrize("amount", ["Infinity", "-inf", "NaN", "sNaN", "twelve", True, [1], {}])
def test_a_value_param_without_a_declared_type_must_still_be_a_finite_number(amount):
    with pytest.raises(Unprocessable, match=r"^proposal\.params\.amount: must be"):
        _decide(amount, action="note.add")


@pytest.mark.parametrize(
    ("amount", "value"),
    [
        (99_999_999_999_999.9999, None),  # a float: 18 digits are beyond its precision
        ("99999999999999.9999", Decimal("99999999999999.9999")),
        ("-99999999999999.9999", Decimal("-99999999999999.9999")),
        (99_999_999_999_999, Decimal("99999999999999")),
        ("12.50000", Decimal("12.5")),
        (0.0001, Decimal("0.0001")),
        ("1E+3", Decimal(1000)),
    ],
)
def test_the_largest_and_finest_values_that_fit_are_kept_exactly(amount, value):
    if value is None:
        with pytest.raises(Unprocessable):
            _decide(amount)
        return
    assert _decide(amount).value == value


def test_no_value_param_is_no_value():
    assert _decide(None, action="note.add").value is None


_numbers = st.one_of(
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.decimals(allow_nan=True, allow_infinity=True).map(str),
    st.builds(lambda m, e: f"{m}e{e}", st.integers(-(10**6), 10**6), st.integers(-500, 500)),
    st.text(max_size=20),
)


@given(amount=_numbers)
def test_any_value_is_either_kept_exactly_or_refused_naming_the_param(amount):
    try:
        decision = _decide(amount, action="note.add")
    except Unprocessable as exc:
        assert exc.message.startswith("proposal.params.amount: ")
        return
    assert decision.value == Decimal(str(amount).strip())
    assert abs(decision.value) < Decimal(10) ** 14
    assert decision.value == decision.value.quantize(Decimal("0.0001"))
