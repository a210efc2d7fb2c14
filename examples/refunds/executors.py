"""The server executors of the example's refund actions, against the shop's ledger.

`refund.issue` pays back part or all of an order, once per idempotency key; it refuses
(and the run ends `failed`) an unknown order, a currency that is not the order's, or an
amount above what is left to refund. `refund.reverse` is its compensation: it takes back
the refund its run made, once.
"""

from decimal import Decimal, InvalidOperation

from django.db import IntegrityError, transaction

from examples.refunds.models import Order, Refund, Reversal
from traces.executors import executor


class RefundRefused(Exception):
    """The ledger will not pay this refund."""


def _amount(params: dict) -> Decimal:
    try:
        amount = Decimal(str(params.get("amount"))).quantize(Decimal("0.01"))
    except (InvalidOperation, ValueError) as exc:
        raise RefundRefused(f"amount {params.get('amount')!r} is not a number") from exc
    if amount <= 0:
        raise RefundRefused(f"amount {amount} is not positive")
    return amount


@executor(idempotent=True)
def refund_issue(*, action: str, params: dict, idempotency_key: str) -> dict:
    done = Refund.objects.filter(idempotency_key=idempotency_key).first()
    if done is not None:  # a retried call: the refund was paid the first time
        return _issued(done, replayed=True)
    amount = _amount(params)
    with transaction.atomic():
        order = Order.objects.select_for_update().filter(number=params.get("order_id")).first()
        if order is None:
            raise RefundRefused(f"no order {params.get('order_id')!r}")
        if params.get("currency", order.currency) != order.currency:
            raise RefundRefused(f"order {order.number} was paid in {order.currency}")
        left = order.total - order.refunded()
        if amount > left:
            raise RefundRefused(
                f"{amount} {order.currency} is more than the {left} left on {order.number}"
            )
        try:
            with transaction.atomic():
                refund = Refund.objects.create(
                    idempotency_key=idempotency_key,
                    order=order,
                    amount=amount,
                    currency=order.currency,
                    reason=str(params.get("reason") or "")[:200],
                )
        except IntegrityError:
            return _issued(Refund.objects.get(idempotency_key=idempotency_key), replayed=True)
    return _issued(refund, replayed=False)


def _issued(refund: Refund, *, replayed: bool) -> dict:
    return {
        "refund_id": refund.pk,
        "order_id": refund.order.number,
        "amount": str(refund.amount),
        "currency": refund.currency,
        "replayed": replayed,
    }


@executor(idempotent=True)
def refund_reverse(*, action: str, params: dict, idempotency_key: str) -> dict:
    """Reverse the refund that run `reverses_run` made (a drill's compensation passes it),
    else the newest live refund of `order_id`."""
    run_id = params.get("reverses_run")
    refund = (
        Refund.objects.filter(idempotency_key=run_id).first()
        if run_id
        else Refund.objects.filter(order__number=params.get("order_id"), reversal__isnull=True)
        .order_by("-pk")
        .first()
    )
    if refund is None:
        raise RefundRefused(f"no refund to reverse for {run_id or params.get('order_id')!r}")
    reversal, created = Reversal.objects.get_or_create(
        refund=refund, defaults={"idempotency_key": idempotency_key}
    )
    return {
        "reversal_id": reversal.pk,
        "refund_id": refund.pk,
        "amount": str(refund.amount),
        "currency": refund.currency,
        "replayed": not created,
    }
