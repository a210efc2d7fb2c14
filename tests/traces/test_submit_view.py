"""POST /api/v1/runs is served by traces.api.submit_run_endpoint rather than through
ninja's dispatch (the hot path). These tests hold the two to the same answers: every
request below goes to both, and status, content type and body must agree."""

import json

import pytest
from django.test import RequestFactory, override_settings
from django.urls import resolve

from tests.traces.test_gateway import BAD_BODIES, WRONG_TYPES, body
from traces.api import _ninja_view, submit_run_endpoint
from traces.models import Run, TraceEvent

pytestmark = pytest.mark.django_db

VOLATILE = {"id", "created_at", "deadline_at"}  # differ between two stored runs by nature


def _answer(view, raw, headers, method="POST", content_type="application/json"):
    request = RequestFactory().generic(
        method, "/api/v1/runs", data=raw, content_type=content_type, headers=headers
    )
    resp = view(request)
    is_json = resp.get("Content-Type", "").startswith("application/json")
    data = json.loads(resp.content) if is_json else resp.content
    if isinstance(data, dict):
        data = {k: v for k, v in data.items() if k not in VOLATILE}
        if isinstance(data.get("trace"), dict):
            data["trace"] = {**data["trace"], "head": "(a hash)"}
    return resp.status_code, resp.get("Content-Type"), data


def _both(raw, headers, **kwargs):
    fast = _answer(submit_run_endpoint, raw, headers, **kwargs)
    ninja = _answer(_ninja_view("submit_run"), raw, headers, **kwargs)
    return fast, ninja


def test_post_runs_is_routed_to_the_hot_path_and_other_paths_are_not():
    assert resolve("/api/v1/runs").func is submit_run_endpoint
    assert resolve("/api/v1/runs/0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b").func is not (
        submit_run_endpoint
    )


@pytest.mark.parametrize(
    ("name", "raw", "status", "code"), BAD_BODIES, ids=[b[0] for b in BAD_BODIES]
)
def test_bad_bodies_get_ninjas_answer(make_workflow, agent, name, raw, status, code):
    wf = make_workflow()
    headers = agent(wf).headers
    fast, ninja = _both(raw.replace(b'"x"', f'"{wf.slug}"'.encode()), headers)
    assert fast == ninja
    assert fast[0] == status and fast[2]["error"]["code"] == code
    assert Run.objects.count() == 0


@pytest.mark.parametrize(("field", "value"), WRONG_TYPES)
def test_wrong_types_get_ninjas_answer(make_workflow, agent, field, value):
    wf = make_workflow()
    fast, ninja = _both(json.dumps(body(wf, **{field: value})), agent(wf).headers)
    assert fast == ninja
    assert fast[0] == 422 and fast[2]["error"]["message"]
    assert Run.objects.count() == 0


@pytest.mark.parametrize("header", [None, "Bearer lat_nope", "Basic abc", "Bearer ", "bearer"])
def test_missing_or_bad_tokens_get_ninjas_answer(make_workflow, header):
    wf = make_workflow()
    fast, ninja = _both(json.dumps(body(wf)), {"Authorization": header} if header else {})
    assert fast == ninja
    assert fast[0] == 401
    assert Run.objects.count() == 0


def test_unknown_workflows_and_other_workflows_tokens_get_ninjas_answers(make_workflow, agent):
    mine, theirs = make_workflow(), make_workflow()
    headers = agent(mine).headers
    unknown = {**body(mine), "workflow": "no-such-flow"}
    fast, ninja = _both(json.dumps(unknown), headers)
    assert fast == ninja and fast[0] == 404
    fast, ninja = _both(json.dumps(body(theirs)), headers)
    assert fast == ninja and fast[0] == 403
    assert Run.objects.count() == 0


def test_a_body_over_the_limit_gets_ninjas_answer(make_workflow, agent):
    wf = make_workflow()
    raw = json.dumps(body(wf, input={"blob": "x" * (1024 * 1024)}))
    fast, ninja = _both(raw, agent(wf).headers)
    assert fast == ninja and fast[0] == 413
    assert Run.objects.count() == 0


@override_settings(DEBUG=True)
def test_in_debug_too_the_answers_agree(make_workflow, agent):
    wf = make_workflow()
    headers = agent(wf).headers
    for raw in (b"{", b"", b"[]", json.dumps(body(wf, idempotency_key=""))):
        fast, ninja = _both(raw, headers)
        assert fast == ninja


def test_a_good_run_and_its_duplicate_get_ninjas_answers(make_workflow, agent):
    wf = make_workflow(rung=3)
    headers = agent(wf).headers
    fast = _answer(submit_run_endpoint, json.dumps(body(wf, key="fast")), headers)
    ninja = _answer(_ninja_view("submit_run"), json.dumps(body(wf, key="ninja")), headers)
    assert fast == ninja and fast[0] == 201
    again = _answer(submit_run_endpoint, json.dumps(body(wf, key="ninja")), headers)
    assert again[0] == 200 and again[2] == ninja[2]
    assert Run.objects.count() == 2
    assert TraceEvent.objects.count() == 2 * fast[2]["trace"]["events"]


def test_other_methods_on_runs_are_ninjas(client, make_workflow, agent):
    wf = make_workflow()
    headers = agent(wf).headers
    for method in ("GET", "PUT", "DELETE", "PATCH"):
        fast, ninja = _both(b"", headers, method=method)
        assert fast == ninja
        assert fast[0] == 405
        assert client.generic(method, "/api/v1/runs", headers=headers).status_code == 405
