"""A waiting agent hears the deadline's denial through the SDK, against a live server.
Time moves with the `clock` fixture (the live server runs in this process)."""

import threading
import time

import pytest
from django.db import connections

from ladder_client import ActionRejected
from traces.models import Run

pytestmark = pytest.mark.django_db(transaction=True)

REFUND = {"order_id": "A-1", "amount": 30.0, "currency": "EUR"}


def test_wait_returns_the_denial_when_the_deadline_passes(make_workflow, connect, clock):
    wf = make_workflow(rung=3, review_deadline_seconds=60)
    client = connect(wf)
    with client.run(wf.slug, input={"message": "refund A-1"}) as run:
        pending = run.propose("refund.issue", REFUND)
        clock.advance(59)  # one second left
        started = time.monotonic()
        decision = pending.wait(timeout=20, poll=10)

    assert time.monotonic() - started < 10  # told at the deadline, not at the poll's end
    assert (decision.status, decision.approved) == ("denied", False)
    assert decision.reason == "no decision within 1 min"
    assert decision.action == "refund.issue"  # what was denied: the agent's own proposal


def test_a_gated_call_raises_the_deadlines_reason_and_never_runs(make_workflow, connect, clock):
    wf = make_workflow(rung=3, review_deadline_seconds=60)
    client = connect(wf)
    calls = []

    @client.gated(wf.slug, "refund.issue", timeout=20, poll=2)
    def issue_refund(order_id, amount, currency="EUR"):
        calls.append(order_id)

    # The clock jumps while a poll is open; that poll ends by its own time (2 s), and the
    # next read applies the deadline (real time reaches a deadline only at a poll's cap).
    def pass_the_deadline_once_waiting():
        try:
            limit = time.monotonic() + 10
            while not Run.objects.filter(workflow=wf, status="pending_review").exists():
                if time.monotonic() > limit:
                    return
                time.sleep(0.02)
            clock.advance(61)
        finally:
            connections.close_all()

    mover = threading.Thread(target=pass_the_deadline_once_waiting, daemon=True)
    mover.start()
    with pytest.raises(ActionRejected) as caught:
        issue_refund(order_id="A-1", amount=30.0)
    mover.join(timeout=10)

    assert calls == []
    assert caught.value.reason == "no decision within 1 min"
    assert Run.objects.get(workflow=wf).status == "denied"
