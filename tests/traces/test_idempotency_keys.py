"""Idempotency keys are stored redacted, and still map one raw key to one run (security
review, finding 10)."""

import re

import pytest

from traces.models import MetricPoint, Run

pytestmark = pytest.mark.django_db

PSEUDONYM = r"<EMAIL:[0-9a-f]{8}>"


def body(wf, key):
    return {
        "workflow": wf.slug,
        "idempotency_key": key,
        "input": {"message": "refund please"},
        "proposal": {"action": "refund.issue", "params": {"order_id": "A-1", "amount": 12.5}},
    }


def test_a_key_built_from_an_email_is_stored_without_it(make_workflow, agent):
    wf = make_workflow(rung=3)
    resp = agent(wf).post("/runs", body(wf, "refund for ana@example.com #1"))
    assert resp.status_code == 201
    stored = Run.objects.get(pk=resp.json()["id"]).idempotency_key
    assert re.fullmatch(f"refund for {PSEUDONYM} #1", stored), stored
    assert "ana" not in stored and "@" not in stored


def test_a_retry_with_the_same_raw_key_is_the_same_run(make_workflow, agent):
    wf = make_workflow(rung=3)
    a = agent(wf)
    first = a.post("/runs", body(wf, "refund-ana@example.com-1"))
    again = a.post("/runs", body(wf, "refund-ana@example.com-1"))
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json()["id"] == again.json()["id"]
    assert Run.objects.count() == 1


def test_keys_differing_only_in_the_email_are_two_runs(make_workflow, agent):
    wf = make_workflow(rung=3)
    a = agent(wf)
    ana = a.post("/runs", body(wf, "refund for ana@example.com"))
    bob = a.post("/runs", body(wf, "refund for bob@example.com"))
    assert (ana.status_code, bob.status_code) == (201, 201)
    assert ana.json()["id"] != bob.json()["id"]
    keys = set(Run.objects.values_list("idempotency_key", flat=True))
    assert len(keys) == 2 and all(re.fullmatch(f"refund for {PSEUDONYM}", k) for k in keys)


def test_a_reused_redacted_key_with_another_body_is_still_a_conflict(make_workflow, agent):
    wf = make_workflow(rung=3)
    a = agent(wf)
    assert a.post("/runs", body(wf, "k-ana@example.com")).status_code == 201
    other = {**body(wf, "k-ana@example.com"), "input": {"message": "something else"}}
    resp = a.post("/runs", other)
    assert resp.status_code == 409
    assert resp.json()["error"]["code"] == "idempotency_key_reused"


def test_a_key_that_grows_past_the_column_when_redacted_still_maps_to_one_run(make_workflow, agent):
    wf = make_workflow(rung=3)
    a = agent(wf)
    key = ",".join(f"u{i}@ex.io" for i in range(22))[:200]  # 200 characters, 22 emails
    assert len(key) == 200
    first = a.post("/runs", body(wf, key))
    again = a.post("/runs", body(wf, key))
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json()["id"] == again.json()["id"]
    stored = Run.objects.get().idempotency_key
    assert len(stored) == 200 and "@" not in stored
    assert re.search(r"~[0-9a-f]{64}$", stored)


def test_metric_names_are_redacted_before_they_are_stored(make_workflow, agent):
    wf = make_workflow(rung=3)
    resp = agent(wf).post(
        f"/workflows/{wf.slug}/metrics",
        {"metric": "csat of ana@example.com", "value": 4, "at": "2026-01-01T00:00:00Z"},
    )
    assert resp.status_code == 201
    assert re.fullmatch(f"csat of {PSEUDONYM}", MetricPoint.objects.get().metric)
