"""Any amount an agent sends is either stored exactly on the run row or refused with a
4xx naming the field; never a 500 from numeric overflow (security review, finding 9)."""

import json
from decimal import Decimal
from itertools import count

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from traces.models import Run

pytestmark = pytest.mark.django_db

_keys = count()


def _submit(agent, wf, amount):
    return agent.post(
        "/runs",
        {
            "workflow": wf.slug,
            "idempotency_key": f"amount-{next(_keys)}",
            "input": {"m": "refund"},
            "proposal": {"action": "refund.issue", "params": {"order_id": "A-1", "amount": amount}},
        },
    )


@pytest.mark.parametrize("amount", [1e20, "1e400", -1e15, "1e20", 1e14, "-99999999999999.99995"])
def test_an_amount_the_run_row_cannot_hold_is_a_422_naming_it(make_workflow, agent, amount):
    wf = make_workflow(rung=3)
    resp = _submit(agent(wf), wf, amount)
    assert resp.status_code == 422, resp.content
    error = resp.json()["error"]
    assert error["code"] == "invalid_params"
    assert error["message"].startswith("proposal.params.amount: ")
    assert not Run.objects.exists()


def test_the_largest_amount_that_fits_is_stored_exactly(make_workflow, agent):
    wf = make_workflow(rung=3)
    resp = _submit(agent(wf), wf, "-99999999999999.9999")
    assert resp.status_code == 201, resp.content
    assert Run.objects.get(pk=resp.json()["id"]).value == Decimal("-99999999999999.9999")


_amounts = st.one_of(
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=False, allow_infinity=False),
    st.decimals(allow_nan=True, allow_infinity=True).map(str),
    st.builds(lambda m, e: f"{m}e{e}", st.integers(-(10**6), 10**6), st.integers(-420, 420)),
)


@settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(amount=_amounts)
def test_any_amount_is_stored_exactly_or_refused_naming_the_field(make_workflow, agent, amount):
    wf = make_workflow(rung=3)
    resp = _submit(agent(wf), wf, amount)
    if resp.status_code == 201:
        stored = Run.objects.get(pk=resp.json()["id"]).value
        # What the agent sent, read as JSON reads it (a float is its shortest repr).
        sent = json.loads(json.dumps(amount))
        assert stored == Decimal(str(sent).strip())
    else:
        assert 400 <= resp.status_code < 500, resp.content
        assert "amount" in resp.json()["error"]["message"]
