"""`client.run(...)`: recording a run, proposing, waiting for the decision, reporting."""

import json

import pytest

from ladder_client import DecisionTimeout
from traces.models import Run, TraceEvent

pytestmark = pytest.mark.django_db(transaction=True)

REFUND = {"order_id": "A-1", "amount": 30.0, "currency": "EUR"}


def payloads(run_id, type_=None):
    events = TraceEvent.objects.filter(run_id=run_id).order_by("seq")
    if type_:
        events = events.filter(type=type_)
    return [json.loads(e.document)["payload"] for e in events]


def test_the_run_context_submits_input_tool_calls_output_and_proposal_as_one_trace(
    make_workflow, connect
):
    wf = make_workflow(rung=3)
    client = connect(wf)

    with client.run(wf.slug, input={"message": "Refund order A-1"}) as run:

        @run.tool
        def lookup_order(order_id, *, with_items=False):
            return {"order_id": order_id, "total": 30.0}

        @run.tool(name="payments.check")
        def check_payment(order_id):
            raise LookupError(f"no payment for {order_id}")

        order = lookup_order("A-1")
        with pytest.raises(LookupError):
            check_payment(order_id="A-1")
        run.tool_call("crm.note", {"text": "asked for refund"}, {"ok": True})
        run.output({"text": "Refunding 30 EUR"})
        pending = run.propose("refund.issue", REFUND, summary="Refund 30 EUR on A-1")

    assert order == {"order_id": "A-1", "total": 30.0}
    stored = Run.objects.get(pk=pending.id)
    assert (stored.status, stored.idempotency_key) == ("pending_review", run.idempotency_key)
    assert stored.summary == "Refund 30 EUR on A-1"
    types = list(stored.events.order_by("seq").values_list("type", flat=True))
    assert types == ["input", "tool_call", "tool_call", "tool_call", "output", "proposal"]
    # The gateway adds the rung the run is handled at, inside the chain (docs/gates.md).
    assert payloads(pending.id, "input") == [{"input": {"message": "Refund order A-1"}, "rung": 3}]
    calls = payloads(pending.id, "tool_call")
    assert calls[0] == {
        "name": "lookup_order",
        "arguments": {"order_id": "A-1"},
        "result": {"order_id": "A-1", "total": 30.0},
    }
    assert calls[1] == {
        "name": "payments.check",
        "arguments": {"order_id": "A-1"},
        "result": None,
        "error": "LookupError: no payment for A-1",
    }
    assert calls[2]["name"] == "crm.note" and calls[2]["result"] == {"ok": True}
    assert payloads(pending.id, "output") == [{"output": {"text": "Refunding 30 EUR"}}]
    assert payloads(pending.id, "proposal")[0]["params"] == REFUND


def test_wait_long_polls_and_returns_the_reviewers_final_params(make_workflow, connect, reviewer):
    wf = make_workflow(rung=1)
    client = connect(wf)
    edited = {**REFUND, "amount": 25.0}

    with client.run(wf.slug, input={"message": "refund"}) as run:
        pending = run.propose("refund.issue", REFUND)
        reviewer.decide_soon(wf, params=edited, reason="partial refund")
        decision = pending.wait(timeout=10, poll=5)
        run.report({"refund_id": "R-1"})

    assert decision.approved is True
    assert (decision.status, decision.action, decision.reason) == (
        "approved",
        "refund.issue",
        "partial refund",
    )
    assert decision.params == edited
    assert run.decision == decision
    stored = Run.objects.get(pk=pending.id)
    assert stored.status == "executed"
    assert stored.result["output"] == {"refund_id": "R-1"}


def test_a_rejection_is_a_decision_that_is_not_approved(make_workflow, connect, reviewer):
    wf = make_workflow(rung=3)
    client = connect(wf)

    with client.run(wf.slug) as run:
        pending = run.propose("refund.issue", REFUND)
        reviewer.decide_soon(wf, verdict="rejected", reason="order was never paid", delay=0)
        decision = pending.wait(timeout=10)

    assert decision.approved is False
    assert (decision.status, decision.reason) == ("rejected", "order was never paid")
    assert Run.objects.get(pk=pending.id).status == "rejected"


def test_wait_raises_decision_timeout_while_nobody_decides(make_workflow, connect):
    wf = make_workflow(rung=3)
    client = connect(wf)

    with client.run(wf.slug) as run:
        pending = run.propose("refund.issue", REFUND)
        with pytest.raises(DecisionTimeout) as caught:
            pending.wait(timeout=0.3, poll=0.15)

    assert caught.value.run_id == pending.id
    assert caught.value.status == "pending_review"
    assert Run.objects.get(pk=pending.id).status == "pending_review"


def test_an_error_before_submitting_leaves_nothing_on_the_server(make_workflow, connect):
    wf = make_workflow(rung=3)
    client = connect(wf)

    with pytest.raises(RuntimeError), client.run(wf.slug, input={"q": 1}) as run:
        run.tool_call("orders.lookup", {"id": "A-1"}, {"total": 30})
        raise RuntimeError("model crashed")

    assert not Run.objects.exists()


def test_an_error_after_approval_reports_the_action_as_failed(make_workflow, connect, reviewer):
    wf = make_workflow(rung=3)
    client = connect(wf)

    with pytest.raises(ConnectionError), client.run(wf.slug) as run:
        pending = run.propose("refund.issue", REFUND)
        reviewer.decide_soon(wf, delay=0)
        assert pending.wait(timeout=10).approved
        raise ConnectionError("payment provider down")

    stored = Run.objects.get(pk=pending.id)
    assert stored.status == "failed"
    assert stored.result["error"] == "ConnectionError: payment provider down"


def test_a_run_left_without_a_proposal_is_recorded(make_workflow, connect):
    wf = make_workflow(rung=0, actions=())
    client = connect(wf)

    with client.run(wf.slug, input={"question": "hours?"}, idempotency_key="faq-1") as run:
        run.output("We open at 9.")

    stored = Run.objects.get(workflow=wf)
    assert (stored.status, stored.idempotency_key) == ("recorded", "faq-1")
    assert run.info.status == "recorded"
    assert payloads(stored.pk, "output") == [{"output": "We open at 9."}]


def test_tool_calls_after_submitting_are_appended_to_the_trace(make_workflow, connect):
    wf = make_workflow(rung=0, actions=())
    client = connect(wf)

    with client.run(wf.slug) as run:
        info = run.record()
        run.tool_call("mail.send", {"to": "ops"}, {"queued": True})

    assert info.trace_events == 1
    assert [p["name"] for p in payloads(info.id, "tool_call")] == ["mail.send"]


def test_what_the_agent_records_after_an_approval_is_an_execution_report(
    make_workflow, connect, reviewer
):
    wf = make_workflow(rung=3)
    client = connect(wf)
    with client.run(wf.slug, input={"message": "Refund order A-1"}) as run:
        pending = run.propose("refund.issue", REFUND)
        reviewer.decide_soon(wf)
        assert pending.wait(timeout=10).approved
        run.claim()
        run.tool_call("payments.refund", {"order_id": "A-1"}, {"refund_id": "R-9"})
        run.report({"refund_id": "R-9"})

    last_call = payloads(pending.id, "tool_call")[-1]
    assert last_call["phase"] == "execution"
    rebuilt = client.replay(pending.id)["run"]
    assert [e["name"] for e in rebuilt["after_decision"]] == ["payments.refund"]
    assert rebuilt["input"] == {"message": "Refund order A-1"}
