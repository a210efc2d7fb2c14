"""A little demo history, submitted through the real gateway service (so it is redacted,
chained and decided exactly as agent traffic would be). Idempotent by fixed keys."""

from django.contrib.auth.models import User

from ladder.models import Workflow
from traces.auth import AgentAuth
from traces.models import AgentToken
from traces.services.gateway import run_submit

CUSTOMERS = [
    ("Maria Novak", "maria.novak@example.com", "+49 1512 3456610"),
    ("Omar Silva", "omar.silva@example.co.uk", "+44 7400 123045"),
    ("Yuki Jansen", "yuki.jansen@mail.example.org", "+31 6 12345328"),
    ("Liam Murphy", "liam.murphy@example.net", "+353 85 012 3172"),
    ("Chloe Dubois", "chloe.dubois@kunde.example.de", "+33 6 12 34 54 54"),
]


def _auth() -> AgentAuth:
    token, _ = AgentToken.objects.get_or_create(
        name="demo seed", defaults={"prefix": "lat_demo", "token_hash": "0" * 64}
    )
    ids = set(Workflow.objects.values_list("id", flat=True))
    token.workflows.set(ids)
    return AgentAuth(token_id=token.pk, prefix=token.prefix, workflow_ids=frozenset(ids))


def _tool(name, arguments, result):
    return {"name": name, "arguments": arguments, "result": result}


def _bodies():
    for i, (name, email, phone) in enumerate(CUSTOMERS):
        order = f"A-{1040 + i}"
        amount = [18.5, 42.0, 120.0, 7.99, 64.25][i]
        yield (
            "faq-answer",
            {
                "workflow": "faq-answer",
                "idempotency_key": f"demo-faq-{i}",
                "input": {"question": f"Do you ship to Ireland? (asked by {email})"},
                "output": {"answer": "Yes, in 3-5 working days."},
            },
        )
        yield (
            "support-reply",
            {
                "workflow": "support-reply",
                "idempotency_key": f"demo-reply-{i}",
                "input": {
                    "ticket": f"T-{880 + i}",
                    "customer_name": name,
                    "message": f"Where is my order {order}? Call me on {phone}.",
                },
                "tool_calls": [
                    _tool(
                        "orders.lookup",
                        {"order_id": order},
                        {"status": "in transit", "carrier": "DHL"},
                    )
                ],
                "proposal": {
                    "action": "reply.send",
                    "summary": f"Tell the customer {order} is in transit",
                    "params": {
                        "to": email,
                        "subject": f"Your order {order}",
                        "body": f"Hello {name},\n\nyour order {order} is on its way with "
                        "DHL and should arrive within two days.\n\nBest regards",
                    },
                },
            },
        )
        yield (
            "refund-recommend",
            {
                "workflow": "refund-recommend",
                "idempotency_key": f"demo-recommend-{i}",
                "input": {
                    "ticket": f"T-{900 + i}",
                    "customer_name": name,
                    "message": f"My parcel {order} arrived damaged. Refund to {email}?",
                },
                "tool_calls": [
                    _tool(
                        "orders.lookup",
                        {"order_id": order},
                        {"total": amount, "currency": "EUR", "delivered": True},
                    )
                ],
                "proposal": {
                    "action": "refund.issue",
                    "summary": f"Refund {order} in full",
                    "params": {
                        "order_id": order,
                        "amount": amount,
                        "currency": "EUR",
                        "reason": "damaged",
                    },
                    "alternatives": [
                        {
                            "action": "refund.issue",
                            "score": 0.61,
                            "params": {
                                "order_id": order,
                                "amount": round(amount / 2, 2),
                                "currency": "EUR",
                                "reason": "partial: damaged",
                            },
                        },
                        {
                            "action": "voucher.issue",
                            "score": 0.34,
                            "params": {
                                "order_id": order,
                                "amount": 10.0,
                                "currency": "EUR",
                                "reason": "goodwill",
                            },
                        },
                    ],
                    "flags": ["fraud_adjacent"] if i == 2 else [],
                },
            },
        )
        yield (
            "support-refund",
            {
                "workflow": "support-refund",
                "idempotency_key": f"demo-refund-{i}",
                "input": {
                    "ticket": f"T-{920 + i}",
                    "customer_name": name,
                    "message": f"I was charged twice for {order}. IBAN DE98 7043 4192 "
                    "5412 2482 44 please.",
                },
                "tool_calls": [
                    _tool(
                        "payments.search",
                        {"order_id": order},
                        {"charges": [amount, amount], "currency": "EUR"},
                    )
                ],
                "proposal": {
                    "action": "refund.issue",
                    "summary": f"Refund duplicate charge on {order}",
                    "params": {
                        "order_id": order,
                        "amount": amount,
                        "currency": "EUR",
                        "reason": "duplicate charge",
                    },
                },
            },
        )
        yield (
            "shipping-update",
            {
                "workflow": "shipping-update",
                "idempotency_key": f"demo-ship-{i}",
                "input": {"order_id": order, "event": "out for delivery"},
                "proposal": {
                    "action": "notify.send",
                    "summary": f"Tell the customer {order} is out for delivery",
                    "params": {
                        "to": phone,
                        "channel": "sms",
                        "message": f"Your parcel {order} is out for delivery today.",
                    },
                },
            },
        )


def seed_history(*, people: dict[str, User]) -> dict[str, int]:
    """Submit the demo runs; on first creation, decide a few of them the way a reviewer
    would (through the same services), so the demo has decisions, diffs and executions
    to look at as well as a queue."""
    auth = _auth()
    created = 0
    runs = {}
    for slug, body in _bodies():
        run, was_created = run_submit(auth=auth, body=body)
        created += was_created
        if was_created:
            runs.setdefault(slug, []).append(run)
    decided = _decide_some(runs, reviewer=people["reviewer"])
    return {"runs created": created, "decided": decided}


def _decide_some(runs: dict[str, list], *, reviewer: User) -> int:
    from django.db import transaction

    from approvals import services
    from traces.models import Run

    def decide(run, decision):
        fresh = Run.objects.select_related("workflow").get(pk=run.pk)
        opened = services.review_open(run=fresh, user=reviewer)
        with transaction.atomic():
            services.review_decide(
                run=fresh,
                reviewer=reviewer,
                seen_hash=opened.hash,
                seen_version=fresh.version,
                decision=decision,
            )

    plan = []
    if runs.get("support-reply"):
        draft = runs["support-reply"][0]
        params = dict(draft.proposal["params"])
        params["body"] = params["body"].replace(
            "should arrive within two days", "will arrive tomorrow"
        )
        plan.append((draft, services.DraftSubmission(params=params)))
    if runs.get("refund-recommend"):
        plan.append((runs["refund-recommend"][0], services.Pick(option=0)))
        plan.append((runs["refund-recommend"][1], services.Pick(option=1)))
    if runs.get("support-refund"):
        plan.append((runs["support-refund"][0], services.Approval(approve=True)))
        plan.append(
            (
                runs["support-refund"][1],
                services.Approval(approve=False, reason="already refunded by phone"),
            )
        )
    for run, decision in plan:
        decide(run, decision)
    return len(plan)
