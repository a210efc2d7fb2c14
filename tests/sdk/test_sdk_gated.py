"""`@client.gated(workflow, action)`: the function runs only once its action is approved."""

import threading
import time

import pytest
from django.db import connections

from ladder.rungs import Executor
from ladder_client import ActionFailed, ActionRejected, current_run
from tests.factories import UserFactory
from traces.executors import executor
from traces.models import DemoLedgerEntry, Run
from traces.services.decisions import DecisionInput, run_decide

pytestmark = pytest.mark.django_db(transaction=True)


def test_an_approved_call_runs_once_with_the_reviewers_final_params(
    make_workflow, connect, reviewer
):
    wf = make_workflow(rung=1)
    client = connect(wf)
    calls = []

    @client.gated(wf.slug, "refund.issue", summary="Refund {amount} {currency} on {order_id}")
    def issue_refund(order_id, amount, currency="EUR"):
        calls.append({"order_id": order_id, "amount": amount, "currency": currency})
        return {"refund_id": "R-1", "run": current_run().id}

    reviewer.decide_soon(
        wf, params={"order_id": "A-1", "amount": 20.0, "currency": "EUR"}, delay=0.05
    )
    result = issue_refund("A-1", 30.0)

    assert calls == [{"order_id": "A-1", "amount": 20.0, "currency": "EUR"}]
    stored = Run.objects.get(workflow=wf)
    assert result == {"refund_id": "R-1", "run": str(stored.pk)}
    assert stored.summary == "Refund 30.0 EUR on A-1"
    assert stored.proposal["params"] == {"order_id": "A-1", "amount": 30.0, "currency": "EUR"}
    assert stored.status == "executed"
    assert stored.result["output"] == result
    assert current_run() is None


def test_a_rejected_call_never_runs_and_raises_with_the_reason(make_workflow, connect, reviewer):
    wf = make_workflow(rung=3)
    client = connect(wf)
    calls = []

    @client.gated(wf.slug, "refund.issue")
    def issue_refund(order_id, amount, currency="EUR"):
        calls.append(order_id)

    reviewer.decide_soon(wf, verdict="rejected", reason="duplicate request", delay=0.05)
    with pytest.raises(ActionRejected) as caught:
        issue_refund(order_id="A-1", amount=30.0)

    assert calls == []
    assert caught.value.reason == "duplicate request"
    assert Run.objects.get(workflow=wf).status == "rejected"


def test_a_failing_call_is_reported_failed_and_its_error_raised(make_workflow, connect, reviewer):
    wf = make_workflow(rung=3)
    client = connect(wf)

    @client.gated(wf.slug, "refund.issue")
    def issue_refund(order_id, amount, currency="EUR"):
        raise TimeoutError("bank did not answer")

    reviewer.decide_soon(wf, delay=0.05)
    with pytest.raises(TimeoutError):
        issue_refund(order_id="A-1", amount=30.0)

    stored = Run.objects.get(workflow=wf)
    assert stored.status == "failed"
    assert stored.result["error"] == "TimeoutError: bank did not answer"


def test_repeating_a_finished_call_with_its_key_returns_the_result_without_running_again(
    make_workflow, connect, reviewer
):
    wf = make_workflow(rung=3)
    client = connect(wf)
    calls = []

    @client.gated(wf.slug, "refund.issue")
    def issue_refund(order_id, amount, currency="EUR"):
        calls.append(order_id)
        return {"refund_id": "R-1"}

    reviewer.decide_soon(wf, delay=0.05)
    first = issue_refund(order_id="A-1", amount=30.0, idempotency_key="ticket-42")
    again = issue_refund(order_id="A-1", amount=30.0, idempotency_key="ticket-42")

    assert first == again == {"refund_id": "R-1"}
    assert calls == ["A-1"]
    assert Run.objects.filter(workflow=wf).count() == 1
    assert Run.objects.get(workflow=wf).idempotency_key == "ticket-42"


def test_a_server_executed_action_is_not_run_by_the_agent(make_workflow, connect):
    wf = make_workflow(rung=3)
    wf.action_types.update(
        executor=Executor.SERVER, executor_path="traces.demo_executors.refund_issue"
    )
    user = UserFactory()
    client = connect(wf)
    calls = []

    def approve_with_the_real_service():
        try:
            for _ in range(250):
                run = Run.objects.filter(workflow=wf, status="pending_review").first()
                if run:
                    break
                time.sleep(0.02)
            run_decide(
                run_id=run.pk,
                user_id=user.pk,
                actor_name=user.username,
                seen_version=run.version,
                seen_hash="test",
                decision=DecisionInput(
                    verdict="approved",
                    action="refund.issue",
                    params=run.proposal["params"],
                    extra={},
                ),
            )
        finally:
            connections.close_all()

    @client.gated(wf.slug, "refund.issue")
    def issue_refund(order_id, amount, currency="EUR"):
        calls.append(order_id)

    thread = threading.Thread(target=approve_with_the_real_service, daemon=True)
    thread.start()
    result = issue_refund(order_id="A-1", amount=30.0)
    thread.join(timeout=10)

    assert calls == []
    entry = DemoLedgerEntry.objects.get()
    assert result == {"ledger_id": entry.pk, "replayed": False}
    assert Run.objects.get(workflow=wf).status == "executed"


@executor(idempotent=True)
def refusing_bank(*, action, params, idempotency_key):
    raise RuntimeError("bank refused")


def test_a_failed_server_execution_raises_action_failed(make_workflow, connect, reviewer):
    wf = make_workflow(rung=3)
    wf.action_types.update(
        executor=Executor.SERVER, executor_path=f"{__name__}.{refusing_bank.__name__}"
    )
    client = connect(wf)

    @client.gated(wf.slug, "refund.issue")
    def issue_refund(order_id, amount, currency="EUR"):
        raise AssertionError("never called")

    reviewer.decide_soon(wf, delay=0)
    with pytest.raises(ActionFailed) as caught:
        issue_refund(order_id="A-1", amount=30.0)

    assert caught.value.error == "RuntimeError: bank refused"
    assert Run.objects.get(workflow=wf).status == "failed"


def test_a_retry_after_a_crash_mid_action_does_not_do_the_action_again(
    make_workflow, connect, reviewer, monkeypatch
):
    wf = make_workflow(rung=3)
    calls = []

    class Crash(BaseException):
        """Stands in for the process dying mid-action."""

    def gated_refund(client):
        @client.gated(wf.slug, "refund.issue")
        def issue_refund(order_id, amount, currency="EUR"):
            calls.append(order_id)
            if len(calls) == 1:
                raise Crash
            return {"refund_id": "R-2"}

        return issue_refund

    first = connect(wf)

    def dead(*args, **kwargs):  # a dead process reports nothing
        raise Crash

    monkeypatch.setattr(first, "report_result", dead)
    reviewer.decide_soon(wf, delay=0.05)
    with pytest.raises(Crash):
        gated_refund(first)(order_id="A-1", amount=30.0, idempotency_key="crashy")
    stored = Run.objects.get(workflow=wf)
    assert stored.status == "executing"  # claimed, never reported

    def reconcile():
        # Whoever checks the bank by hand reports what actually happened.
        try:
            time.sleep(0.3)
            connect(wf).report_result(str(stored.pk), succeeded=True, output={"refund_id": "R-1"})
        finally:
            connections.close_all()

    helper = threading.Thread(target=reconcile)
    helper.start()
    try:
        # The restarted agent retries the same call with the same key.
        result = gated_refund(connect(wf))(order_id="A-1", amount=30.0, idempotency_key="crashy")
    finally:
        helper.join()
    assert calls == ["A-1"]  # the retry waited for the claimed attempt's result
    assert result == {"refund_id": "R-1"}
    assert Run.objects.get(pk=stored.pk).execution_attempts == 1


def test_a_gated_function_gets_real_values_back_for_its_own_pseudonyms(
    make_workflow, connect, reviewer
):
    wf = make_workflow(rung=1)
    client = connect(wf)
    seen = []

    @client.gated(wf.slug, "refund.issue")
    def issue_refund(order_id, amount, currency="EUR"):
        seen.append(order_id)
        return {"ok": True}

    # The reviewer approves the redacted proposal as shown to them.
    reviewer.decide_soon(wf, delay=0.05)
    issue_refund(order_id="ana.lopez@example.com", amount=5.0)
    stored = Run.objects.get(workflow=wf)
    assert stored.proposal["params"]["order_id"].startswith("<EMAIL:")
    assert seen == ["ana.lopez@example.com"]


L4_POLICY = {
    "audit_sample_rate": 0,
    "rules": [
        {"id": "refunds", "kind": "allow_actions", "actions": ["refund.issue"],
         "control": "allowed_tools"},
        {"id": "cap", "kind": "value_cap", "action": "refund.issue", "max": "100.00",
         "then": "escalate", "control": "value_cap"},
        {"id": "blocked", "kind": "flag", "flag": "blocked", "then": "deny", "control": "rbac"},
    ],
}  # fmt: skip


def test_at_l4_the_policy_lets_a_call_run_at_once_or_refuses_it_with_its_reason(
    make_workflow, connect
):
    from traces.services.policy import policy_set

    wf = make_workflow(rung=4)
    policy_set(workflow=wf, document=L4_POLICY, by=None)
    client = connect(wf)
    calls = []

    @client.gated(wf.slug, "refund.issue")
    def issue_refund(order_id, amount, currency="EUR"):
        calls.append((order_id, amount))
        return {"refund_id": f"R-{order_id}"}

    # Within the envelope: no person is asked, the function runs once, straight away.
    assert issue_refund("A-1", 60.0) == {"refund_id": "R-A-1"}
    assert calls == [("A-1", 60.0)]
    allowed = Run.objects.get(workflow=wf, proposal__params__order_id="A-1")
    assert allowed.status == "executed" and allowed.policy["outcome"] == "allow"

    @client.gated(wf.slug, "refund.issue", flags=["blocked"])
    def blocked_refund(order_id, amount, currency="EUR"):
        calls.append((order_id, amount))

    with pytest.raises(ActionRejected) as caught:
        blocked_refund("A-2", 10.0)
    assert calls == [("A-1", 60.0)]
    assert "blocked" in caught.value.reason
