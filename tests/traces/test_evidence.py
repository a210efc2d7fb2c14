"""A decided run's evidence cannot be rewritten by its agent, and no run's trace grows
without bound. Driven through the agent API and the reviewer's pages, as in real use."""

import re

import pytest
from django.test import Client

from approvals.roles import role_grant
from ladder.rungs import Executor
from tests.factories import ActionTypeFactory, UserFactory, WorkflowFactory
from traces.models import Run, TraceEvent

pytestmark = pytest.mark.django_db


@pytest.fixture
def flow(db):
    wf = WorkflowFactory(slug="refunds", rung=3)
    ActionTypeFactory(workflow=wf, name="refund.issue", executor=Executor.AGENT)
    reviewer = UserFactory(username="rev")
    role_grant(workflow=wf, user=reviewer, role="reviewer", by=None)
    return wf, reviewer


@pytest.fixture
def browser(flow):
    _wf, reviewer = flow
    client = Client()
    client.force_login(reviewer)
    return client


def submit(api, *, amount=50.0, key="k-1", message="Charged twice for order A-1"):
    response = api.post(
        "/runs",
        {
            "workflow": "refunds",
            "idempotency_key": key,
            "input": {"message": message},
            "tool_calls": [{"name": "orders.lookup", "arguments": {"id": "A-1"}, "result": "paid"}],
            "proposal": {
                "action": "refund.issue",
                "params": {"order_id": "A-1", "amount": amount, "currency": "EUR"},
            },
        },
    )
    assert response.status_code == 201, response.content
    return response.json()["id"]


def open_page(browser, run_id) -> dict:
    """The reviewer opens the run; returns the hidden fields the page's form carries."""
    page = browser.get(f"/runs/{run_id}/")
    assert page.status_code == 200
    html = page.content.decode()
    return {
        name: re.search(rf'name="{name}" value="([^"]*)"', html).group(1)
        for name in ("seen_hash", "seen_version")
    }


def approve(browser, run_id):
    form = open_page(browser, run_id)
    response = browser.post(f"/runs/{run_id}/decide", {**form, "verdict": "approve"})
    assert response.status_code == 302
    assert Run.objects.get(pk=run_id).status == "approved"


def events(run_id) -> list[str]:
    return list(TraceEvent.objects.filter(run_id=run_id).values_list("type", flat=True))


# -- the context a decision was made on ---------------------------------------------------


def test_an_agent_cannot_rewrite_the_input_of_an_approved_run(agent, flow, browser):
    api = agent(flow[0])
    run_id = submit(api, amount=50.0, message="refund of 50 EUR please")
    approve(browser, run_id)
    before = events(run_id)

    forged = api.post(f"/runs/{run_id}/events", {"type": "input", "input": "refund of 5000 EUR"})

    assert forged.status_code == 409
    assert forged.json()["error"]["code"] == "context_frozen"
    assert events(run_id) == before  # nothing was added
    replay = api.get(f"/runs/{run_id}/replay").json()
    assert replay["verified"] is True
    assert replay["run"]["input"] == {"message": "refund of 50 EUR please"}
    assert all("5000" not in str(step["payload"]) for step in replay["steps"])


def test_once_a_reviewer_was_shown_the_run_its_context_is_closed(agent, flow, browser):
    api = agent(flow[0])
    run_id = submit(api)
    open_page(browser, run_id)

    for event in (
        {"type": "input", "input": "actually, refund 5000"},
        {"type": "tool_call", "name": "orders.lookup", "result": "forged"},
        {"type": "output", "output": "forged"},
    ):
        response = api.post(f"/runs/{run_id}/events", event)
        assert response.status_code == 409, event
        assert "reviewer has been shown" in response.json()["error"]["message"]
    assert events(run_id).count("tool_call") == 1


def test_before_anyone_looked_the_agent_may_still_add_context(agent, flow):
    api = agent(flow[0])
    run_id = submit(api)
    version = Run.objects.get(pk=run_id).version

    response = api.post(f"/runs/{run_id}/events", {"type": "output", "output": "draft ready"})

    assert response.status_code == 201
    assert Run.objects.get(pk=run_id).version == version + 1  # older views go stale
    assert api.get(f"/runs/{run_id}/replay").json()["run"]["output"] == "draft ready"


def test_after_approval_execution_reports_are_kept_apart_from_the_decision_context(
    agent, flow, browser
):
    api = agent(flow[0])
    run_id = submit(api)
    approve(browser, run_id)

    report = api.post(
        f"/runs/{run_id}/events",
        {
            "type": "tool_call",
            "phase": "execution",
            "name": "payments.refund",
            "arguments": {"order_id": "A-1"},
            "result": "ok",
        },
    )

    assert report.status_code == 201
    rebuilt = api.get(f"/runs/{run_id}/replay").json()["run"]
    assert [call["name"] for call in rebuilt["tool_calls"]] == ["orders.lookup"]
    assert [(e["type"], e["name"]) for e in rebuilt["after_decision"]] == [
        ("tool_call", "payments.refund")
    ]


def test_execution_phase_events_before_an_approval_are_refused(agent, flow, browser):
    api = agent(flow[0])
    waiting = submit(api, key="k-wait")
    response = api.post(
        f"/runs/{waiting}/events", {"type": "output", "phase": "execution", "output": "done"}
    )
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "not_approved"

    rejected = submit(api, key="k-reject")
    form = open_page(browser, rejected)
    browser.post(f"/runs/{rejected}/decide", {**form, "verdict": "reject", "reason": "no"})
    for event in (
        {"type": "output", "phase": "execution", "output": "done"},
        {"type": "output", "output": "done"},
    ):
        assert api.post(f"/runs/{rejected}/events", event).status_code == 409


def test_a_phase_other_than_execution_is_a_clear_422(agent, flow):
    api = agent(flow[0])
    run_id = submit(api)
    response = api.post(f"/runs/{run_id}/events", {"type": "output", "phase": "later"})
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "invalid_phase"


def test_outcome_labels_accumulate_and_a_wrong_is_never_overwritten(agent, flow, browser):
    api = agent(flow[0])
    run_id = submit(api)
    approve(browser, run_id)
    api.post(f"/runs/{run_id}/claim")
    api.post(f"/runs/{run_id}/result", {"status": "succeeded"})

    first = api.post(f"/runs/{run_id}/outcome", {"label": "wrong", "source": "customer"})
    second = api.post(f"/runs/{run_id}/outcome", {"label": "correct", "source": "agent"})

    assert first.status_code == second.status_code == 200
    assert second.json()["outcome"] == "wrong"
    assert api.get(f"/runs/{run_id}").json()["outcome"] == "wrong"
    rebuilt = api.get(f"/runs/{run_id}/replay").json()["run"]
    assert [o["label"] for o in rebuilt["outcomes"]] == ["wrong", "correct"]
    assert rebuilt["outcome"] == "wrong"


# -- what a reviewer saw ------------------------------------------------------------------


def test_reloading_a_run_page_writes_no_new_trace_event(flow, agent, browser):
    from django.core.cache import cache

    run_id = submit(agent(flow[0]))
    for _ in range(5):
        open_page(browser, run_id)
        cache.clear()  # no cache or Redis state is what keeps this to one event

    assert events(run_id).count("review_shown") == 1


def test_what_was_shown_is_referred_to_not_copied(flow, agent, browser):
    big = "x" * 300_000
    run_id = submit(agent(flow[0]), message=big)
    open_page(browser, run_id)
    approve(browser, run_id)

    shown = TraceEvent.objects.get(run_id=run_id, type="review_shown")
    assert len(shown.document) < 2_000  # not the 300 kB context again
    replay = agent(flow[0]).get(f"/runs/{run_id}/replay").json()
    assert [s["matches"] for s in replay["run"]["shown"]] == [True]


def test_a_decision_records_what_its_reviewer_saw_when_the_page_view_did_not(flow, agent):
    wf, reviewer = flow
    other = UserFactory(username="rev2")
    role_grant(workflow=wf, user=other, role="reviewer", by=None)
    run_id = submit(agent(wf))
    first, second = Client(), Client()
    first.force_login(reviewer)
    second.force_login(other)
    form = open_page(first, run_id)  # only the first reviewer's view is recorded

    response = second.post(f"/runs/{run_id}/decide", {**form, "verdict": "approve"})

    assert response.status_code == 302
    shown = TraceEvent.objects.filter(run_id=run_id, type="review_shown").order_by("seq")
    assert [ev.payload["by"] for ev in shown] == ["rev", "rev2"]
    decision = TraceEvent.objects.get(run_id=run_id, type="review_decision")
    assert decision.seq > shown.last().seq
    assert decision.payload["seen_hash"] == shown.last().payload["hash"] == form["seen_hash"]


# -- bounds -------------------------------------------------------------------------------


def test_a_run_takes_no_more_events_than_the_limit(agent, flow, settings):
    settings.LADDER_MAX_RUN_EVENTS = 10
    api = agent(flow[0])
    run_id = submit(api)  # input, tool call, proposal: 3 events
    many = {"events": [{"type": "tool_call", "name": f"t{i}"} for i in range(7)]}
    assert api.post(f"/runs/{run_id}/events", many).status_code == 201

    over = api.post(f"/runs/{run_id}/events", {"type": "output", "output": "one more"})
    outcome = api.post(f"/runs/{run_id}/outcome", {"label": "wrong", "source": "spam"})

    assert over.status_code == outcome.status_code == 409
    assert over.json()["error"]["code"] == "trace_full"
    assert "LADDER_MAX_RUN_EVENTS" in over.json()["error"]["message"]
    assert len(events(run_id)) == 10


def test_a_run_takes_no_more_bytes_than_the_limit(agent, flow, settings):
    settings.LADDER_MAX_RUN_TRACE_BYTES = 20_000
    api = agent(flow[0])
    run_id = submit(api)
    before = events(run_id)

    big = api.post(f"/runs/{run_id}/events", {"type": "output", "output": "y" * 20_000})

    assert big.status_code == 413
    assert big.json()["error"]["code"] == "trace_too_large"
    assert events(run_id) == before
    small = api.post(f"/runs/{run_id}/events", {"type": "output", "output": "short"})
    assert small.status_code == 201


def test_a_full_trace_still_takes_the_reviewers_decision(agent, flow, browser, settings):
    settings.LADDER_MAX_RUN_EVENTS = 4
    api = agent(flow[0])
    run_id = submit(api)
    api.post(f"/runs/{run_id}/events", {"type": "output", "output": "last word"})
    assert api.post(f"/runs/{run_id}/events", {"type": "output", "output": "x"}).status_code == 409

    approve(browser, run_id)

    assert events(run_id)[-2:] == ["review_shown", "review_decision"]
    assert api.get(f"/runs/{run_id}/replay").json()["verified"] is True


def test_the_replay_page_says_the_shown_screen_matches_and_what_came_after(agent, flow, browser):
    api = agent(flow[0])
    run_id = submit(api)
    approve(browser, run_id)
    api.post(f"/runs/{run_id}/events", {"type": "output", "phase": "execution", "output": "ok"})

    page = browser.get(f"/runs/{run_id}/replay").content.decode()

    assert "What <b>rev</b> saw" in page
    assert '<span class="check ok">✓ screen rebuilt matches its hash</span>' in page
    assert "1 agent step came after the decision" in page
