"""The SDK and the stop button (docs/stop.md): an approval of a stopped workflow is not
acted on; the SDK keeps waiting (long polls) until the resume or the caller's timeout."""

import threading
import time

import pytest
from django.db import connections

from ladder.services import workflow_stop
from ladder_client import DecisionTimeout
from ladder_client.errors import Conflict
from tests.factories import UserFactory
from traces.models import Run
from traces.services.stop import workflow_resume_release

pytestmark = pytest.mark.django_db(transaction=True)


def resume_soon(wf, person, *, after):
    """Resume `wf` from a thread once `after()` holds (or after 10 s)."""
    done = {}

    def work():
        try:
            deadline = time.monotonic() + 10
            while not after() and time.monotonic() < deadline:
                time.sleep(0.05)
            time.sleep(0.3)  # the agent is well into its wait by now
            done["at"] = time.monotonic()
            workflow_resume_release(workflow=wf, actor=person, reason="fixed")
        finally:
            connections.close_all()

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    return thread, done


def test_a_gated_call_approved_while_stopped_runs_once_after_the_resume(
    make_workflow, connect, reviewer
):
    wf = make_workflow(rung=3)
    person = UserFactory()
    workflow_stop(workflow=wf, actor=person, reason="incident 9")
    client = connect(wf)
    calls = []

    @client.gated(wf.slug, "refund.issue", timeout=30, poll=1)
    def issue_refund(order_id, amount, currency="EUR"):
        calls.append(time.monotonic())
        return {"refunded": order_id}

    reviewer.decide_soon(wf, delay=0.1)
    approved = lambda: Run.objects.filter(workflow=wf, status="approved").exists()  # noqa: E731
    thread, done = resume_soon(wf, person, after=approved)

    result = issue_refund(order_id="A-1", amount=30.0)
    thread.join(timeout=10)

    assert result == {"refunded": "A-1"}
    assert len(calls) == 1 and calls[0] > done["at"]  # only once resumed
    assert Run.objects.get(workflow=wf).status == "executed"


def test_waiting_on_an_approval_of_a_stopped_workflow_times_out_without_acting(
    make_workflow, connect, reviewer
):
    wf = make_workflow(rung=3)
    workflow_stop(workflow=wf, actor=UserFactory(), reason="incident 9")
    client = connect(wf)
    calls = []

    @client.gated(wf.slug, "refund.issue", timeout=2, poll=1)
    def issue_refund(order_id, amount, currency="EUR"):
        calls.append(order_id)

    reviewer.decide_soon(wf, delay=0.1)
    with pytest.raises(DecisionTimeout) as err:
        issue_refund(order_id="A-1", amount=30.0, idempotency_key="k-1")

    assert calls == []
    assert err.value.status == "approved" and err.value.stopped == "incident 9"
    assert "stopped: incident 9" in str(err.value)
    assert Run.objects.get(workflow=wf).status == "approved"  # nothing lost


def test_the_run_answer_tells_the_agent_why_it_waits_and_a_claim_is_refused(
    make_workflow, connect, reviewer
):
    wf = make_workflow(rung=3)
    client = connect(wf)
    with client.run(wf.slug, input={"q": 1}) as run:
        pending = run.propose("refund.issue", {"order_id": "A-1", "amount": 5})
        reviewer.decide_soon(wf, delay=0.05)
        reviewer.join()
        workflow_stop(workflow=wf, actor=UserFactory(), reason="incident 9")

        info = pending.refresh()
        assert info.status == "approved" and info.stopped and info.waiting
        assert info.workflow_stopped["reason"] == "incident 9"
        with pytest.raises(Conflict) as err:
            run.claim()
        assert err.value.code == "workflow_stopped"
        with pytest.raises(DecisionTimeout):
            pending.wait(timeout=1, poll=0.5)

    assert Run.objects.get(workflow=wf).status == "approved"  # kept for the resume
