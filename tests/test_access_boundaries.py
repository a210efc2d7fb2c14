"""Agents and people never cross over: a token reaches no page and decides nothing, a
signed-in session acts as no agent; tokens are stored hashed, listed by prefix only and
revocable by command (issue: reliability, access)."""

import hashlib
import json

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.test import Client

from approvals.roles import role_grant
from tests.factories import ActionTypeFactory, UserFactory, WorkflowFactory
from traces.models import AgentToken, Run
from traces.services.tokens import token_create

pytestmark = pytest.mark.django_db

PAGES = [
    "/",
    "/queue/",
    "/my-decisions/",
    "/runs/{run}/",
    "/runs/{run}/replay",
    "/workflows/",
    "/workflows/{slug}/",
    "/workflows/{slug}/roles/",
    "/workflows/{slug}/policy/",
    "/workflows/{slug}/dossier",
    "/workflows/{slug}/evals/",
    "/workflows/{slug}/backtests/",
    "/promotions/",
    "/history/",
    "/history/export",
    "/audit/",
]


@pytest.fixture
def world(db):
    wf = WorkflowFactory(slug="bounds", rung=3)
    ActionTypeFactory(workflow=wf, name="refund.issue")
    person = UserFactory(username="pat", is_superuser=True, is_staff=True)
    for role in ("reviewer", "owner", "compliance", "admin"):
        role_grant(workflow=wf, user=person, role=role, by=None)
    token, raw = token_create(name="bounds agent", workflows=[wf])
    agent = Client(headers={"Authorization": f"Bearer {raw}"})
    answer = agent.post(
        "/api/v1/runs",
        data=json.dumps(
            {
                "workflow": "bounds",
                "idempotency_key": "b-1",
                "input": {"message": "refund order 7"},
                "proposal": {"action": "refund.issue", "params": {"order_id": "7", "amount": 5}},
            }
        ),
        content_type="application/json",
    )
    assert answer.status_code == 201
    session = Client()
    session.force_login(person)
    return {
        "wf": wf,
        "token": token,
        "raw": raw,
        "agent": agent,
        "session": session,
        "run": answer.json()["id"],
    }


def _pages(world):
    return [p.format(run=world["run"], slug=world["wf"].slug) for p in PAGES]


def test_the_pages_answer_the_signed_in_person(world):
    """The list below is real: each page serves a person (so a refusal means something)."""
    for path in _pages(world):
        assert world["session"].get(path).status_code == 200, path


def test_an_agent_token_reaches_no_page(world):
    for path in _pages(world):
        answer = world["agent"].get(path)
        assert answer.status_code == 302, path
        assert answer["Location"].startswith("/accounts/login/"), path


def test_an_agent_token_cannot_decide_a_run(world):
    for verdict in ("approve", "reject"):
        answer = world["agent"].post(f"/runs/{world['run']}/decide", {"verdict": verdict})
        assert answer.status_code in (302, 403)
    assert Run.objects.get(pk=world["run"]).status == "pending_review"


def test_a_signed_in_session_acts_as_no_agent(world):
    """Every operation of the API schema, called with a superuser's session cookie."""
    schema = world["agent"].get("/api/v1/openapi.json").json()
    calls, public = 0, set()
    for path, operations in schema["paths"].items():
        url = path.format(run_id=world["run"], slug=world["wf"].slug)
        for method, operation in operations.items():
            if "security" not in operation:  # declared public: no token needed
                public.add(path)
                continue
            if method == "get":
                answer = world["session"].get(url)
            else:
                body = {
                    "workflow": "bounds",
                    "idempotency_key": f"session-{calls}",
                    "input": {"message": "hello"},
                    "proposal": {"action": "refund.issue", "params": {"amount": 1}},
                }
                answer = world["session"].post(url, data=body, content_type="application/json")
            calls += 1
            assert answer.status_code == 401, (method, path, answer.status_code)
            assert answer["Content-Type"].startswith("application/json")
    assert calls >= 10
    # Only the certificates' public key is meant for anyone (docs/certificates.md).
    assert public == {"/api/v1/certificates/public-key"}
    assert Run.objects.count() == 1  # nothing stored by the session


def test_tokens_are_stored_as_their_sha256_only(world):
    token, raw = world["token"], world["raw"]
    assert token.token_hash == hashlib.sha256(raw.encode()).hexdigest()
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM traces_agenttoken")
        rows = cursor.fetchall()
    assert rows and not any(raw in str(value) for row in rows for value in row)


def test_the_listing_shows_the_prefix_never_the_token(world, capsys):
    call_command("agent_tokens")
    out = capsys.readouterr().out
    assert world["token"].prefix in out and "bounds agent" in out and "active" in out
    assert world["raw"] not in out and world["token"].token_hash not in out


def test_a_revoked_token_is_refused_on_its_next_request(world, capsys):
    agent, run = world["agent"], world["run"]
    assert agent.get(f"/api/v1/runs/{run}").status_code == 200
    call_command("revoke_agent_token", world["token"].prefix)
    assert "revoked" in capsys.readouterr().out
    answer = agent.get(f"/api/v1/runs/{run}")
    assert answer.status_code == 401 and answer.json()["error"]["code"] == "invalid_token"
    call_command("agent_tokens")
    assert "revoked 2" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("given", "says"),
    [
        ("lat_", "at least the first 12 characters"),
        ("lat_XXXXXXXXXXXX", "no agent token starts with"),
    ],
)
def test_a_bad_prefix_is_refused_with_a_clear_message(world, given, says):
    with pytest.raises(CommandError, match=says):
        call_command("revoke_agent_token", given)
    assert AgentToken.objects.get(pk=world["token"].pk).revoked_at is None


def test_revoking_twice_is_refused_and_a_whole_token_is_matched_exactly(world):
    call_command("revoke_agent_token", world["raw"])
    with pytest.raises(CommandError, match="already revoked"):
        call_command("revoke_agent_token", world["token"].prefix)
    other, raw = token_create(name="other", workflows=[world["wf"]])
    with pytest.raises(CommandError, match="no agent token"):
        call_command("revoke_agent_token", raw[:12] + "not-the-rest")
    assert AgentToken.objects.get(pk=other.pk).revoked_at is None
