"""Every route `ladder.decide` can return has its own place for the new run: the
mapping on constructed decisions, and the whole path through POST /runs with `decide`
replaced by one that answers each route (the real policy envelope's answers are
tests/traces/test_policy_gateway.py)."""

from decimal import Decimal

import pytest

from ladder.decide import Decision, Queue, Route
from ladder.models import ActionType
from ladder.policy import PolicyDecision
from ladder.rungs import Executor
from traces.models import DemoLedgerEntry, Run, RunStatus, TraceEvent
from traces.services import gateway
from traces.services.gateway import Placement, run_placement


def test_a_recorded_run_waits_for_nobody():
    place = run_placement(Decision(route=Route.RECORD, reason="no action proposed"))
    assert place == Placement(RunStatus.RECORDED, "", "", "")


@pytest.mark.parametrize("queue", [Queue.L1, Queue.L2, Queue.L3, Queue.AUDIT])
def test_a_reviewed_run_waits_in_its_queue(queue):
    place = run_placement(Decision(route=Route.REVIEW, queue=queue))
    assert place == Placement(RunStatus.PENDING_REVIEW, queue, "", "")


def test_a_run_handled_below_its_workflows_rung_tells_the_reviewer_why():
    # An L4 workflow without a valid autonomy certificate (ladder.decide.rules_at).
    why = "workflow is at L4 but it has no autonomy certificate: handled at L3"
    place = run_placement(Decision(route=Route.REVIEW, queue=Queue.L3, reason=why))
    assert place == Placement(RunStatus.PENDING_REVIEW, Queue.L3, why, "")


def test_an_escalated_run_says_why_to_the_reviewer_and_in_the_trace():
    place = run_placement(
        Decision(
            route=Route.REVIEW,
            queue=Queue.ESCALATED,
            reason="x" * 400,
            policy=PolicyDecision("escalate", ("cap",), ("x" * 400,)),
        )
    )
    assert place == Placement(RunStatus.PENDING_REVIEW, Queue.ESCALATED, "x" * 300, "escalate")


def test_an_allowed_run_is_approved_by_the_policy_and_waits_in_no_queue():
    place = run_placement(Decision(route=Route.EXECUTE, reason="within the envelope"))
    assert place == Placement(RunStatus.APPROVED, "", "", "allow")


def test_a_denied_run_is_denied_by_the_policy_and_waits_in_no_queue():
    place = run_placement(Decision(route=Route.DENY, reason="over the daily cap"))
    assert place == Placement(RunStatus.DENIED, "", "", "deny")


# One well-formed decision per route: a route added to ladder.decide.Route without a place
# in the gateway fails here instead of landing runs where nobody looks.
WELL_FORMED_QUEUE = {Route.REVIEW: Queue.L3}


@pytest.mark.parametrize("route", list(Route))
def test_every_route_the_ladder_knows_has_a_place(route):
    place = run_placement(Decision(route=route, queue=WELL_FORMED_QUEUE.get(route)))
    assert place.status in RunStatus.values


@pytest.mark.parametrize(
    "decision",
    [
        Decision(route="promote"),  # a route the gateway has never heard of
        Decision(route=Route.REVIEW),  # a review in no queue: nobody would see it
        Decision(route=Route.EXECUTE, queue=Queue.L3),
        Decision(route=Route.DENY, queue=Queue.ESCALATED),
        Decision(route=Route.RECORD, queue=Queue.L1),
    ],
)
def test_a_route_without_a_place_is_an_error_not_a_parked_run(decision):
    with pytest.raises(ValueError, match="no place for route"):
        run_placement(decision)


# -- through POST /runs ---------------------------------------------------------------


def body(wf, key="k-1"):
    return {
        "workflow": wf.slug,
        "idempotency_key": key,
        "input": {"message": "Refund my order A-1 please, ana@example.com"},
        "proposal": {
            "action": "refund.issue",
            "params": {"order_id": "A-1", "amount": 12.5, "email": "ana@example.com"},
        },
    }


@pytest.fixture
def policy(monkeypatch):
    """Make the ladder answer `route` for every proposal, as the policy envelope will."""

    def answer(route, reason):
        def fake(rules, proposal, counters=None):
            if proposal is None:
                return Decision(route=Route.RECORD)
            outcome = {Route.EXECUTE: "allow", Route.DENY: "deny"}[route]
            return Decision(
                route=route,
                reason=reason,
                value=Decimal("12.5"),
                currency="EUR",
                policy=PolicyDecision(outcome, ("r1",), (reason,)),
                policy_version=7,
            )

        monkeypatch.setattr(gateway, "decide", fake)

    return answer


@pytest.mark.django_db
def test_a_run_the_policy_allows_is_approved_at_once_and_its_agent_claims_it(
    make_workflow, agent, policy
):
    wf = make_workflow(rung=4)
    policy(Route.EXECUTE, "within the envelope")
    client = agent(wf)
    resp = client.post("/runs", body(wf))
    assert resp.status_code == 201, resp.content
    data = resp.json()
    assert data["status"] == "approved"
    assert data["queue"] is None
    assert data["decision"]["verdict"] == "approved"
    assert data["decision"]["reason"] == "within the envelope"
    # The params to carry out are the proposal's, pseudonymised, with the way back.
    params = data["decision"]["params"]
    assert params["amount"] == 12.5 and params["email"] != "ana@example.com"
    assert data["pseudonyms"][params["email"]] == "ana@example.com"
    run = Run.objects.get(pk=data["id"])
    assert run.decided_at is not None and run.decision["by"] == "policy"
    event = TraceEvent.objects.get(run_id=run.id, type="policy_decision")
    assert event.payload == {
        "decision": "allow",
        "reason": "within the envelope",
        "policy_version": 7,
        "rules_fired": ["r1"],
        "reasons": ["within the envelope"],
        "counters": {},
        "audit_sampled": False,
    }
    assert data["policy"] == {"version": 7, "outcome": "allow", "rules_fired": ["r1"]}
    replay = client.get(f"/runs/{run.id}/replay").json()
    assert replay["complete"] and replay["verified"]
    claimed = client.post(f"/runs/{run.id}/claim")
    assert claimed.status_code == 200 and claimed.json()["status"] == "executing"


@pytest.mark.django_db
def test_a_run_the_policy_allows_runs_its_server_executor_once(
    make_workflow, agent, policy, django_capture_on_commit_callbacks
):
    wf = make_workflow(rung=4, actions=())
    ActionType.objects.create(
        workflow=wf,
        name="refund.issue",
        executor=Executor.SERVER,
        executor_path="traces.demo_executors.refund_issue",
    )
    policy(Route.EXECUTE, "within the envelope")
    client = agent(wf)
    with django_capture_on_commit_callbacks(execute=True) as queued:
        first = client.post("/runs", body(wf)).json()
        again = client.post("/runs", body(wf))  # a retried submission queues nothing
    assert again.status_code == 200
    # One execution queued (the other callback is the breaker's check of its result).
    assert [c for c in queued if "execution_enqueue" in c.__qualname__] == queued[:1]
    run = Run.objects.get(pk=first["id"])
    assert run.status == RunStatus.EXECUTED
    entry = DemoLedgerEntry.objects.get()
    assert entry.params["amount"] == 12.5 and entry.params["order_id"] == "A-1"


@pytest.mark.django_db
def test_a_run_the_policy_denies_is_denied_with_its_reason_and_cannot_be_claimed(
    make_workflow, agent, policy
):
    wf = make_workflow(rung=4)
    policy(Route.DENY, "over the daily cap")
    client = agent(wf)
    data = client.post("/runs", body(wf)).json()
    assert data["status"] == "denied"
    assert data["queue"] is None
    assert data["decision"]["verdict"] == "denied"
    assert data["decision"]["reason"] == "over the daily cap"
    run = Run.objects.get(pk=data["id"])
    assert run.escalation_reason == ""
    event = TraceEvent.objects.get(run_id=run.id, type="policy_decision")
    assert event.payload["decision"] == "deny"
    assert event.payload["reason"] == "over the daily cap"
    assert not Run.objects.filter(status=RunStatus.PENDING_REVIEW).exists()
    replay = client.get(f"/runs/{run.id}/replay").json()
    assert replay["complete"] and replay["verified"]
    refused = client.post(f"/runs/{run.id}/claim")
    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "not_approved"
