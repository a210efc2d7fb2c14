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


# -- SQL-looking and oversized values in every filter and form ------------------------------

SQL = [
    "' OR 1=1 --",
    "1; DROP TABLE traces_run",
    "%' UNION SELECT username, password FROM auth_user --",
    "1' AND pg_sleep(5) IS NULL --",
    '") OR ("1"="1',
    "fuzz'--",
]
# 100 kB: far over every column and every cap the views put on what they keep.
BIG = ("' OR 1=1 -- " * 10_000)[:100_000]
SQL_AND_BIG = [*SQL, BIG]
HISTORY_FILTERS = (
    "q", "workflow", "rung", "status", "action", "decider", "since", "until", "failure",
    "outcome", "after", "before",
)  # fmt: skip


@pytest.fixture
def sql_world(world):
    """`world` plus a compliance officer, an L0 workflow with an open promotion request,
    a decided run (for My decisions, history and exports) and a backtest to page."""
    from approvals.services import promotion_request
    from ladder.models import ActionType

    wf = world["wf"]
    owner = UserFactory(username="fuzzer")
    officer = UserFactory(username="fuzz-compliance")
    role_grant(workflow=wf, user=officer, role="compliance", by=None)
    l0 = WorkflowFactory(slug="fuzz-l0", rung=0, owner=owner)
    ActionType.objects.create(workflow=l0, name="reply.send")
    role_grant(workflow=l0, user=owner, role="owner", by=None)
    role_grant(workflow=l0, user=officer, role="compliance", by=None)
    promotion = promotion_request(workflow=l0, by=owner, note="")
    compliance = Client(raise_request_exception=False)
    compliance.force_login(officer)
    return {**world, "compliance": compliance, "promotion": promotion.pk}


def _requests(w, value: str):
    """(label, method, client, path, data) for every page filter and form, `value` in every
    field it has (and a few fields it does not)."""
    from django.core.files.uploadedfile import SimpleUploadedFile

    from tests.traces.test_policy_gateway import envelope

    b, c, run, promo = w["browser"], w["compliance"], w["run_id"], w["promotion"]
    for path, names in (
        ("/", ("workflow", "queue", "action", "after")),
        ("/queue/", ("workflow", "queue", "action", "after")),
        ("/queue/new", ("since", "workflow", "queue", "action")),
        ("/my-decisions/", ("after",)),
        ("/audit/", ("after",)),
        ("/history/", HISTORY_FILTERS),
        ("/workflows/", ("q", "page", "workflow")),
        ("/workflows/fuzz/", ("version", "from", "to")),
        ("/workflows/fuzz/policy/", ("from", "to", "version")),
        ("/workflows/fuzz/policy.json", ("version",)),
        ("/workflows/fuzz/policy/edit", ("based_on", "version")),
        ("/workflows/fuzz/settings", ("form",)),
        ("/workflows/fuzz/evals/", ("page",)),
        ("/workflows/fuzz/drills", ("page",)),
        ("/workflows/fuzz/backtests/", ("page",)),
        ("/workflows/fuzz/dossier", ("version",)),
        ("/promotions/", ("status", "page")),
        (f"/promotions/{promo}/", ("page",)),
        (f"/promotions/{promo}/dossier", ("page",)),
        (f"/runs/{run}/", ("workflow", "queue", "action", "after")),
        (f"/runs/{run}/replay", ("step",)),
        (f"/audit/{run}/", ("after",)),
    ):
        for who, client in (("owner", b), ("compliance", c)):
            yield f"GET {path} as {who}", "get", client, path, dict.fromkeys(names, value)
    filters = dict.fromkeys(HISTORY_FILTERS, value)
    for kind in ("runs", "events", "reviews", value):
        for fmt in ("csv", "jsonl", value):
            data = {**filters, "kind": kind, "format": fmt}
            yield f"export {kind[:10]}/{fmt[:10]}", "get", c, "/history/export", data
            # One filter at a time too: with every filter bad the export stops at the first.
            data = {"q": value, "kind": kind, "format": fmt}
            yield f"export q {kind[:10]}/{fmt[:10]}", "get", c, "/history/export", data
    for label, client, path, data in (
        ("decide", b, f"/runs/{run}/decide", {
            "verdict": "reject", "reason": value, "seen_version": value, "seen_hash": value}),
        ("decide approve", b, f"/runs/{run}/decide", {
            "verdict": "approve", "param__amount": value, "param__order_id": value}),
        ("eval case", b, f"/runs/{run}/eval-case", {
            "expected_action": value, "expected_params": value, "note": value}),
        ("eval case json", b, f"/runs/{run}/eval-case", {
            "expected_action": "refund.issue",
            "expected_params": json.dumps({"order_id": value, "amount": 3}), "note": value}),
        ("roles", b, "/workflows/fuzz/roles/", {"username": value, "role": value, "action": value}),
        ("roles grant", b, "/workflows/fuzz/roles/", {
            "username": value, "role": "reviewer", "action": "grant"}),
        ("recompute", b, "/workflows/fuzz/gates/recompute", {value[:50]: value}),
        ("demote", b, "/workflows/fuzz/demote", {"to_rung": value, "reason": value}),
        ("demote to L2", b, "/workflows/fuzz/demote", {"to_rung": "2", "reason": value}),
        ("drift check", b, "/workflows/fuzz/drift/check", {value[:50]: value}),
        ("promotion request", b, "/workflows/fuzz-l0/promotion", {"note": value, "to_rung": value}),
        ("promotion decide", c, f"/promotions/{promo}/decide", {"verdict": value, "reason": value}),
        ("promotion decline", c, f"/promotions/{promo}/decide", {
            "verdict": "decline", "reason": value}),
        ("promotion withdraw", b, f"/promotions/{promo}/withdraw", {"reason": value}),
        ("stop", b, "/workflows/fuzz/stop", {"reason": value}),
        ("resume", b, "/workflows/fuzz/resume", {"reason": value}),
        ("policy preview", b, "/workflows/fuzz/policy/edit", {
            "document": value, "note": value, "based_on": value, "intent": "preview"}),
        ("policy save", b, "/workflows/fuzz/policy/edit", {
            "document": value, "note": value, "based_on": value, "intent": value}),
        ("policy save, good document", b, "/workflows/fuzz/policy/edit", {
            "document": json.dumps(envelope()), "note": value, "based_on": "0", "intent": "save"}),
        ("policy save, text in the document", b, "/workflows/fuzz/policy/edit", {
            "document": json.dumps({"rules": [{"id": value, "kind": "actions",
                                               "allow": [value]}]}),
            "note": "n", "based_on": "0", "intent": "save"}),
        ("deadline", b, "/workflows/fuzz/settings", {
            "amount": value, "unit": value, "action": value}),
        ("probes", b, "/workflows/fuzz/settings", {"form": "probes", "percent": value}),
        ("breaker", b, "/workflows/fuzz/settings", {
            "form": "breaker", "window_runs": value, "failure_percent": value,
            "drift_trips": value, "eval_max_age_days": value}),
        ("settings form", b, "/workflows/fuzz/settings/", {"form": value}),
        ("evals import text", b, "/workflows/fuzz/evals/", {"text": value}),
        ("evals import file", b, "/workflows/fuzz/evals/", {
            "file": SimpleUploadedFile("cases.jsonl", value.encode(), "application/jsonl")}),
        ("audit", b, f"/audit/{run}/", {"label": value, "note": value}),
        ("drills", b, "/workflows/fuzz/drills", {"batch": value}),
        ("backtest", c, "/workflows/fuzz/backtests/", {
            "policy": value, "document": value, "since": value, "until": value}),
        ("backtest draft", c, "/workflows/fuzz/backtests/", {
            "policy": "draft", "document": value, "since": value, "until": value}),
        ("password", b, "/accounts/password_change/", {
            "old_password": value, "new_password1": value, "new_password2": value}),
    ):  # fmt: skip
        yield f"POST {label}", "post", client, path, data
    yield (
        "POST login",
        "post",
        Client(raise_request_exception=False),
        "/accounts/login/",
        {"username": value, "password": value},
    )


def _text_columns():
    """Every text-like column of every model: (model, field name)."""
    from django.apps import apps
    from django.db import models

    for model in apps.get_models():
        if not model._meta.managed or model._meta.proxy:
            continue
        for f in model._meta.concrete_fields:
            if isinstance(f, (models.CharField, models.TextField, models.JSONField)):
                yield model, f.name


def _long_values(limit: int) -> list[str]:
    """Columns holding a value of at least `limit` characters."""
    from django.db.models import TextField
    from django.db.models.functions import Cast, Length

    found = []
    for model, name in _text_columns():
        rows = model._default_manager.annotate(_n=Length(Cast(name, TextField()))).filter(
            _n__gte=limit
        )
        if rows.exists():
            found.append(f"{model._meta.label}.{name}")
    return found


def test_sql_looking_and_oversized_values_in_every_filter_and_form(sql_world):
    """Every page filter and form of the reviewer, owner and compliance pages gets SQL-looking
    strings and a 100 kB value in every field: a 200 or a 4xx, never a 500; the tables are
    all there afterwards, the people and their roles unchanged, no user made from a field,
    and nothing oversized stored anywhere."""
    from django.contrib.auth.models import User
    from guardian.models import UserObjectPermission

    from ladder.models import PolicyVersion, RungChange
    from traces.models import Run

    assert not _long_values(50_000)
    people = sorted(User.objects.values_list("username", flat=True))
    grants = UserObjectPermission.objects.count()
    runs = Run.objects.count()
    seen, statuses = [], set()
    for value in SQL_AND_BIG:
        for label, method, client, path, data in _requests(sql_world, value):
            response = getattr(client, method)(path, data)
            if response.streaming:  # an export reads the database as it streams
                try:
                    b"".join(response.streaming_content)
                except Exception as exc:  # a failure mid-stream is the 500
                    response.status_code = 500
                    label += f" ({exc!r})"[:200]
            statuses.add(response.status_code)
            seen.append((f"{label} {value[:30]!r}", response))
    assert not _problems(seen)
    assert len(seen) > 500
    # Mostly refusals, but the forms that keep free text kept it (as text, capped).
    assert {200, 302, 400}.issubset(statuses)
    # The SQL was data: every table is still there and answers, nothing was widened.
    assert Run.objects.count() == runs
    assert sorted(User.objects.values_list("username", flat=True)) == people
    assert UserObjectPermission.objects.count() == grants
    assert not _long_values(50_000)
    # ...and where a form keeps free text, the SQL-looking text is kept as typed.
    assert RungChange.objects.filter(workflow__slug="fuzz", reason=SQL[0]).exists()
    assert PolicyVersion.objects.filter(workflow__slug="fuzz", note=SQL[0]).exists()
