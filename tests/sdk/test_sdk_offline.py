"""SDK behaviour that needs no server: packaging, encoding, error mapping, retry rules."""

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from uuid import UUID

import httpx
import pytest

from ladder_client import (
    Conflict,
    Decision,
    LadderAPIError,
    LadderClient,
    LadderUnavailable,
)
from ladder_client._json import jsonable

ROOT = Path(__file__).resolve().parents[2]


def test_importing_the_sdk_does_not_import_django():
    code = (
        "import sys\n"
        "assert 'django' not in sys.modules\n"
        "import ladder_client\n"
        "from ladder_client import LadderClient\n"
        "LadderClient('http://127.0.0.1:9', 'lat_x').close()\n"
        "leaked = sorted(m for m in sys.modules if m == 'django' or m.startswith('django.'))\n"
        "assert not leaked, leaked\n"
        "print('ok')\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )

    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


def mock_client(handler, **kwargs):
    kwargs.setdefault("backoff", 0)
    return LadderClient(
        "http://gateway.test", "lat_x", transport=httpx.MockTransport(handler), **kwargs
    )


def test_an_error_body_becomes_the_matching_exception_with_its_code():
    def handler(request):
        assert request.headers["Authorization"] == "Bearer lat_x"
        body = {"error": {"code": "already_reported", "message": "a result was already reported"}}
        return httpx.Response(409, json=body)

    with pytest.raises(Conflict) as caught:
        mock_client(handler).report_result("r-1", succeeded=True)

    assert (caught.value.status, caught.value.code) == (409, "already_reported")
    assert caught.value.message == "a result was already reported"


def test_a_non_json_error_page_still_raises_an_api_error():
    with pytest.raises(LadderAPIError) as caught:
        mock_client(lambda r: httpx.Response(500, text="<h1>Server Error</h1>")).get_run("r")

    assert (caught.value.status, caught.value.code) == (500, "http_500")


def test_a_502_on_an_append_is_not_repeated_because_it_may_have_been_applied():
    seen = []

    def handler(request):
        seen.append(request)
        return httpx.Response(502)

    with pytest.raises(LadderUnavailable) as caught:
        mock_client(handler).append_events("r", [{"type": "output", "output": "x"}])

    assert len(seen) == 1
    assert caught.value.maybe_applied is True


def test_a_503_on_a_read_is_retried_after_the_servers_retry_after():
    answers = [httpx.Response(503, headers={"Retry-After": "2"}), httpx.Response(200, json={})]
    pauses = []
    client = mock_client(lambda r: answers.pop(0))
    client._sleep = pauses.append

    assert client.workflow("wf") == {}
    assert pauses == [2.0]


def database_unavailable(*, maybe_applied: bool) -> httpx.Response:
    body = {
        "error": {
            "code": "database_unavailable",
            "message": "the database is unavailable; retry in 1 s",
            "details": {"maybe_applied": maybe_applied},
        }
    }
    return httpx.Response(503, headers={"Retry-After": "1"}, json=body)


def test_a_database_503_on_a_submission_is_retried_with_the_same_key_after_retry_after():
    # Retried whatever maybe_applied says: the idempotency key makes the repeat harmless.
    answers = [database_unavailable(maybe_applied=True), database_unavailable(maybe_applied=False)]
    seen, pauses = [], []

    def handler(request):
        seen.append(json.loads(request.content))
        return answers.pop(0) if answers else stored_run(request)

    client = mock_client(handler)
    client._sleep = pauses.append
    info = client.submit_run("wf", idempotency_key="k-7", input={"text": "hello"})

    assert info.id == "r-1"
    assert [body["idempotency_key"] for body in seen] == ["k-7"] * 3
    assert pauses == [1.0, 1.0]


def test_a_database_503_on_an_append_is_repeated_only_when_nothing_may_have_been_applied():
    appended = httpx.Response(201, json={"appended": 1, "trace": {"events": 2, "head": "h"}})
    answers = [database_unavailable(maybe_applied=False), appended]
    seen = []

    def handler(request):
        seen.append(request)
        return answers.pop(0)

    mock_client(handler).append_events("r", [{"type": "output", "output": "x"}])
    assert len(seen) == 2

    seen.clear()
    answers[:] = [database_unavailable(maybe_applied=True), appended]
    with pytest.raises(LadderUnavailable) as caught:
        mock_client(handler).append_events("r", [{"type": "output", "output": "x"}])
    assert len(seen) == 1
    assert caught.value.maybe_applied is True


def test_a_429_is_retried_after_the_servers_retry_after_even_for_an_append():
    # The gateway refuses an over-rate token before doing anything: nothing can double.
    limited = {"error": {"code": "rate_limited", "message": "over 50 requests a second"}}
    answers = [
        httpx.Response(429, headers={"Retry-After": "3"}, json=limited),
        httpx.Response(201, json={"appended": 1, "trace": {"events": 2, "head": "h"}}),
    ]
    seen, pauses = [], []

    def handler(request):
        seen.append(request)
        return answers.pop(0)

    client = mock_client(handler)
    client._sleep = pauses.append
    client.append_events("r", [{"type": "output", "output": "x"}])

    assert len(seen) == 2
    assert pauses == [3.0]


def test_agent_values_are_sent_as_plain_json():
    value = {
        "amount": Decimal("12.50"),
        "count": Decimal("3"),
        "at": datetime(2026, 1, 2, 3, 4, tzinfo=UTC),
        "id": UUID("12345678-1234-5678-1234-567812345678"),
        "tags": ("a", "b"),
    }

    assert jsonable(value) == {
        "amount": 12.5,
        "count": 3,
        "at": "2026-01-02T03:04:00+00:00",
        "id": "12345678-1234-5678-1234-567812345678",
        "tags": ["a", "b"],
    }
    with pytest.raises(ValueError, match="NaN"):
        jsonable({"x": float("nan")})


def test_a_run_submission_sends_the_contracts_body():
    sent = []

    def handler(request):
        sent.append(json.loads(request.content))
        run = {"id": "r-1", "workflow": "wf", "rung": 3, "status": "pending_review"}
        return httpx.Response(201, json={**run, "trace": {"events": 2, "head": "ab"}})

    info = mock_client(handler).submit_run(
        "wf",
        idempotency_key="k",
        input={"q": 1},
        proposal={"action": "refund.issue", "params": {"amount": Decimal("5")}},
    )

    assert sent == [
        {
            "workflow": "wf",
            "idempotency_key": "k",
            "input": {"q": 1},
            "proposal": {"action": "refund.issue", "params": {"amount": 5}},
        }
    ]
    assert (info.id, info.created, info.trace_events, info.trace_head) == ("r-1", True, 2, "ab")


def test_a_policy_decision_without_a_verdict_falls_back_to_the_status_and_proposal():
    proposal = {"action": "notify.send", "params": {"to": "x"}}

    allowed = Decision.from_payload(None, run_id="r", status="executing", proposal=proposal)
    denied = Decision.from_payload(None, run_id="r", status="denied", proposal=proposal)

    assert (allowed.approved, allowed.action, allowed.params) == (True, "notify.send", {"to": "x"})
    assert denied.approved is False


def test_a_gated_function_must_accept_its_params_by_keyword():
    client = LadderClient("http://127.0.0.1:9", "lat_x")

    with pytest.raises(TypeError, match="positional-only"):

        @client.gated("wf", "refund.issue")
        def issue_refund(order_id, /):
            pass


RUN = {"id": "r-1", "workflow": "wf", "rung": 3, "status": "pending_review"}


def stored_run(request):
    return httpx.Response(201, json={**RUN, "trace": {"events": 2, "head": "ab"}})


def test_a_refused_connection_and_a_503_are_retried_for_a_submission():
    answers = [httpx.ConnectError("refused"), httpx.Response(503), None]
    seen = []

    def handler(request):
        seen.append(request.content)
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer or stored_run(request)

    info = mock_client(handler).submit_run("wf", idempotency_key="k", input=None)

    assert info.id == "r-1"
    assert len(seen) == 3 and len(set(seen)) == 1


def test_the_client_gives_up_with_unavailable_when_retries_run_out():
    seen = []

    def handler(request):
        seen.append(request)
        raise httpx.ConnectError("refused")

    with pytest.raises(LadderUnavailable) as caught:
        mock_client(handler, retries=2).submit_run("wf", idempotency_key="k", input=None)

    assert caught.value.attempts == 3
    assert len(seen) == 3


def test_the_base_url_may_include_the_api_prefix():
    seen = []

    def handler(request):
        seen.append(str(request.url))
        return httpx.Response(200, json={"slug": "wf"})

    transport = httpx.MockTransport(handler)
    for base in ("http://gw.test", "http://gw.test/", "http://gw.test/api/v1/"):
        LadderClient(base, "lat_x", transport=transport).workflow("wf")

    assert seen == ["http://gw.test/api/v1/workflows/wf"] * 3


def test_a_run_is_submitted_once():
    seen = []

    def handler(request):
        seen.append(request)
        return stored_run(request)

    with mock_client(handler).run("wf") as run:
        run.propose("refund.issue", {"amount": 1})
        with pytest.raises(RuntimeError, match="already submitted"):
            run.propose("refund.issue", {"amount": 1})

    assert len(seen) == 1
