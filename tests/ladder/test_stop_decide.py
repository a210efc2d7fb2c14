"""The stop button in the ladder's one question (ladder.decide): a stopped workflow's
proposal is never routed to execution, whatever its rung."""

from dataclasses import replace

import pytest

from ladder.decide import ActionRules, Queue, Route, WorkflowRules, decide
from ladder.policy import compile_policy, parse_policy

REFUND = ActionRules(
    name="refund.issue",
    value_param="amount",
    currency_param="currency",
    param_schema={"amount": {"type": "number", "required": True}},
)
ALLOW_ALL = {
    "audit_sample_rate": 0,
    "rules": [
        {"id": "ok", "kind": "allow_actions", "actions": ["refund.issue"], "control": "rbac"}
    ],
}
PROPOSAL = {"action": "refund.issue", "params": {"amount": 12, "currency": "EUR"}}


def rules(rung, *, stopped=""):
    actions = {"refund.issue": ("amount", "currency")}
    policy = compile_policy(parse_policy(ALLOW_ALL, actions=actions), actions=actions)
    return WorkflowRules(
        slug="wf",
        rung=rung,
        actions={"refund.issue": REFUND},
        policy=policy,
        policy_version=1,
        stopped=stopped,
    )


@pytest.mark.parametrize("rung", [4, 5])
def test_at_l4_and_l5_a_stopped_workflow_holds_what_its_policy_would_allow(rung):
    assert decide(rules(rung), PROPOSAL).route == Route.EXECUTE  # running: allowed

    decision = decide(rules(rung, stopped="bad refunds reported"), PROPOSAL)

    assert decision.route == Route.REVIEW and decision.queue == Queue.ESCALATED
    assert decision.held
    assert decision.reason == "workflow stopped: bad refunds reported"
    # The policy was not asked: nothing to count, no verdict to record.
    assert decision.policy is None and decision.shadow is None


@pytest.mark.parametrize(("rung", "queue"), [(1, Queue.L1), (2, Queue.L2), (3, Queue.L3)])
def test_below_l4_a_stopped_workflow_routes_to_its_usual_queue(rung, queue):
    running = decide(rules(rung), PROPOSAL)
    stopped = decide(rules(rung, stopped="audit"), PROPOSAL)
    assert stopped.route == Route.REVIEW and stopped.queue == queue
    assert not stopped.held
    assert stopped == running  # the same decision: a person decides; execution waits


def test_a_stopped_workflow_still_records_runs_without_a_proposal():
    for rung in range(6):
        assert decide(rules(rung, stopped="x"), None).route == Route.RECORD


def test_no_stopped_rules_ever_route_to_execution():
    for rung in range(1, 6):
        for flags in ([], ["fraud_adjacent"]):
            proposal = {**PROPOSAL, "flags": flags}
            decision = decide(replace(rules(rung), stopped="stop"), proposal)
            assert decision.route != Route.EXECUTE
