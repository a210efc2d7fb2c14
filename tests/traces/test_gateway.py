import json
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connection, connections
from django.test import Client

from traces.models import Run, RunStatus, TraceEvent

pytestmark = pytest.mark.django_db


def body(wf, key="k-1", **extra):
    data = {
        "workflow": wf.slug,
        "idempotency_key": key,
        "input": {"message": "Refund my order A-1 please"},
        "tool_calls": [{"name": "orders.lookup", "arguments": {"id": "A-1"}, "result": {"t": 1}}],
        "output": {"text": "ok"},
        "proposal": {
            "action": "refund.issue",
            "params": {"order_id": "A-1", "amount": 12.5, "currency": "EUR"},
        },
    }
    data.update(extra)
    return data


def test_an_l3_run_waits_for_review_with_its_whole_trace(make_workflow, agent):
    wf = make_workflow(rung=3)
    resp = agent(wf).post("/runs", body(wf))
    assert resp.status_code == 201, resp.content
    data = resp.json()
    assert data["status"] == "pending_review"
    assert data["rung"] == 3
    assert data["workflow"] == wf.slug
    assert data["trace"]["events"] == 4
    run = Run.objects.get(pk=data["id"])
    assert run.queue == "l3"
    assert str(run.value) == "12.5000" and run.currency == "EUR"
    types = list(run.events.order_by("seq").values_list("type", flat=True))
    assert types == ["input", "tool_call", "output", "proposal"]
    assert run.trace_head == data["trace"]["head"] == run.events.get(seq=4).hash


def test_the_submit_answer_is_exactly_the_documented_schema(make_workflow, agent):
    from traces.api import RunOut

    wf = make_workflow(rung=3)
    a = agent(wf)
    params = {"order_id": "A-1", "amount": 5, "to": "ada@example.com"}
    proposal = {"action": "refund.issue", "params": params}
    first = a.post("/runs", body(wf, key="once", proposal=proposal))
    again = a.post("/runs", body(wf, key="once", proposal=proposal))
    assert (first.status_code, again.status_code) == (201, 200)
    for resp in (first, again):
        assert resp["Content-Type"] == "application/json; charset=utf-8"
        data = resp.json()
        assert set(data) == set(RunOut.model_fields)
        parsed = RunOut.model_validate(data)
        assert parsed.model_dump(mode="json")["created_at"][:19] == data["created_at"][:19]
        assert data["trace"] == {"events": 4, "head": Run.objects.get().trace_head}
        assert data["pseudonyms"] == {
            k: "ada@example.com" for k in data["pseudonyms"] if k.startswith("<EMAIL:")
        }
        assert len(data["pseudonyms"]) == 1
    assert first.json()["id"] == again.json()["id"]


@pytest.mark.parametrize(
    ("rung", "queue"), [(1, "l1"), (2, "l2"), (3, "l3"), (4, "escalated"), (5, "escalated")]
)
def test_each_reviewed_rung_lands_in_its_queue(make_workflow, agent, rung, queue):
    wf = make_workflow(rung=rung)
    data = agent(wf).post("/runs", body(wf)).json()
    run = Run.objects.get(pk=data["id"])
    assert (run.status, run.queue) == ("pending_review", queue)


def test_l4_escalation_records_the_policy_reason_in_the_trace(make_workflow, agent):
    wf = make_workflow(rung=4)
    data = agent(wf).post("/runs", body(wf)).json()
    event = TraceEvent.objects.get(run_id=data["id"], type="policy_decision")
    assert event.payload["decision"] == "escalate"
    assert "policy" in event.payload["reason"]


def test_l0_refuses_a_proposal_with_409_and_stores_nothing(make_workflow, agent):
    wf = make_workflow(rung=0)
    resp = agent(wf).post("/runs", body(wf))
    assert resp.status_code == 409
    assert resp.json()["error"]["code"] == "rung_forbids_action"
    assert Run.objects.count() == 0 and TraceEvent.objects.count() == 0


def test_l0_records_a_run_without_a_proposal(make_workflow, agent):
    wf = make_workflow(rung=0)
    data = agent(wf).post("/runs", body(wf, proposal=None)).json()
    assert data["status"] == "recorded"
    assert Run.objects.get(pk=data["id"]).events.count() == 3


def test_the_same_idempotency_key_returns_the_same_run_and_stores_nothing(make_workflow, agent):
    wf = make_workflow()
    a = agent(wf)
    first = a.post("/runs", body(wf))
    again = a.post("/runs", body(wf))
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json()["id"] == again.json()["id"]
    assert Run.objects.count() == 1 and TraceEvent.objects.count() == 4


def test_a_reused_key_with_a_different_body_is_a_conflict(make_workflow, agent):
    wf = make_workflow()
    a = agent(wf)
    a.post("/runs", body(wf))
    resp = a.post("/runs", body(wf, input={"message": "something else"}))
    assert resp.status_code == 409
    assert resp.json()["error"]["code"] == "idempotency_key_reused"
    assert Run.objects.count() == 1


def test_the_same_key_on_another_workflow_is_another_run(make_workflow, agent):
    wf1, wf2 = make_workflow(), make_workflow()
    a = agent(wf1, wf2)
    r1 = a.post("/runs", body(wf1)).json()
    r2 = a.post("/runs", body(wf2)).json()
    assert r1["id"] != r2["id"]


@pytest.mark.django_db(transaction=True)
def test_twenty_five_concurrent_duplicates_make_exactly_one_run(make_workflow, agent):
    assert connection.vendor == "postgresql"
    wf = make_workflow()
    token = agent(wf).token
    payload = json.dumps(body(wf, key="race"))
    n = 25
    barrier = threading.Barrier(n)

    def submit(_):
        client = Client()
        barrier.wait()
        try:
            resp = client.post(
                "/api/v1/runs",
                data=payload,
                content_type="application/json",
                headers={"Authorization": f"Bearer {token}"},
            )
            return resp.status_code, resp.json().get("id")
        finally:
            connections.close_all()

    with ThreadPoolExecutor(max_workers=n) as pool:
        results = list(pool.map(submit, range(n)))
    statuses = sorted(s for s, _ in results)
    assert statuses.count(201) == 1 and statuses.count(200) == n - 1, statuses
    assert len({rid for _, rid in results}) == 1
    assert Run.objects.count() == 1
    assert TraceEvent.objects.count() == 4


# -- bad input ---------------------------------------------------------------------------

BAD_BODIES = [
    ("malformed json", b'{"workflow": ', 400, "invalid_json"),
    ("not an object", b"[1, 2, 3]", 422, "invalid_request"),
    ("empty body", b"", 422, "invalid_request"),
    ("NaN", b'{"workflow": "x", "idempotency_key": "k", "input": NaN}', 400, "invalid_json"),
    (
        "overflowing number",
        b'{"workflow": "x", "idempotency_key": "k", "input": 1e400}',
        400,
        "invalid_json",
    ),
    (
        "invalid utf-8",
        b'{"workflow": "x", "idempotency_key": "k", "input": "\xff\xfe"}',
        400,
        "invalid_unicode",
    ),
    (
        "lone surrogate",
        b'{"workflow": "x", "idempotency_key": "k", "input": "\\ud800"}',
        400,
        "invalid_unicode",
    ),
    (
        "NUL character",
        b'{"workflow": "x", "idempotency_key": "k", "input": "a\\u0000b"}',
        400,
        "invalid_unicode",
    ),
    (
        "too deep",
        b'{"workflow": "x", "idempotency_key": "k", "input": ' + b"[" * 70 + b"]" * 70 + b"}",
        400,
        "too_deep",
    ),
    ("pathologically deep", b"[" * 200_000 + b"]" * 200_000, 400, "too_deep"),
]


@pytest.mark.parametrize(
    ("name", "raw", "status", "code"), BAD_BODIES, ids=[b[0] for b in BAD_BODIES]
)
def test_bad_bodies_get_a_clear_error_and_store_nothing(
    make_workflow, agent, name, raw, status, code
):
    wf = make_workflow()
    resp = agent(wf).post("/runs", raw=raw.replace(b'"x"', f'"{wf.slug}"'.encode()))
    assert resp.status_code == status, resp.content
    err = resp.json()["error"]
    assert err["code"] == code and err["message"]
    assert Run.objects.count() == 0


def test_nesting_at_the_limit_is_accepted(make_workflow, agent):
    wf = make_workflow()
    nested: object = "leaf"
    for _ in range(62):  # the body object and "input" add two levels: 64 in all
        nested = [nested]
    resp = agent(wf).post("/runs", body(wf, input=nested))
    assert resp.status_code == 201, resp.content


def test_a_body_over_one_mebibyte_is_refused_with_413(make_workflow, agent):
    wf = make_workflow()
    big = body(wf, input={"blob": "x" * (1024 * 1024)})
    resp = agent(wf).post("/runs", big)
    assert resp.status_code == 413
    assert resp.json()["error"]["code"] == "payload_too_large"
    assert Run.objects.count() == 0


WRONG_TYPES = [
    ("idempotency_key", 42),
    ("idempotency_key", ""),
    ("workflow", ["a"]),
    ("tool_calls", {"name": "x"}),
    ("proposal", "refund please"),
    ("proposal", {"action": "refund.issue", "params": [1, 2]}),
    ("proposal", {"action": "refund.issue", "params": {"order_id": "A-1", "amount": "twelve"}}),
    ("proposal", {"action": "refund.issue", "params": {"amount": 12}}),
    ("proposal", {"action": "rm.rf", "params": {}}),
    # JSON has no NaN or Infinity, but a string may say so and a float field would take it
    ("proposal", {"action": "refund.issue", "alternatives": [{"action": "x", "score": "NaN"}]}),
    ("proposal", {"action": "refund.issue", "alternatives": [{"action": "x", "score": "-inf"}]}),
    ("unexpected", 1),
]


@pytest.mark.parametrize(("field", "value"), WRONG_TYPES)
def test_wrong_types_get_a_422_naming_the_problem(make_workflow, agent, field, value):
    wf = make_workflow()
    resp = agent(wf).post("/runs", body(wf, **{field: value}))
    assert resp.status_code == 422, resp.content
    assert resp.json()["error"]["message"]
    assert Run.objects.count() == 0


def test_an_unknown_workflow_is_404(make_workflow, agent):
    wf = make_workflow()
    resp = agent(wf).post("/runs", {**body(wf), "workflow": "no-such-flow"})
    assert resp.status_code == 404
    assert resp.json()["error"]["code"] == "unknown_workflow"


def test_a_token_for_another_workflow_is_refused(make_workflow, agent):
    mine, theirs = make_workflow(), make_workflow()
    resp = agent(mine).post("/runs", body(theirs))
    assert resp.status_code == 403
    assert resp.json()["error"]["code"] == "workflow_not_allowed"
    assert Run.objects.count() == 0


@pytest.mark.parametrize("header", [None, "Bearer lat_nope", "Basic abc", "Bearer "])
def test_requests_without_a_valid_token_get_401(client, make_workflow, header):
    wf = make_workflow()
    headers = {"Authorization": header} if header else {}
    resp = client.post(
        "/api/v1/runs", data=json.dumps(body(wf)), content_type="application/json", headers=headers
    )
    assert resp.status_code == 401
    assert resp.json()["error"]["code"] in {"unauthorized", "invalid_token"}


def test_a_revoked_token_is_refused(make_workflow, agent):
    from django.utils import timezone

    from traces.models import AgentToken

    wf = make_workflow()
    a = agent(wf)
    AgentToken.objects.update(revoked_at=timezone.now())
    assert a.post("/runs", body(wf)).status_code == 401


def test_runs_of_other_workflows_are_not_found(make_workflow, agent):
    mine, theirs = make_workflow(), make_workflow()
    other = agent(theirs).post("/runs", body(theirs)).json()
    a = agent(mine)
    for path in ["", "/replay"]:
        assert a.get(f"/runs/{other['id']}{path}").status_code == 404
    assert (
        a.post(f"/runs/{other['id']}/outcome", {"label": "wrong", "source": "x"}).status_code == 404
    )
    assert a.get("/runs/not-a-uuid").status_code == 404


def test_unknown_api_paths_answer_json_404(agent, make_workflow):
    a = agent(make_workflow())
    strict = Client(enforce_csrf_checks=True)  # as real agents: no CSRF cookie or token
    posted = strict.post(
        "/api/v1/nothing-here", data="{}", content_type="application/json", headers=a.headers
    )
    for resp in (a.get("/nothing-here"), posted):
        assert resp.status_code == 404
        assert resp.json()["error"]["code"] == "not_found"


def test_the_openapi_document_is_served(client):
    doc = client.get("/api/v1/openapi.json").json()
    assert "/api/v1/runs" in doc["paths"]
    assert "/api/v1/runs/{run_id}/replay" in doc["paths"]


# -- the rest of the contract ---------------------------------------------------------------


def test_agents_append_context_events_and_the_chain_grows(make_workflow, agent):
    wf = make_workflow()
    a = agent(wf)
    run = a.post("/runs", body(wf)).json()
    resp = a.post(
        f"/runs/{run['id']}/events",
        {"type": "tool_call", "name": "crm.get", "arguments": {"id": 1}, "result": 2},
    )
    assert resp.status_code == 201
    assert resp.json()["trace"]["events"] == 5
    stored = Run.objects.get(pk=run["id"])
    assert stored.version == 2  # a waiting run's older views are now stale
    assert stored.events.get(seq=5).payload["name"] == "crm.get"


def test_agents_cannot_forge_evidence_events(make_workflow, agent):
    wf = make_workflow()
    a = agent(wf)
    run = a.post("/runs", body(wf)).json()
    resp = a.post(f"/runs/{run['id']}/events", {"type": "review_decision", "verdict": "approved"})
    assert resp.status_code == 422
    assert resp.json()["error"]["code"] == "event_type_not_allowed"
    assert Run.objects.get(pk=run["id"]).trace_length == 4


@pytest.mark.parametrize("event", [{"type": "input"}, {"type": "input", "input": None}])
def test_an_input_event_without_input_is_refused_and_the_run_keeps_its_input(
    make_workflow, agent, event
):
    # It replaced the run's input with nothing: the replay then called the run incomplete
    # ("missing input") and the review screen showed no input.
    wf = make_workflow()
    a = agent(wf)
    run = a.post("/runs", body(wf)).json()
    resp = a.post(f"/runs/{run['id']}/events", {"events": [{"type": "output", "output": 1}, event]})
    assert resp.status_code == 422
    assert resp.json()["error"] == {
        "code": "invalid_event",
        "message": "an input event carries the input: 'input' is required and may not be null",
        "details": {"field": "input"},
    }
    assert Run.objects.get(pk=run["id"]).trace_length == 4  # nothing of the batch stored
    replay = a.get(f"/runs/{run['id']}/replay").json()
    assert replay["complete"] and replay["run"]["input"] is not None


def test_a_result_before_approval_is_refused(make_workflow, agent):
    wf = make_workflow()
    a = agent(wf)
    run = a.post("/runs", body(wf)).json()
    resp = a.post(f"/runs/{run['id']}/result", {"status": "succeeded"})
    assert resp.status_code == 409
    assert resp.json()["error"]["code"] == "not_approved"


def test_an_approved_agent_action_reports_its_result_exactly_once(make_workflow, agent):
    wf = make_workflow()
    a = agent(wf)
    run = a.post("/runs", body(wf)).json()
    Run.objects.filter(pk=run["id"]).update(status=RunStatus.APPROVED)
    ok = a.post(f"/runs/{run['id']}/result", {"status": "succeeded", "output": {"ref": "R1"}})
    assert ok.status_code == 200 and ok.json()["status"] == "executed"
    again = a.post(f"/runs/{run['id']}/result", {"status": "succeeded", "output": {"ref": "R1"}})
    assert again.status_code == 200
    contrary = a.post(f"/runs/{run['id']}/result", {"status": "failed", "error": "x"})
    assert contrary.status_code == 409
    assert TraceEvent.objects.filter(run_id=run["id"], type="execution").count() == 1


def test_outcome_labels_are_recorded_on_the_run_and_in_the_trace(make_workflow, agent):
    wf = make_workflow()
    a = agent(wf)
    run = a.post("/runs", body(wf)).json()
    resp = a.post(f"/runs/{run['id']}/outcome", {"label": "wrong", "source": "audit"})
    assert resp.status_code == 200 and resp.json()["outcome"] == "wrong"
    assert TraceEvent.objects.get(run_id=run["id"], type="outcome").payload["source"] == "audit"
    bad = a.post(f"/runs/{run['id']}/outcome", {"label": "meh", "source": "audit"})
    assert bad.status_code == 422


def test_get_run_long_polls_until_a_decision(make_workflow, agent):
    wf = make_workflow()
    a = agent(wf)
    run = a.post("/runs", body(wf)).json()
    resp = a.get(f"/runs/{run['id']}?wait=0.3")
    assert resp.status_code == 200 and resp.json()["status"] == "pending_review"
    for wait in ("-1", "inf", "nan"):
        assert a.get(f"/runs/{run['id']}?wait={wait}").status_code == 422


def test_workflow_endpoint_and_metrics(make_workflow, agent):
    wf = make_workflow(rung=2)
    a = agent(wf)
    data = a.get(f"/workflows/{wf.slug}").json()
    assert data["rung"] == 2 and data["action_types"][0]["name"] == "refund.issue"
    resp = a.post(
        f"/workflows/{wf.slug}/metrics",
        {"points": [{"metric": "csat", "value": 4.5, "at": "2026-11-01T00:00:00Z"}]},
    )
    assert resp.status_code == 201 and resp.json() == {"stored": 1}
    assert (
        a.post(
            f"/workflows/{wf.slug}/metrics", {"metric": "csat", "value": "high", "at": "x"}
        ).status_code
        == 422
    )
    other = make_workflow()
    assert a.get(f"/workflows/{other.slug}").status_code == 403
    assert a.get("/workflows/no-such-flow").status_code == 404


def test_exactly_one_claim_of_an_approved_agent_action_succeeds(make_workflow, agent):
    wf = make_workflow()
    a = agent(wf)
    run = a.post("/runs", body(wf)).json()
    assert a.post(f"/runs/{run['id']}/claim").json()["error"]["code"] == "not_approved"
    Run.objects.filter(pk=run["id"]).update(status=RunStatus.APPROVED)
    first = a.post(f"/runs/{run['id']}/claim")
    second = a.post(f"/runs/{run['id']}/claim")
    assert first.status_code == 200 and first.json()["status"] == "executing"
    assert second.status_code == 409 and second.json()["error"]["code"] == "already_claimed"
    done = a.post(f"/runs/{run['id']}/result", {"status": "succeeded"})
    assert done.json()["status"] == "executed"
    phases = [
        e.payload.get("phase")
        for e in TraceEvent.objects.filter(run_id=run["id"], type="execution").order_by("seq")
    ]
    assert phases == ["claimed", "finished"]


def test_the_portable_insert_path_stores_runs_and_refuses_duplicates(
    make_workflow, agent, monkeypatch
):
    # SQLite (make run) takes the ORM path; prove it on this database too.
    from django.db import connection

    monkeypatch.setattr(connection, "vendor", "sqlite-like")
    wf = make_workflow()
    a = agent(wf)
    first, again = a.post("/runs", body(wf)), a.post("/runs", body(wf))
    assert (first.status_code, again.status_code) == (201, 200)
    assert Run.objects.count() == 1 and TraceEvent.objects.count() == 4


def test_the_agent_gets_back_the_pseudonyms_of_its_proposal_and_nothing_raw_is_stored(
    make_workflow, agent
):
    wf = make_workflow()
    proposal = {
        "action": "refund.issue",
        "params": {"order_id": "A-1", "amount": 5, "notify": "ana.lopez@example.com"},
        "alternatives": [
            {
                "action": "refund.issue",
                "params": {"order_id": "A-1", "amount": 5, "call": "+49 1512 3456610"},
            }
        ],
        "artifact": {"text": "Card 4111 1111 1111 1111 refunded"},
    }
    data = (
        agent(wf)
        .post(
            "/runs",
            body(
                wf,
                input={"message": "Mail ana.lopez@example.com, from 203.0.113.9"},
                proposal=proposal,
            ),
        )
        .json()
    )
    back = {v: k for k, v in data["pseudonyms"].items()}
    assert set(back) == {"ana.lopez@example.com", "+49 1512 3456610", "4111 1111 1111 1111"}
    assert back["ana.lopez@example.com"].startswith("<EMAIL:")
    assert back["+49 1512 3456610"].startswith("<PHONE:")
    stored = Run.objects.get(pk=data["id"])
    rows = [e.document for e in stored.events.all()] + [str(stored.proposal)]
    assert not any("ana.lopez" in row or "3456610" in row for row in rows)
    assert not any("203.0.113.9" in row for row in rows)


def test_values_outside_the_proposal_are_not_echoed_back(make_workflow, agent):
    # The answer is not an oracle: what the input, tool calls and output carry never
    # comes back in a decision, so its pseudonyms are not handed out.
    wf = make_workflow()
    phones = [f"+49 1512 34566{n:02d}" for n in range(20)]
    resp = agent(wf).post(
        "/runs",
        body(
            wf,
            input={"phones": phones},
            tool_calls=[{"name": "crm.find", "arguments": {"q": "x"}, "result": phones}],
            output={"text": "; ".join(phones)},
        ),
    )
    assert resp.status_code == 201, resp.content
    assert resp.json()["pseudonyms"] == {}


def test_a_recorded_run_gets_no_pseudonyms_back(make_workflow, agent):
    wf = make_workflow(rung=0)
    proposal = {"action": "refund.issue", "params": {"to": "ana.lopez@example.com"}}
    resp = agent(wf).post("/runs", body(wf, input={"m": "+49 1512 3456610"}, proposal=None))
    assert resp.status_code == 201, resp.content
    assert resp.json()["status"] == "recorded"
    assert resp.json()["pseudonyms"] == {}
    # An L0 workflow refuses proposals outright, so nothing can be learnt that way either.
    assert agent(wf).post("/runs", body(wf, key="k-2", proposal=proposal)).status_code == 409


def test_awkward_text_is_stored_byte_for_byte_and_its_chain_verifies(make_workflow, agent):
    from traces.chain import link_hash

    awkward = (
        'quote " backslash \\ tab \t newline \n emoji 😀 ls \u2028 del \x7f c1 \x85 '
        "record separator \x1e é"
    )
    wf = make_workflow()
    data = body(wf, key="awkward", input={"text": awkward, awkward: [awkward]})
    data["tool_calls"] = [
        {"name": "t", "arguments": {"q": awkward}, "result": awkward} for _ in range(3)
    ]
    data["proposal"]["summary"] = awkward
    data["proposal"]["params"]["reason"] = awkward
    resp = agent(wf).post("/runs", data)
    assert resp.status_code == 201, resp.content
    run = Run.objects.get(pk=resp.json()["id"])
    assert run.proposal["params"]["reason"] == awkward  # the run row, via JSON too
    assert run.summary == " ".join(awkward.split())
    events = list(TraceEvent.objects.filter(run_id=resp.json()["id"]).order_by("seq"))
    assert [e.seq for e in events] == [1, 2, 3, 4, 5, 6]
    assert events[0].payload["input"]["text"] == awkward
    assert events[0].payload["input"][awkward] == [awkward]
    assert [e.payload["result"] for e in events[1:4]] == [awkward] * 3
    for e in events:
        assert e.hash == link_hash(e.prev_hash, e.document)
