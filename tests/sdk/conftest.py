"""Fixtures for SDK tests: a live gateway, agent clients, and a reviewer in a thread."""

import threading
import time

import httpx
import pytest
from django.contrib.auth.models import User
from django.db import connections

from ladder_client import LadderClient
from traces.models import Run
from traces.services.decisions import DecisionInput, run_decide
from traces.services.tokens import token_create


@pytest.fixture
def connect(live_server):
    """`connect(*workflows, **client_kwargs)`: a LadderClient with a token for them."""
    clients = []

    def make(*workflows, token=None, **kwargs):
        if token is None:
            _token, token = token_create(name="sdk test agent", workflows=list(workflows))
        kwargs.setdefault("backoff", 0.01)
        client = LadderClient(live_server.url, token, **kwargs)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


class Reviewer:
    """Decides the next waiting run of a workflow from a background thread, after a short
    delay, through the service the reviewer's pages call (traces.services.decisions.run_decide)."""

    def __init__(self):
        self.threads = []
        self.errors = []
        self.decided = []

    def decide_soon(
        self, workflow, *, verdict="approved", params=None, action=None, reason="", delay=0.2
    ):
        def work():
            try:
                deadline = time.monotonic() + 5
                run = None
                while run is None and time.monotonic() < deadline:
                    run = Run.objects.filter(workflow=workflow, status="pending_review").first()
                    if run is None:
                        time.sleep(0.02)
                if run is None:
                    raise AssertionError(f"no run of {workflow.slug} waited for review")
                time.sleep(delay)
                person, _ = User.objects.get_or_create(username="reviewer")
                run_decide(
                    run_id=run.pk,
                    user_id=person.pk,
                    actor_name=person.username,
                    seen_version=run.version,
                    seen_hash="sdk-test-reviewer",
                    decision=DecisionInput(
                        verdict=verdict,
                        action=action or run.proposal["action"],
                        params=run.proposal["params"] if params is None else params,
                        extra={},
                        reason=reason,
                    ),
                )
                self.decided.append(str(run.pk))
            except Exception as exc:  # surfaced by join()
                self.errors.append(exc)
            finally:
                connections.close_all()

        thread = threading.Thread(target=work, daemon=True)
        thread.start()
        self.threads.append(thread)
        return thread

    def join(self):
        for thread in self.threads:
            thread.join(timeout=10)
        if self.errors:
            raise self.errors[0]


@pytest.fixture
def reviewer():
    r = Reviewer()
    yield r
    r.join()


class FlakyTransport(httpx.BaseTransport):
    """Forwards requests to the real server, except as `plan` says, one step per request:

    - "pass": forward;
    - "refuse": raise ConnectError without sending (the server never sees it);
    - "503": answer 503 without sending;
    - an exception class: forward (the server stores it), then raise that exception, as
      if the connection died before the answer arrived.
    """

    def __init__(self, plan):
        self.inner = httpx.HTTPTransport()
        self.plan = list(plan)
        self.sent = []  # (method, path, body) of every attempt

    def handle_request(self, request):
        request.read()
        self.sent.append((request.method, request.url.path, request.content))
        step = self.plan.pop(0) if self.plan else "pass"
        if step == "refuse":
            raise httpx.ConnectError("connection refused", request=request)
        if step == "503":
            return httpx.Response(503, text="upstream unavailable", request=request)
        response = self.inner.handle_request(request)
        if step != "pass":
            response.read()
            response.close()
            raise step("the connection dropped before the answer arrived", request=request)
        return response

    def close(self):
        self.inner.close()


@pytest.fixture
def flaky():
    """`flaky(plan)`: a FlakyTransport to hand to `connect(..., transport=...)`."""
    return FlakyTransport
