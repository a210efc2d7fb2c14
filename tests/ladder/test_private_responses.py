"""Nothing private may be kept by a browser or proxy cache: every answer of the app says
`Cache-Control: no-store`; static files keep their own caching (security review,
finding 10)."""

import pytest
from django.test import Client

from approvals.roles import role_grant
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


def _body(wf):
    return {
        "workflow": wf.slug,
        "idempotency_key": "k-1",
        "input": {"m": "hi"},
        "proposal": {"action": "refund.issue", "params": {"order_id": "A-1", "amount": 3}},
    }


def test_every_api_answer_says_no_store(make_workflow, agent):
    wf = make_workflow(rung=3)
    a = agent(wf)
    created = a.post("/runs", _body(wf))  # the hot path's plain view
    run_id = created.json()["id"]
    answers = {
        "POST /runs": created,
        "POST /runs again": a.post("/runs", _body(wf)),
        "GET /runs/{id}": a.get(f"/runs/{run_id}"),
        "GET replay": a.get(f"/runs/{run_id}/replay"),
        "GET workflow": a.get(f"/workflows/{wf.slug}"),
        "404": a.get("/runs/nope"),
        "unknown path": a.get("/nothing/here"),
        "401": Client().get(f"/api/v1/workflows/{wf.slug}"),
        "405": Client().delete("/api/v1/runs"),
        "openapi": Client().get("/api/v1/openapi.json"),
    }
    assert {name: r["Cache-Control"] for name, r in answers.items()} == {
        name: "no-store" for name in answers
    }


def test_pages_for_signed_in_people_and_the_login_page_say_no_store(make_workflow, client):
    wf = make_workflow(rung=3)
    person = UserFactory(username="rev")
    role_grant(workflow=wf, user=person, role="reviewer")
    assert "no-store" in client.get("/accounts/login/")["Cache-Control"]
    client.force_login(person)
    for path in ("/", "/?workflow=x", f"/workflows/{wf.slug}/roles/"):
        resp = client.get(path)
        assert resp.status_code in (200, 404), path
        assert "no-store" in resp["Cache-Control"], path


def test_static_files_keep_their_own_caching(client):
    resp = client.get("/static/ladder.css")
    assert resp.status_code == 200
    assert "no-store" not in resp.get("Cache-Control", "")
