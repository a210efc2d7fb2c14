import json
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import DatabaseError, connection, transaction

from traces.models import Run, RunStatus, TraceEvent
from traces.selectors import replay_coverage, run_replay

pytestmark = pytest.mark.django_db


def body(wf, key):
    return {
        "workflow": wf.slug,
        "idempotency_key": key,
        "input": {"q": key},
        "tool_calls": [{"name": "lookup", "arguments": {"k": 1}, "result": [1, 2.5, 1e20]}],
        "output": {"a": "b"},
        "proposal": {"action": "refund.issue", "params": {"order_id": "A", "amount": 3}},
    }


@pytest.fixture
def runs(make_workflow, agent):
    wf = make_workflow()
    a = agent(wf)
    return wf, [a.post("/runs", body(wf, f"k{i}")).json()["id"] for i in range(3)]


def verify() -> tuple[int, str]:
    out = StringIO()
    try:
        call_command("verify_traces", stdout=out)
        return 0, out.getvalue()
    except CommandError as exc:
        return 1, out.getvalue() + str(exc)


def tamper(sql, params):
    """What an attacker with table-owner rights would have to do: switch the guard off."""
    with connection.cursor() as cur:
        cur.execute("SET CONSTRAINTS ALL IMMEDIATE")  # flush deferred FK checks first
        cur.execute("ALTER TABLE traces_traceevent DISABLE TRIGGER USER")
        cur.execute(sql, params)
        cur.execute("ALTER TABLE traces_traceevent ENABLE TRIGGER USER")


def test_intact_chains_verify(runs):
    code, out = verify()
    assert code == 0 and "all 3 trace chain(s) verified" in out


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE traces_traceevent SET actor = 'someone else'",
        "DELETE FROM traces_traceevent",
    ],
)
def test_the_database_refuses_to_rewrite_trace_events(runs, statement):
    with (
        pytest.raises(DatabaseError, match="append-only"),
        transaction.atomic(),
        connection.cursor() as cur,
    ):
        cur.execute(statement)
    assert TraceEvent.objects.count() == 12


@pytest.mark.parametrize("how", ["orm", "sql"])
def test_the_database_refuses_to_delete_runs(runs, how):
    _, ids = runs
    with pytest.raises(DatabaseError, match="cannot be deleted"), transaction.atomic():
        if how == "orm":
            # Past the ORM's own PROTECT, as a bulk delete of runs without events would be.
            Run.objects.filter(pk=ids[0])._raw_delete(connection.alias)
        else:
            with connection.cursor() as cur:
                cur.execute("DELETE FROM traces_run WHERE id = %s", [ids[0]])
    assert Run.objects.filter(pk=ids[0]).exists()


def test_events_of_a_missing_run_are_reported(runs):
    _, ids = runs
    with connection.cursor() as cur:
        cur.execute("SET CONSTRAINTS ALL IMMEDIATE")
        cur.execute("ALTER TABLE traces_run DISABLE TRIGGER USER")
        cur.execute("DELETE FROM approvals_review WHERE run_id = %s", [ids[1]])
        cur.execute("DELETE FROM traces_run WHERE id = %s", [ids[1]])
        cur.execute("ALTER TABLE traces_run ENABLE TRIGGER USER")
    code, out = verify()
    assert code == 1
    assert f"BROKEN run {ids[1]} chain: events belong to a run that no longer exists" in out
    assert ids[0] not in out and ids[2] not in out


def test_an_edited_payload_is_reported_with_its_run_and_seq(runs):
    _, ids = runs
    event = TraceEvent.objects.get(run_id=ids[1], seq=2)
    doc = json.loads(event.document)
    doc["payload"]["result"] = "nothing to see"
    tamper(
        "UPDATE traces_traceevent SET document = %s WHERE run_id = %s AND seq = %s",
        [json.dumps(doc), event.run_id, event.seq],
    )
    code, out = verify()
    assert code == 1
    assert f"BROKEN run {ids[1]} seq 2: content does not match its hash" in out
    assert ids[0] not in out and ids[2] not in out


def test_a_deleted_event_is_reported_as_a_missing_link(runs):
    _, ids = runs
    tamper("DELETE FROM traces_traceevent WHERE run_id = %s AND seq = 2", [ids[0]])
    code, out = verify()
    assert code == 1
    assert "missing link: expected seq 2" in out
    assert "run records 4 events, trace has 3" in out


def test_a_deleted_tail_is_caught_by_the_run_head(runs):
    _, ids = runs
    tamper("DELETE FROM traces_traceevent WHERE run_id = %s AND seq = 4", [ids[2]])
    code, out = verify()
    assert code == 1 and ids[2] in out


def test_a_rehashed_forgery_still_breaks_the_link_to_the_next_event(runs):
    from traces.chain import link_hash

    _, ids = runs
    event = TraceEvent.objects.get(run_id=ids[0], seq=1)
    forged = event.document.replace('"q":"k0"', '"q":"forged"')
    tamper(
        "UPDATE traces_traceevent SET document = %s, hash = %s WHERE run_id = %s AND seq = %s",
        [forged, link_hash(event.prev_hash, forged), event.run_id, event.seq],
    )
    code, out = verify()
    assert code == 1 and "seq 2: prev_hash does not match" in out


def test_replay_rebuilds_the_run_from_its_trace(runs):
    _, ids = runs
    run = Run.objects.get(pk=ids[0])
    result = run_replay(run=run)
    assert result["complete"] and result["verified"]
    rebuilt = result["run"]
    assert rebuilt["input"] == {"q": "k0"}
    assert rebuilt["tool_calls"][0]["result"] == [1, 2.5, 1e20]
    assert rebuilt["proposal"]["action"] == "refund.issue"
    assert [s["type"] for s in result["steps"]] == ["input", "tool_call", "output", "proposal"]


def test_replay_over_the_api_says_when_a_trace_is_broken(runs, agent, client):
    wf, ids = runs
    tamper("DELETE FROM traces_traceevent WHERE run_id = %s AND seq = 1", [ids[0]])
    a = agent(wf)
    data = a.get(f"/runs/{ids[0]}/replay").json()
    assert data["verified"] is False and data["complete"] is False
    assert "input" in data["missing"]


def test_replay_coverage_counts_complete_and_verified_executed_runs(runs):
    wf, ids = runs
    Run.objects.filter(pk__in=ids).update(status=RunStatus.EXECUTED)
    # Executed without an execution event or a decision: incomplete evidence.
    cov = replay_coverage(workflow=wf)
    assert (cov.covered, cov.executed) == (0, 3)
    assert replay_coverage(workflow=wf).ratio == 0
    Run.objects.filter(pk__in=ids).update(status=RunStatus.PENDING_REVIEW)
    assert replay_coverage(workflow=wf).ratio is None
