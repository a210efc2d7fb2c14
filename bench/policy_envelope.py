"""The 100-rule envelope bench/policy.py measures (also used by tests as a realistic shape)."""

from __future__ import annotations

import random

ACTIONS = {
    "refund.issue": ("amount", "currency"),
    "credit.issue": ("amount", "currency"),
    "coupon.issue": ("value", "currency"),
    "replacement.ship": ("order_value", "currency"),
    "notify.send": ("", ""),
    "account.close": ("", ""),
}
ALLOWED = ["refund.issue", "credit.issue", "coupon.issue", "replacement.ship", "notify.send"]
MONEY = ["refund.issue", "credit.issue", "coupon.issue", "replacement.ship"]
CURRENCIES = ["EUR", "USD", "GBP"]
FLAGS = [
    "fraud_adjacent",
    "chargeback_open",
    "legal_hold",
    "vip",
    "minor",
    "deceased",
    "bankruptcy",
    "sanctions_hit",
    "complaint_regulator",
    "press",
    "employee",
    "duplicate",
]
COUNTRIES = ["DE", "NL", "FR", "BE", "AT", "GB", "US", "IE"]
CHANNELS = ["email", "chat", "phone", "web"]
TIERS = ["free", "basic", "pro", "enterprise"]


def envelope() -> dict:
    """100 rules of every kind over 5 allowed actions (one more known but not allowed)."""
    rules: list[dict] = [
        {"id": "actions", "kind": "allow_actions", "actions": ALLOWED, "control": "allowed_tools"}
    ]
    for action in MONEY:
        for currency, cap in zip(CURRENCIES, ("200.00", "220.00", "180.00"), strict=True):
            rules.append(
                {
                    "id": f"cap-{action}-{currency}",
                    "kind": "value_cap",
                    "action": action,
                    "max": cap,
                    "currency": currency,
                    "then": "escalate",
                    "control": "value_cap",
                }
            )
        rules.append(
            {
                "id": f"hardcap-{action}",
                "kind": "value_cap",
                "action": action,
                "max": "5000.00",
                "currency": "EUR",
                "then": "deny",
                "control": "value_cap",
            }
        )
        rules.append(
            {
                "id": f"rate-{action}",
                "kind": "rate_limit",
                "action": action,
                "window_seconds": 3600,
                "max_count": 100,
                "max_value": "5000.00",
                "per": "workflow",
                "then": "escalate",
                "control": "rate_limit",
            }
        )
        rules.append(
            {
                "id": f"rate-cust-{action}",
                "kind": "rate_limit",
                "action": action,
                "window_seconds": 86400,
                "max_count": 3,
                "per": "param:customer",
                "then": "escalate",
                "control": "rate_limit",
            }
        )
        rules.append(
            {
                "id": f"new-cust-{action}",
                "kind": "first_seen",
                "action": action,
                "per": "param:customer",
                "then": "escalate",
                "control": "rbac",
            }
        )
    for i, flag in enumerate(FLAGS):
        rules.append(
            {
                "id": f"flag-{flag}",
                "kind": "flag",
                "flag": flag,
                "then": "deny" if i % 3 == 0 else "escalate",
                "control": "rbac",
            }
        )
    rules.append(
        {
            "id": "country",
            "kind": "condition",
            "when": {"param": "country", "op": "not_in", "value": COUNTRIES[:6]},
            "then": "deny",
            "control": "data_scope",
        }
    )
    rules.append(
        {
            "id": "channel",
            "kind": "condition",
            "when": {"param": "channel", "op": "in", "value": ["phone"]},
            "then": "escalate",
            "control": "data_scope",
        }
    )
    i = 0
    while len(rules) < 100:
        action = ALLOWED[i % len(ALLOWED)]
        shape = i % 6
        rid = f"cond-{i}"
        if shape == 0:
            when = {"param": "items", "op": "gt", "value": 20 + i}
        elif shape == 1:
            when = {"param": "tier", "op": "eq", "value": "suspended"}
        elif shape == 2:
            when = {"param": "reason", "op": "missing"}
        elif shape == 3:
            when = {"param": "order_age_days", "op": "gte", "value": str(90 + i)}
        elif shape == 4:
            when = {"param": "country", "op": "in", "value": COUNTRIES[6:]}
        else:
            when = {"param": "customer_age_days", "op": "lt", "value": 3}
        scoped = {"action": action} if i % 3 else {}
        rules.append(
            {
                "id": rid,
                "kind": "condition",
                "when": when,
                **scoped,
                "then": "escalate" if i % 4 else "deny",
                "control": "data_scope",
            }
        )
        i += 1
    return {"audit_sample_rate": 0.05, "rules": rules}


def proposals(n: int, seed: int = 3) -> list[dict]:
    """Realistic proposals: mostly allowed, some over a cap, some flagged."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        action = rng.choice(ALLOWED)
        value_param, currency_param = ACTIONS[action]
        params = {
            "customer": f"c{rng.randrange(5000)}",
            "country": rng.choice(COUNTRIES[:6] * 20 + COUNTRIES),
            "channel": rng.choice(["email", "chat", "web"] * 10 + CHANNELS),
            "tier": rng.choice(TIERS * 30 + ["suspended"]),
            "items": rng.randrange(1, 22),
            "order_age_days": rng.randrange(0, 95),
            "customer_age_days": rng.randrange(2, 900),
            "reason": "late delivery",
        }
        if rng.random() < 0.03:
            del params["reason"]
        if value_param:
            params[value_param] = f"{rng.randrange(100, 23000) / 100:.2f}"
            params[currency_param] = rng.choice(CURRENCIES)
        flags = [rng.choice(FLAGS)] if rng.random() < 0.04 else []
        out.append({"action": action, "params": params, "flags": flags})
    return out
