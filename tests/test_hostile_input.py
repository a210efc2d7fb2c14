"""Hostile input on every page filter, form and API endpoint: always a 4xx or a normal
answer, never a 500; every API error is JSON (security review, finding 9)."""

import json
from urllib.parse import quote, urlencode

import pytest
from django.test import Client

from approvals.roles import role_grant
from tests.factories import ActionTypeFactory, UserFactory, WorkflowFactory
from traces.services.tokens import token_create

pytestmark = pytest.mark.django_db

NUL = "\x00"
# What a careless or hostile client sends: NUL, over-long, odd numbers and dates, markup,
# unicode that is not what it looks like, and values that are almost right.
HOSTILE = [
    NUL,
    f"a{NUL}b",
    "x" * 5000,
    "",
    " ",
    "-1",
    "1e400",
    "NaN",
    "null",
    "<script>alert(1)</script>",
    "'; DROP TABLE traces_run; --",
    "../../etc/passwd",
    "%",
    "\u202e\ufeff",
    "🙂" * 300,
    "00000000-0000-0000-0000-000000000000",
    "9999-12-31T23:59:59-23:59_00000000-0000-0000-0000-000000000000",
    "0001-01-01T00:00:00+14:00_00000000-0000-0000-0000-000000000000",
    "2026-01-01T00:00:00_not-a-uuid",
    "9999-12-31T23:59:59-23:59",
    "0001-01-01T00:00:00+14:00",
    "_",
]
# Query strings a browser would never build: bytes that are not UTF-8, a raw %00.
RAW_QUERIES = ["%FF%FE", "%ED%A0%80", "%00", "a=%00&a=b", "%00=1", "=" * 200, "&" * 500]


@pytest.fixture
def world(db):
    wf = WorkflowFactory(slug="fuzz", rung=3)
    ActionTypeFactory(workflow=wf, name="refund.issue")
    person = UserFactory(username="fuzzer")
    for role in ("reviewer", "owner"):
        role_grant(workflow=wf, user=person, role=role, by=None)
    _token, raw = token_create(name="fuzz agent", workflows=[wf])
    agent = Client(raise_request_exception=False, headers={"Authorization": f"Bearer {raw}"})
    run = agent.post(
        "/api/v1/runs",
        data=json.dumps(
            {
                "workflow": "fuzz",
                "idempotency_key": "fuzz-1",
                "input": {"m": "hi"},
                "proposal": {"action": "refund.issue", "params": {"order_id": "A", "amount": 3}},
            }
        ),
        content_type="application/json",
    ).json()
    browser = Client(raise_request_exception=False)
    browser.force_login(person)
    return {"wf": wf, "agent": agent, "browser": browser, "run_id": run["id"]}


def _problems(responses) -> list[str]:
    return [f"{label} → {r.status_code}" for label, r in responses if r.status_code >= 500]


def _api_not_json(responses) -> list[str]:
    return [
        f"{label} → {r.status_code} {r['Content-Type']}"
        for label, r in responses
        if r.status_code >= 400 and not r["Content-Type"].startswith("application/json")
    ]


def test_hostile_values_in_page_filters_forms_and_paths_never_cause_a_500(world):
    browser, run_id = world["browser"], world["run_id"]
    seen = []
    for value in HOSTILE:
        for name in ("workflow", "queue", "action", "after"):
            seen.append((f"/?{name}={value[:40]!r}", browser.get("/", {name: value})))
        seen.append((f"/audit/?after={value[:40]!r}", browser.get("/audit/", {"after": value})))
        segment = quote(value, safe="")
        for path in (
            f"/runs/{segment}/",
            f"/runs/{segment}/replay",
            f"/workflows/{segment}/roles/",
            f"/workflows/{segment}/settings",
            f"/audit/{segment}/",
        ):
            seen.append((f"GET {path[:60]}", browser.get(path)))
        seen.append(
            (
                f"settings {value[:40]!r}",
                browser.post(
                    "/workflows/fuzz/settings", {"amount": value, "unit": value, "action": value}
                ),
            )
        )
        seen.append(
            (
                f"audit {value[:40]!r}",
                browser.post(f"/audit/{run_id}/", {"label": value, "note": value}),
            )
        )
        form = {
            "verdict": value,
            "seen_version": value,
            "seen_hash": value,
            "reason": value,
            "param__amount": value,
            "option": value,
            "own_action": value,
            "own_params": value,
            value: value,
        }
        seen.append((f"decide {value[:40]!r}", browser.post(f"/runs/{run_id}/decide", form)))
        seen.append(
            (
                f"roles {value[:40]!r}",
                browser.post(
                    "/workflows/fuzz/roles/", {"username": value, "role": value, "action": value}
                ),
            )
        )
        seen.append(
            (
                f"login {value[:40]!r}",
                Client(raise_request_exception=False).post(
                    "/accounts/login/", {"username": value, "password": value}
                ),
            )
        )
    for query in RAW_QUERIES:
        seen.append((f"/?{query[:40]}", browser.get(f"/?{query}")))
        seen.append((f"/runs/…/?{query[:40]}", browser.get(f"/runs/{run_id}/?{query}")))
    assert not _problems(seen)


def test_hostile_values_on_the_new_pages_and_forms_never_cause_a_500(world):
    """Moving down, stop and resume, drills, drift, breaker settings, the history and its
    exports, My decisions, the replay file, the dossiers and the queue's new-runs poll."""
    browser, run_id = world["browser"], world["run_id"]
    seen = []
    for value in HOSTILE:
        segment = quote(value, safe="")
        for path, form in (
            ("/workflows/fuzz/demote", {"to_rung": value, "reason": value}),
            ("/workflows/fuzz/stop", {"reason": value}),
            ("/workflows/fuzz/resume", {"reason": value}),
            ("/workflows/fuzz/drills", {"batch": value}),
            ("/workflows/fuzz/drift/check", {value: value}),
            (
                "/workflows/fuzz/settings",
                {
                    "form": "breaker",
                    "window_runs": value,
                    "failure_percent": value,
                    "drift_trips": value,
                    "eval_max_age_days": value,
                },
            ),
        ):
            seen.append((f"POST {path} {value[:30]!r}", browser.post(path, form)))
        filters = {
            name: value
            for name in (
                "q",
                "workflow",
                "rung",
                "status",
                "action",
                "decider",
                "since",
                "until",
                "failure",
                "outcome",
                "after",
                "before",
            )
        }
        seen.append((f"history {value[:30]!r}", browser.get("/history/", filters)))
        for kind in ("runs", value):
            seen.append(
                (
                    f"export {kind[:20]!r} {value[:30]!r}",
                    browser.get("/history/export", {**filters, "kind": kind, "format": value}),
                )
            )
        seen.append(
            (f"my decisions {value[:30]!r}", browser.get("/my-decisions/", {"after": value}))
        )
        seen.append((f"queue new {value[:30]!r}", browser.get("/queue/new", {"since": value})))
        for path in (
            f"/runs/{segment}/replay.json",
            f"/workflows/fuzz/drills/{segment}/",
            f"/workflows/{segment}/dossier",
            f"/workflows/{segment}/dossier.pdf",
            f"/promotions/{segment}/dossier",
        ):
            seen.append((f"GET {path[:60]}", browser.get(path)))
    seen.append(("replay.json", browser.get(f"/runs/{run_id}/replay.json")))
    assert not _problems(seen)


def _api_requests(agent, run_id: str, value: str):
    segment = quote(value, safe="")
    yield f"GET runs/{value[:30]!r}", agent.get(f"/api/v1/runs/{segment}")
    yield f"GET replay {value[:30]!r}", agent.get(f"/api/v1/runs/{segment}/replay")
    yield f"GET workflows/{value[:30]!r}", agent.get(f"/api/v1/workflows/{segment}")
    yield (
        f"GET ?wait={value[:30]!r}",
        agent.get(f"/api/v1/runs/{run_id}?" + urlencode({"wait": value})),
    )
    bodies = {
        "/runs": {
            "workflow": value,
            "idempotency_key": value,
            "input": {value: value},
            "proposal": {"action": value, "params": {"amount": value}, "flags": [value]},
        },
        "/runs#fuzz": {
            "workflow": "fuzz",
            "idempotency_key": value or "k",
            "input": value,
            "tool_calls": [{"name": value or "t", "arguments": value}],
            "proposal": {
                "action": "refund.issue",
                "params": {"order_id": value, "amount": value},
                "summary": value,
                "flags": [value],
                "alternatives": [{"action": value or "a", "params": {"amount": value}}],
            },
        },
        f"/runs/{run_id}/events": {"type": value, "text": value},
        f"/runs/{run_id}/result": {"status": value, "error": value},
        f"/runs/{run_id}/outcome": {"label": value, "source": value, "note": value},
        "/workflows/fuzz/metrics": {"metric": value, "value": value, "at": value},
        f"/runs/{segment}/claim": {},
    }
    for path, body in bodies.items():
        # NUL inside a JSON string is refused by the strict parser; send the rest as is.
        yield (
            f"POST {path[:40]} {value[:30]!r}",
            agent.post(
                "/api/v1" + path.split("#")[0],
                data=json.dumps(body),
                content_type="application/json",
            ),
        )


def test_hostile_values_at_every_api_endpoint_get_a_json_4xx_never_a_500(world):
    agent, run_id = world["agent"], world["run_id"]
    seen = []
    for value in HOSTILE:
        seen.extend(_api_requests(agent, run_id, value))
    for query in RAW_QUERIES:
        seen.append((f"?{query[:40]}", agent.get(f"/api/v1/runs/{run_id}?{query}")))
    assert not _problems(seen)
    assert not _api_not_json(seen)


@pytest.mark.parametrize(
    "header",
    [
        "Bearer \x00",
        "Bearer",
        "Bearer ",
        "Basic dXNlcjpwdw==",
        "Bearer " + "x" * 10_000,
        "bearer  a b c",
        "Bearer lat_\u202e",
        "Bearer 🙂",
    ],
)
def test_malformed_authorization_headers_get_a_json_401(world, header):
    resp = Client(raise_request_exception=False).get(
        "/api/v1/workflows/fuzz", headers={"Authorization": header}
    )
    assert resp.status_code == 401
    assert resp.json()["error"]["code"] in ("unauthorized", "invalid_token")


def test_nul_in_a_query_parameter_is_a_400_naming_it(world):
    resp = world["browser"].get("/?workflow=%00")
    assert resp.status_code == 400
    assert "query parameter 'workflow'" in resp.content.decode()


def test_nul_in_a_path_segment_is_a_400_on_pages_and_a_json_400_on_the_api(world):
    page = world["browser"].get("/workflows/%00/roles/")
    assert page.status_code == 400 and b"path" in page.content
    api = world["agent"].get("/api/v1/workflows/%00")
    assert api.status_code == 400
    assert api.json()["error"] == {
        "code": "invalid_characters",
        "message": "path: may not contain NUL (\\x00) characters",
        "details": {"field": "path"},
    }


def test_nul_in_a_form_field_is_a_400_naming_it_and_changes_nothing(world):
    resp = world["browser"].post(
        f"/runs/{world['run_id']}/decide", {"verdict": "approve", "reason": f"ok{NUL}"}
    )
    assert resp.status_code == 400
    assert "form field 'reason'" in resp.content.decode()
    run = world["agent"].get(f"/api/v1/runs/{world['run_id']}").json()
    assert run["status"] == "pending_review"


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [("delete", "/api/v1/runs", "POST"), ("put", "/api/v1/workflows/fuzz", "GET")],
)
def test_a_wrong_method_on_the_api_is_a_json_405(world, method, path, allowed):
    resp = getattr(world["agent"], method)(path)
    assert resp.status_code == 405
    assert resp["Allow"] == allowed
    assert resp.json()["error"]["code"] == "method_not_allowed"


def test_an_unexpected_error_under_the_api_is_a_json_500(world, monkeypatch):
    from traces import api

    def boom(**kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr(api, "run_replay_for_agent", boom)
    resp = world["agent"].get(f"/api/v1/runs/{world['run_id']}/replay")
    assert resp.status_code == 500
    assert resp.json() == {"error": {"code": "server_error", "message": "internal server error"}}


def test_a_form_body_on_the_api_is_a_json_400(world):
    resp = world["agent"].post(
        "/api/v1/runs", data="workflow=fuzz", content_type="application/x-www-form-urlencoded"
    )
    assert resp.status_code == 400
    assert resp.json()["error"]["code"] == "invalid_json"


@pytest.mark.parametrize("cookie", ["sessionid", "csrftoken"])
def test_a_cookie_holding_a_nul_is_ignored_not_a_500(world, cookie):
    client = Client(raise_request_exception=False)
    client.cookies[cookie] = f"abcdefghij{NUL}klmnop"
    page = client.get("/")
    assert page.status_code == 302 and page["Location"].startswith("/accounts/login/")
    login = client.get("/accounts/login/")
    assert login.status_code == 200


@pytest.mark.parametrize(
    "at", ["9999-12-31T23:59:59-23:59", "0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00"]
)
def test_a_metric_time_the_database_cannot_keep_is_a_422_naming_it(world, at):
    from traces.models import MetricPoint

    resp = world["agent"].post(
        "/api/v1/workflows/fuzz/metrics",
        data=json.dumps({"metric": "csat", "value": 4, "at": at}),
        content_type="application/json",
    )
    assert resp.status_code == 422
    assert (
        ".at: Value error, must fall between the years 2 and 9998 in UTC"
        in (resp.json()["error"]["message"])
    )
    assert not MetricPoint.objects.exists()


def test_a_metric_time_with_an_offset_is_stored_in_utc(world):
    from traces.models import MetricPoint

    resp = world["agent"].post(
        "/api/v1/workflows/fuzz/metrics",
        data=json.dumps({"metric": "csat", "value": 4, "at": "2026-03-01T01:30:00+14:00"}),
        content_type="application/json",
    )
    assert resp.status_code == 201
    assert MetricPoint.objects.get().at.isoformat() == "2026-02-28T11:30:00+00:00"
