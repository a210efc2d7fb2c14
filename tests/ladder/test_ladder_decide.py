from decimal import Decimal

import pytest

from ladder.decide import ActionRules, Queue, Route, WorkflowRules, decide, validate_params
from ladder.errors import Conflict, Unprocessable

REFUND = ActionRules(
    name="refund.issue",
    value_param="amount",
    currency_param="currency",
    param_schema={"amount": {"type": "number", "required": True}},
)


def rules(rung):
    return WorkflowRules(slug="wf", rung=rung, actions={"refund.issue": REFUND})


PROPOSAL = {"action": "refund.issue", "params": {"amount": 120, "currency": "EUR"}}


@pytest.mark.parametrize(
    ("rung", "queue"),
    [(1, Queue.L1), (2, Queue.L2), (3, Queue.L3), (4, Queue.ESCALATED), (5, Queue.ESCALATED)],
)
def test_each_rung_routes_a_proposal_to_its_queue(rung, queue):
    decision = decide(rules(rung), PROPOSAL)
    assert decision.route == Route.REVIEW and decision.queue == queue
    assert decision.value == Decimal("120") and decision.currency == "EUR"


def test_l0_refuses_any_action():
    with pytest.raises(Conflict) as err:
        decide(rules(0), PROPOSAL)
    assert err.value.status == 409


def test_no_proposal_is_only_recorded_on_any_rung():
    for rung in range(6):
        assert decide(rules(rung), None).route == Route.RECORD


def test_an_unknown_action_names_the_known_ones():
    with pytest.raises(Unprocessable, match=r"known: refund\.issue"):
        decide(rules(3), {"action": "wire.send", "params": {}})


def test_alternatives_of_unknown_types_are_kept_but_known_ones_validated():
    odd = {**PROPOSAL, "alternatives": [{"action": "coupon.issue", "params": {}}]}
    assert decide(rules(2), odd).queue == Queue.L2


def test_money_as_a_decimal_string_is_a_number():
    decision = decide(rules(3), {"action": "refund.issue", "params": {"amount": "12.50"}})
    assert decision.value == Decimal("12.50")


def test_alternatives_are_validated_too():
    bad = {**PROPOSAL, "alternatives": [{"action": "refund.issue", "params": {"amount": "x"}}]}
    with pytest.raises(Unprocessable, match="amount"):
        decide(rules(2), bad)


@pytest.mark.parametrize(
    ("params", "problem"),
    [
        ({}, "'amount' is required"),
        ({"amount": "12 EUR"}, "'amount' must be of type number"),
        ({"amount": True}, "'amount' must be of type number"),
    ],
)
def test_params_are_checked_against_the_schema(params, problem):
    with pytest.raises(Unprocessable, match=problem):
        validate_params(REFUND.param_schema, params)


def test_a_non_finite_value_is_refused_naming_the_param():
    # Once left empty; a value param that is present must now be a number the run can hold
    # (tests/ladder/test_decide_value.py).
    with pytest.raises(Unprocessable, match=r"^proposal\.params\.amount: must be a finite"):
        decide(rules(3), {"action": "refund.issue", "params": {"amount": float("nan")}})
