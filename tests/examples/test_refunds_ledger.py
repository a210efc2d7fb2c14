"""The example shop's ledger and executors, and `simulate`'s refusals (fast: nothing is
played here; tests/examples/test_worked_example.py plays the whole story)."""

from datetime import UTC, datetime
from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from examples.refunds.executors import RefundRefused, refund_issue, refund_reverse
from examples.refunds.models import Customer, Order, Refund, Reversal
from ladder.models import Workflow

pytestmark = pytest.mark.django_db


@pytest.fixture
def order():
    customer = Customer.objects.create(reference="T-C00001")
    return Order.objects.create(
        number="T-000001",
        customer=customer,
        total=Decimal("80.00"),
        currency="EUR",
        placed_at=datetime(2026, 10, 1, tzinfo=UTC),
    )


def issue(key, **params):
    return refund_issue(action="refund.issue", params=params, idempotency_key=key)


def test_a_refund_is_paid_once_per_key(order):
    first = issue("run-1", order_id=order.number, amount=30.5, currency="EUR")
    again = issue("run-1", order_id=order.number, amount=30.5, currency="EUR")
    assert first["replayed"] is False and again["replayed"] is True
    assert first["refund_id"] == again["refund_id"]
    assert Refund.objects.get().amount == Decimal("30.50")


@pytest.mark.parametrize(
    ("params", "why"),
    [
        ({"order_id": "T-000001", "amount": 80.01, "currency": "EUR"}, r"more than the 80\.00"),
        ({"order_id": "T-999999", "amount": 5, "currency": "EUR"}, "no order"),
        ({"order_id": "T-000001", "amount": 5, "currency": "USD"}, "paid in EUR"),
        ({"order_id": "T-000001", "amount": "five", "currency": "EUR"}, "not a number"),
        ({"order_id": "T-000001", "amount": 0, "currency": "EUR"}, "not positive"),
    ],
)
def test_the_ledger_refuses_what_it_cannot_pay(order, params, why):
    with pytest.raises(RefundRefused, match=why):
        issue("run-x", **params)
    assert not Refund.objects.exists()


def test_what_is_left_to_refund_counts_earlier_refunds_but_not_reversed_ones(order):
    issue("run-1", order_id=order.number, amount=60, currency="EUR")
    with pytest.raises(RefundRefused, match=r"more than the 20\.00 left"):
        issue("run-2", order_id=order.number, amount=30, currency="EUR")
    refund_reverse(
        action="refund.reverse", params={"reverses_run": "run-1"}, idempotency_key="rb-1"
    )
    issue("run-2", order_id=order.number, amount=30, currency="EUR")
    assert order.refunded() == Decimal("30.00")


def test_a_reversal_happens_once(order):
    issue("run-1", order_id=order.number, amount=10, currency="EUR")
    params = {"order_id": order.number, "amount": 10, "reverses_run": "run-1"}
    first = refund_reverse(action="refund.reverse", params=params, idempotency_key="rb-1")
    again = refund_reverse(action="refund.reverse", params=params, idempotency_key="rb-2")
    assert (first["replayed"], again["replayed"]) == (False, True)
    assert Reversal.objects.count() == 1
    with pytest.raises(RefundRefused, match="no refund to reverse"):
        refund_reverse(
            action="refund.reverse", params={"reverses_run": "run-9"}, idempotency_key="rb-3"
        )


def simulate(*args):
    out = StringIO()
    call_command("simulate", *args, stdout=out)
    return out.getvalue()


def test_simulate_refuses_too_few_runs_a_bad_slug_and_an_existing_workflow(settings):
    with pytest.raises(CommandError, match="at least 2000"):
        simulate("support-refund", "--runs", "1999")
    with pytest.raises(CommandError, match="not a workflow slug"):
        simulate("Support Refund!")
    Workflow.objects.create(slug="taken", name="Taken")
    with pytest.raises(CommandError, match="exists already"):
        simulate("taken")
    assert "played before" in simulate("taken", "--if-new")
    settings.LADDER_DEV_MODE = False
    with pytest.raises(CommandError, match="development mode only"):
        simulate("support-refund")
    assert not Workflow.objects.filter(slug="support-refund").exists()
