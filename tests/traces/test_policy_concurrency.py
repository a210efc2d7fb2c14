"""Rate limits hold under concurrency across gateway processes: a limit of N lets exactly
N through, never N+1.

The real server (gunicorn.conf.py: the long-poll worker, 2 processes x 8 threads) on the
test database; every submission of a burst is released at the same instant from its own
thread and connection, each with its own idempotency key and text. The counters live in
PostgreSQL under advisory locks (traces/services/policy.py); these tests are what shows
that two processes cannot both read "N-1 allowed" and both allow.
"""

import threading
from collections import Counter
from decimal import Decimal

import pytest

from ladder.rungs import Executor
from tests.factories import ActionTypeFactory, WorkflowFactory
from tests.traces.live import Gateway, RedisServer, service_env
from traces.models import PolicyAllowance
from traces.services.policy import policy_set
from traces.services.tokens import token_create

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(scope="module")
def gateway(django_db_setup):
    redis = RedisServer()
    server = Gateway(service_env(redis.url))
    try:
        redis.start()
        server.start()
        yield server
    finally:
        server.close()
        redis.close()


def limited_workflow(rate_rule: dict):
    """An L4 workflow allowing refunds under one rate rule (agent-executed: the test is
    about the decision, not the execution); and an agent token for it."""
    wf = WorkflowFactory(rung=4)
    ActionTypeFactory(
        workflow=wf,
        name="refund.issue",
        executor=Executor.AGENT,
        param_schema={
            "order_id": {"type": "string", "required": True},
            "amount": {"type": "number", "required": True},
            "currency": {"type": "string"},
            "customer": {"type": "string"},
        },
    )
    document = {
        "audit_sample_rate": 0,
        "rules": [
            {
                "id": "actions",
                "kind": "allow_actions",
                "actions": ["refund.issue"],
                "control": "allowed_tools",
            },
            {
                "id": "rate",
                "kind": "rate_limit",
                "action": "refund.issue",
                "window_seconds": 3600,
                "then": "escalate",
                "control": "rate_limit",
                **rate_rule,
            },
        ],
    }
    policy_set(workflow=wf, document=document, by=None)
    _token, raw = token_create(name="agent", workflows=[wf])
    return wf, raw


def burst(gateway, wf, token, params: list[dict]) -> list[dict]:
    """Submit one run per params, all released together; the answers in order."""
    start = threading.Barrier(len(params))
    answers: list = [None] * len(params)

    def submit(i: int) -> None:
        body = {
            "workflow": wf.slug,
            "idempotency_key": f"burst-{i}",
            "input": {"message": f"refund request number {i}"},
            "proposal": {
                "action": "refund.issue",
                "params": {"order_id": f"o-{i}", "currency": "EUR", **params[i]},
            },
        }
        start.wait()
        status, data, _ = gateway.submit(body, token)
        answers[i] = (status, data)

    threads = [threading.Thread(target=submit, args=(i,)) for i in range(len(params))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert all(status == 201 for status, _ in answers), answers
    return [data for _, data in answers]


def outcomes(answers: list[dict]) -> Counter:
    for data in answers:
        if data["status"] != "approved":
            assert data["status"] == "pending_review" and data["queue"] == "escalated"
            assert data["policy"]["rules_fired"] == ["rate"]
    return Counter(data["status"] for data in answers)


def allowances(wf):
    return PolicyAllowance.objects.filter(workflow=wf, shadow=False)


def test_a_count_limit_of_n_lets_exactly_n_through(gateway):
    n = 5
    wf, token = limited_workflow({"max_count": n, "per": "workflow"})
    answers = burst(gateway, wf, token, [{"amount": 10}] * (4 * n))
    assert outcomes(answers) == {"approved": n, "pending_review": 3 * n}
    assert allowances(wf).count() == n


def test_a_per_customer_limit_counts_each_customer_apart(gateway):
    wf, token = limited_workflow({"max_count": 2, "per": "param:customer"})
    customers = ["cust-a", "cust-b", "cust-c"]
    params = [{"amount": 10, "customer": c} for c in customers for _ in range(6)]
    answers = burst(gateway, wf, token, params)
    allowed = Counter(
        params[i]["customer"] for i, data in enumerate(answers) if data["status"] == "approved"
    )
    assert allowed == {"cust-a": 2, "cust-b": 2, "cust-c": 2}
    assert outcomes(answers) == {"approved": 6, "pending_review": 12}
    assert allowances(wf).count() == 6


def test_a_total_value_limit_is_reached_exactly_and_never_passed(gateway):
    # 25 EUR each against 100.00 EUR: the fourth reaches the cap (inclusive), no fifth.
    wf, token = limited_workflow({"max_value": "100.00", "currency": "EUR", "per": "workflow"})
    answers = burst(gateway, wf, token, [{"amount": 25}] * 16)
    assert outcomes(answers) == {"approved": 4, "pending_review": 12}
    assert sum(a.value for a in allowances(wf)) == Decimal("100.00")
