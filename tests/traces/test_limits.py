"""Per-token request rate and concurrent waits on the agent API (security finding 2)."""

import threading
import time

import pytest
from django.db import connections
from django.test import Client

from tests.traces.test_gateway import body
from traces.limits import WAITS
from traces.models import AgentToken


def test_over_its_rate_a_token_gets_429_with_retry_after_and_a_json_error(
    make_workflow, agent, settings
):
    settings.LADDER_RATE_LIMIT_PER_SECOND = 1
    settings.LADDER_RATE_LIMIT_BURST = 3
    wf = make_workflow(rung=3)
    a = agent(wf)
    run_id = a.post("/runs", body(wf)).json()["id"]
    assert [a.get(f"/runs/{run_id}").status_code for _ in range(2)] == [200, 200]
    resp = a.get(f"/runs/{run_id}")
    assert resp.status_code == 429
    assert resp.json()["error"]["code"] == "rate_limited"
    assert resp["Retry-After"] == "1"
    # The gateway's hot path is limited too, and stores nothing when refused.
    refused = a.post("/runs", body(wf, key="k-2"))
    assert refused.status_code == 429 and refused.json()["error"]["code"] == "rate_limited"
    assert refused["Retry-After"] == "1"
    # Another token has its own bucket.
    assert agent(wf).get(f"/runs/{run_id}").status_code == 200


def test_a_token_within_its_rate_is_never_refused(make_workflow, agent, settings):
    settings.LADDER_RATE_LIMIT_PER_SECOND = 1000
    settings.LADDER_RATE_LIMIT_BURST = 20
    wf = make_workflow(rung=3)
    a = agent(wf)
    statuses = {a.post("/runs", body(wf, key=f"k-{i}")).status_code for i in range(20)}
    assert statuses == {201}


def test_a_rate_of_zero_turns_the_limit_off(make_workflow, agent, settings):
    settings.LADDER_RATE_LIMIT_PER_SECOND = 0
    settings.LADDER_RATE_LIMIT_BURST = 1
    wf = make_workflow(rung=3)
    a = agent(wf)
    assert {a.post("/runs", body(wf, key=f"k-{i}")).status_code for i in range(5)} == {201}


@pytest.mark.django_db(transaction=True)
def test_without_the_parking_server_the_wait_cap_still_holds_and_is_released(
    make_workflow, agent, settings
):
    # runserver and plain WSGI servers wait in the thread; the cap applies all the same.
    settings.LADDER_MAX_WAITS_PER_TOKEN = 1
    wf = make_workflow(rung=3)
    a = agent(wf)
    run_id = a.post("/runs", body(wf)).json()["id"]
    token_id = AgentToken.objects.get().pk
    answers = []

    def wait():
        try:
            answers.append(
                Client().get(f"/api/v1/runs/{run_id}?wait=2", headers=a.headers).status_code
            )
        finally:
            connections.close_all()

    waiter = threading.Thread(target=wait)
    waiter.start()
    deadline = time.monotonic() + 10
    while WAITS.held(token_id) == 0:
        assert time.monotonic() < deadline, "the first poll never started waiting"
        time.sleep(0.01)
    refused = a.get(f"/runs/{run_id}?wait=1")
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "too_many_waits"
    assert int(refused["Retry-After"]) >= 1
    assert a.get(f"/runs/{run_id}").status_code == 200  # a plain read needs no slot
    waiter.join(timeout=10)
    assert answers == [200]
    assert WAITS.held(token_id) == 0
    assert a.get(f"/runs/{run_id}?wait=0.1").status_code == 200
    assert WAITS.held(token_id) == 0
