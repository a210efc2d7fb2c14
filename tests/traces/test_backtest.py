"""The backtest's simulation on plain tuples (traces/backtest.py): sliding windows at their
edges, value limits per currency, what counts toward a limit, and the input it refuses.
The whole path through the API and the pages is tests/approvals/test_backtests.py."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from ladder.policy import compile_policy, parse_policy
from traces.backtest import Backtester, backtest

ACTIONS = {"refund.issue": ("amount", "currency")}
T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
ALLOW_ALL = {
    "id": "actions",
    "kind": "allow_actions",
    "actions": ["refund.issue"],
    "control": "allowed_tools",
}


def compiled(*rules):
    document = {"audit_sample_rate": 0, "rules": [ALLOW_ALL, *rules]}
    return compile_policy(parse_policy(document, actions=ACTIONS), actions=ACTIONS)


def row(n, seconds, amount, *, currency="EUR", status="executed", customer="C1", flags=()):
    proposal = {
        "action": "refund.issue",
        "params": {"amount": amount, "currency": currency, "customer": customer},
        "flags": list(flags),
    }
    value = None if amount is None else Decimal(str(amount))
    return (f"run-{n}", T0 + timedelta(seconds=seconds), proposal, status, value, currency)


def outcomes(result):
    return {k: result[k] for k in ("allowed", "escalated", "denied")}


def test_a_window_holds_what_was_allowed_after_its_start_not_at_it():
    # 1 per minute: (at - 60 s, at] holds the earlier allow until exactly 60 s later.
    policy = compiled(
        {
            "id": "minute",
            "kind": "rate_limit",
            "action": "refund.issue",
            "window_seconds": 60,
            "per": "workflow",
            "max_count": 1,
            "then": "escalate",
            "control": "rate_limit",
        }
    )
    result = backtest(
        policy,
        [
            row(1, 0, 5),  # allow
            row(2, 59, 5),  # escalate: #1 is 59 s old
            row(3, 60, 5),  # allow: #1 is exactly 60 s old, out of (0, 60]
            row(4, 60, 5),  # escalate: #3 at the same instant counts
            row(5, 121, 5),  # allow
        ],
    )
    assert outcomes(result) == {"allowed": 3, "escalated": 2, "denied": 0}
    assert result["rules_fired"] == {"minute": 2}


def test_a_value_limit_counts_its_own_currency_and_only_the_policys_allows():
    policy = compiled(
        {
            "id": "daily-eur",
            "kind": "rate_limit",
            "action": "refund.issue",
            "window_seconds": 86400,
            "per": "param:customer",
            "max_value": "100",
            "currency": "EUR",
            "then": "escalate",
            "control": "rate_limit",
        },
        {
            "id": "fraud",
            "kind": "flag",
            "flag": "fraud_adjacent",
            "then": "escalate",
            "control": "rbac",
        },
    )
    tester = Backtester(policy)
    tester.feed(
        [
            row(1, 0, 60),  # allow: 0 + 60 <= 100
            row(2, 1, 50),  # escalate: 60 + 50 > 100
            row(3, 2, 30, flags=["fraud_adjacent"]),  # escalate: does not use the budget
            row(4, 3, 40, customer="C2"),  # allow: C2 has its own budget
            row(5, 4, 5, currency="USD"),  # escalate: this limit counts EUR only
            row(6, 5, 40),  # allow: 60 + 40 = 100, inclusive
            row(7, 6, "0.01"),  # escalate
        ]
    )
    result = tester.result()
    assert outcomes(result) == {"allowed": 3, "escalated": 4, "denied": 0}
    assert result["rules_fired"] == {"daily-eur": 3, "fraud": 1}


def test_would_be_mistakes_total_per_currency_and_count_those_without_a_value():
    policy = compiled()  # allows every refund
    result = backtest(
        policy,
        [
            row(1, 0, "10.5", status="rejected", currency=" eur "),
            row(2, 1, 4, status="rejected", currency="EUR"),
            row(3, 2, None, status="rejected"),
            row(4, 3, 7, status="rejected", currency="USD"),
            row(5, 4, 99, status="rolled_back"),  # approved by a person: no mistake
        ],
    )
    assert result["outcomes"]["allow"] == {"approved": 1, "rejected": 4}
    assert result["mistakes"]["value"] == {"EUR": "14.5", "USD": "7"}
    assert result["mistakes"]["without_value"] == 1
    assert result["mistakes"]["runs"] == ["run-1", "run-2", "run-3", "run-4"]
    assert result["first_at"] == T0.isoformat()
    assert result["last_at"] == (T0 + timedelta(seconds=4)).isoformat()


def test_chunks_give_the_same_figures_as_one_pass():
    policy = compiled(
        {
            "id": "new",
            "kind": "first_seen",
            "per": "param:customer",
            "then": "escalate",
            "control": "rbac",
        }
    )
    rows = [row(n, n, n, customer=f"C{n % 3}", status="rejected") for n in range(10)]
    tester = Backtester(policy)
    for start in range(0, 10, 4):
        tester.feed(rows[start : start + 4])
    assert tester.result() == backtest(policy, rows)
    assert tester.result()["escalated"] == 3  # C0, C1, C2 the first time


def test_runs_out_of_order_or_undecided_are_refused():
    policy = compiled()
    with pytest.raises(ValueError, match="oldest first"):
        backtest(policy, [row(1, 5, 1), row(2, 4, 1)])
    with pytest.raises(ValueError, match="not decided by a person"):
        backtest(policy, [row(1, 0, 1, status="pending_review")])
