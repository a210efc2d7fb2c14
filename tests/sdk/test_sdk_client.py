"""The low-level client against a live gateway: the contract, retries and errors."""

import json

import httpx
import pytest

from ladder_client import (
    Conflict,
    Forbidden,
    InvalidRequest,
    LadderUnavailable,
    NotFound,
    Unauthorized,
)
from traces.models import MetricPoint, Run, TraceEvent

pytestmark = pytest.mark.django_db(transaction=True)

REFUND = {"order_id": "A-1", "amount": 30.0, "currency": "EUR"}
PROPOSAL = {"action": "refund.issue", "params": REFUND}


def test_a_submission_retried_after_the_server_stored_it_creates_exactly_one_run(
    make_workflow, connect, flaky
):
    wf = make_workflow(rung=3)
    # Twice the server stores (or finds) the run and the answer is lost on the way back.
    transport = flaky([httpx.ConnectError, httpx.ReadTimeout])
    client = connect(wf, transport=transport)

    info = client.submit_run(
        wf.slug, idempotency_key="order-A-1", input={"message": "refund A-1"}, proposal=PROPOSAL
    )

    assert Run.objects.filter(workflow=wf).count() == 1
    assert info.id == str(Run.objects.get(workflow=wf).pk)
    assert info.status == "pending_review"
    assert info.created is False  # the retry was answered with the run already stored
    assert len(transport.sent) == 3
    bodies = {body for _, _, body in transport.sent}
    assert len(bodies) == 1  # the same bytes each time, so the same idempotency key
    assert json.loads(bodies.pop())["idempotency_key"] == "order-A-1"


def test_a_first_submission_says_it_created_the_run_and_a_repeat_returns_the_same_run(
    make_workflow, connect
):
    wf = make_workflow(rung=3)
    client = connect(wf)
    kwargs = {"idempotency_key": "k-7", "input": {"q": 1}, "proposal": PROPOSAL}

    first = client.submit_run(wf.slug, **kwargs)
    again = client.submit_run(wf.slug, **kwargs)

    assert (first.created, again.created) == (True, False)
    assert first.id == again.id
    assert (first.workflow, first.rung, first.trace_events) == (wf.slug, 3, 2)
    assert first.trace_head == again.trace_head != ""
    assert TraceEvent.objects.filter(run_id=first.id).count() == 2


def test_an_append_that_may_have_reached_the_server_is_not_repeated(make_workflow, connect, flaky):
    wf = make_workflow(rung=3)
    transport = flaky(["pass", httpx.ReadError])
    client = connect(wf, transport=transport)
    info = client.submit_run(wf.slug, idempotency_key="k", input=None, proposal=PROPOSAL)

    with pytest.raises(LadderUnavailable) as caught:
        client.append_events(info.id, [{"type": "tool_call", "name": "late.lookup"}])

    assert caught.value.maybe_applied is True
    assert len(transport.sent) == 2
    assert TraceEvent.objects.filter(run_id=info.id, type="tool_call").count() == 1


def test_a_proposal_on_an_l0_workflow_raises_conflict_rung_forbids_action(make_workflow, connect):
    wf = make_workflow(rung=0, actions=())
    client = connect(wf)

    with pytest.raises(Conflict) as caught:
        client.submit_run(wf.slug, idempotency_key="k", input=None, proposal=PROPOSAL)

    assert (caught.value.status, caught.value.code) == (409, "rung_forbids_action")
    assert "L0" in caught.value.message
    assert not Run.objects.exists()


def test_a_bad_token_raises_unauthorized(make_workflow, connect):
    wf = make_workflow()

    for token in ("lat_not-a-real-token", "nonsense"):
        with pytest.raises(Unauthorized) as caught:
            connect(token=token).workflow(wf.slug)
        assert caught.value.status == 401


def test_report_result_executes_an_approved_run_once(make_workflow, connect):
    wf = make_workflow(rung=3)
    client = connect(wf)
    info = client.submit_run(wf.slug, idempotency_key="k", input=None, proposal=PROPOSAL)
    Run.objects.filter(pk=info.id).update(
        status="approved", decision={"verdict": "approved", **PROPOSAL}
    )

    done = client.report_result(info.id, succeeded=True, output={"refund_id": "R-9"})
    repeat = client.report_result(info.id, succeeded=True, output={"refund_id": "R-9"})

    assert done.status == repeat.status == "executed"
    assert done.result["output"] == {"refund_id": "R-9"}
    assert TraceEvent.objects.filter(run_id=info.id, type="execution").count() == 1
    with pytest.raises(Conflict) as caught:
        client.report_result(info.id, succeeded=False, error=RuntimeError("late"))
    assert caught.value.code == "already_reported"


def test_replay_rebuilds_a_recorded_run_from_its_trace(make_workflow, connect):
    wf = make_workflow(rung=0, actions=())
    client = connect(wf)
    info = client.submit_run(
        wf.slug,
        idempotency_key="k",
        input={"question": "opening hours?"},
        tool_calls=[{"name": "kb.search", "arguments": {"q": "hours"}, "result": ["9-17"]}],
        output={"answer": "9 to 17"},
    )

    replay = client.replay(info.id)

    assert info.status == "recorded"
    assert replay["complete"] is True
    assert replay["verified"] is True
    assert [step["type"] for step in replay["steps"]] == ["input", "tool_call", "output"]


def test_outcomes_metrics_and_workflow_reach_the_gateway(make_workflow, connect):
    wf = make_workflow(rung=0, actions=())
    client = connect(wf)
    info = client.submit_run(wf.slug, idempotency_key="k", input=None)

    labelled = client.record_outcome(info.id, label="correct", source="csat", note="happy")
    stored = client.post_metrics(wf.slug, [("csat", 4.5), {"metric": "csat", "value": 5}])
    described = client.workflow(wf.slug)

    assert labelled.outcome == "correct"
    assert TraceEvent.objects.filter(run_id=info.id, type="outcome").count() == 1
    assert stored == {"stored": 2}
    assert sorted(MetricPoint.objects.filter(workflow=wf).values_list("value", flat=True)) == [
        4.5,
        5.0,
    ]
    assert (described["slug"], described["rung"]) == (wf.slug, 0)


def test_each_refusal_raises_its_own_exception_with_the_gateways_code(make_workflow, connect):
    wf, other = make_workflow(rung=3), make_workflow()
    client = connect(wf)
    client.submit_run(wf.slug, idempotency_key="used", input={"a": 1}, proposal=PROPOSAL)
    missing_amount = {"action": "refund.issue", "params": {"order_id": "A-1"}}
    calls = [
        (
            lambda: client.submit_run("no-such-workflow", idempotency_key="k", input=None),
            NotFound,
            404,
            "unknown_workflow",
        ),
        (
            lambda: client.get_run("00000000-0000-0000-0000-000000000000"),
            NotFound,
            404,
            "unknown_run",
        ),
        (
            lambda: client.submit_run(other.slug, idempotency_key="k", input=None),
            Forbidden,
            403,
            "workflow_not_allowed",
        ),
        (
            lambda: client.submit_run(
                wf.slug, idempotency_key="k", input=None, proposal=missing_amount
            ),
            InvalidRequest,
            422,
            "invalid_params",
        ),
        (
            lambda: client.submit_run(
                wf.slug, idempotency_key="used", input={"a": 2}, proposal=PROPOSAL
            ),
            Conflict,
            409,
            "idempotency_key_reused",
        ),
    ]

    for call, exception, status, code in calls:
        with pytest.raises(exception) as caught:
            call()
        assert (caught.value.status, caught.value.code) == (status, code)
    assert Run.objects.count() == 1
