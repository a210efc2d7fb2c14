"""The `support-refund` workflow's action types, shared by the simulation and by
`seed_demo` (which builds the same workflow when the simulation has not run), and the
few orders the demo's hand-made runs refund."""

from datetime import UTC, datetime
from decimal import Decimal

from ladder.rungs import Executor

REFUND_SCHEMA = {
    "order_id": {"type": "string", "required": True},
    "amount": {"type": "number", "required": True},
    "currency": {"type": "string", "required": True},
    "reason": {"type": "string"},
}
REVERSE_SCHEMA = {**REFUND_SCHEMA, "reverses_run": {"type": "string"}}
REPLY_SCHEMA = {
    "to": {"type": "string", "required": True},
    "subject": {"type": "string", "required": True},
    "body": {"type": "string", "required": True},
}
# In seed_demo's format: refunds are consequential and reversible (their compensation is
# refund.reverse, also run by the server); replies are the agent's own, low-risk action.
ACTIONS = [
    {
        "name": "refund.issue",
        "schema": REFUND_SCHEMA,
        "value": "amount",
        "reversible": True,
        "executor": Executor.SERVER,
        "path": "examples.refunds.executors.refund_issue",
        "compensation": "refund.reverse",
    },
    {
        "name": "refund.reverse",
        "schema": REVERSE_SCHEMA,
        "value": "amount",
        "executor": Executor.SERVER,
        "path": "examples.refunds.executors.refund_reverse",
    },
    {"name": "reply.send", "schema": REPLY_SCHEMA},
]

# The orders of seed_demo's hand-made refund runs and of examples/refund_agent.py.
DEMO_ORDERS = {
    "A-1040": "37.00",
    "A-1041": "84.00",
    "A-1042": "240.00",
    "A-1043": "15.98",
    "A-1044": "128.50",
}


def demo_orders() -> None:
    """Put the demo's orders in the shop's ledger, once."""
    from examples.refunds.models import Customer, Order

    for i, (number, total) in enumerate(DEMO_ORDERS.items(), start=1):
        customer, _ = Customer.objects.get_or_create(reference=f"DEMO-C{i:05d}")
        Order.objects.get_or_create(
            number=number,
            defaults={
                "customer": customer,
                "total": Decimal(total),
                "currency": "EUR",
                "placed_at": datetime(2026, 1, 5, tzinfo=UTC),
            },
        )
