"""Approval deadlines seen by the agent: a run nobody decided in time is denied (or
escalated once, then denied), the agent's next read or poll tells it, and the beat sweep
decides what nobody reads. Time moves with the `clock` fixture, never by sleeping."""

import threading
import time
from datetime import datetime, timedelta

import pytest
from django.conf import settings
from django.db import connection, connections, transaction
from django.utils import timezone

from ladder.celery import app as celery_app
from ladder.errors import Conflict
from traces.models import Run
from traces.services.deadlines import deadlines_sweep, runs_past_deadline
from traces.services.decisions import DecisionInput, run_decide
from traces.tasks import apply_deadlines

pytestmark = pytest.mark.django_db

THREE_DAYS = 72 * 3600


def body(key, *, workflow):
    return {
        "workflow": workflow.slug,
        "idempotency_key": key,
        "input": {"message": f"refund please ({key})"},
        "proposal": {
            "action": "refund.issue",
            "params": {"order_id": key, "amount": 20, "currency": "EUR"},
        },
    }


def submit(client, key, workflow):
    answer = client.post("/runs", body(key, workflow=workflow))
    assert answer.status_code == 201, answer.content
    return answer.json()


def test_a_run_nobody_decided_is_denied_by_the_deadline_on_the_agents_next_read(
    make_workflow, agent, clock
):
    wf = make_workflow(rung=3)
    client = agent(wf)
    run = submit(client, "d-1", wf)
    assert run["status"] == "pending_review"
    assert run["deadline_at"] is not None

    clock.advance(THREE_DAYS - 60)
    assert client.get(f"/runs/{run['id']}").json()["status"] == "pending_review"

    clock.advance(61)
    got = client.get(f"/runs/{run['id']}").json()
    assert got["status"] == "denied"
    assert got["decision"]["verdict"] == "denied"
    assert got["decision"]["reason"] == "no decision within 3 days"
    assert got["deadline_at"] is None  # nothing is waiting any more

    stored = Run.objects.get(pk=run["id"])
    assert stored.decided_by is None and stored.decision["by"] == "deadline"

    replay = client.get(f"/runs/{run['id']}/replay").json()
    assert replay["complete"] and replay["verified"], replay["missing"]
    step = replay["steps"][-1]
    assert (step["type"], step["actor"]) == ("deadline", "system")
    assert step["payload"]["outcome"] == "denied"
    assert step["payload"]["reason"] == "no decision within 3 days"
    assert step["payload"]["waited_seconds"] >= THREE_DAYS
    # The answer gives times to the millisecond (DjangoJSONEncoder), the trace exactly.
    told = datetime.fromisoformat(run["deadline_at"].replace("Z", "+00:00"))
    assert abs(datetime.fromisoformat(step["payload"]["deadline_at"]) - told) < timedelta(
        milliseconds=1
    )


def test_a_second_read_after_the_deadline_changes_nothing(make_workflow, agent, clock):
    wf = make_workflow(rung=3)
    client = agent(wf)
    run = submit(client, "d-2", wf)
    clock.advance(THREE_DAYS + 1)
    first = client.get(f"/runs/{run['id']}").json()
    second = client.get(f"/runs/{run['id']}").json()
    assert first == second
    assert Run.objects.get(pk=run["id"]).events.filter(type="deadline").count() == 1


def test_escalate_moves_the_run_to_the_escalated_queue_once_then_denies_it(
    make_workflow, agent, clock
):
    wf = make_workflow(rung=3, review_deadline_seconds=3600, deadline_action="escalate")
    client = agent(wf)
    run = submit(client, "e-1", wf)
    version = Run.objects.get(pk=run["id"]).version

    clock.advance(3601)
    escalated = client.get(f"/runs/{run['id']}").json()
    assert escalated["status"] == "pending_review"
    assert escalated["queue"] == "escalated"
    assert escalated["escalation_reason"] == "waited past the 1 h deadline"
    fresh = timezone.now() + timedelta(hours=1)
    new_deadline = Run.objects.get(pk=run["id"]).deadline_at
    assert abs((new_deadline - fresh).total_seconds()) < 5
    # A reviewer's open screen of the run is stale now.
    assert Run.objects.get(pk=run["id"]).version > version

    clock.advance(3601)
    denied = client.get(f"/runs/{run['id']}").json()
    assert denied["status"] == "denied"
    assert denied["decision"]["reason"] == (
        "no decision within 1 h, nor in the 1 h after it was escalated"
    )
    replay = client.get(f"/runs/{run['id']}/replay").json()
    assert replay["complete"] and replay["verified"]
    outcomes = [s["payload"]["outcome"] for s in replay["steps"] if s["type"] == "deadline"]
    assert outcomes == ["escalated", "denied"]


def test_a_long_poll_ends_at_the_deadline_with_the_denial(make_workflow, agent, clock):
    wf = make_workflow(rung=3, review_deadline_seconds=60)
    client = agent(wf)
    run = submit(client, "p-1", wf)
    clock.advance(59)  # one second left

    started = time.monotonic()
    got = client.get(f"/runs/{run['id']}?wait=20").json()
    elapsed = time.monotonic() - started

    assert got["status"] == "denied"
    assert got["decision"]["reason"] == "no decision within 1 min"
    assert elapsed < 10, elapsed  # told at the deadline, not at the end of the poll


def test_the_beat_task_sweeps_every_run_past_its_deadline_in_batches(make_workflow, agent, clock):
    short = make_workflow(rung=3, review_deadline_seconds=60)
    long = make_workflow(rung=3)
    escalating = make_workflow(rung=3, review_deadline_seconds=60, deadline_action="escalate")
    short_client, long_client = agent(short), agent(long)
    due = [submit(short_client, f"s-{i}", short)["id"] for i in range(5)]
    later = submit(long_client, "l-1", long)["id"]
    to_escalate = submit(agent(escalating), "x-1", escalating)["id"]

    clock.advance(61)
    assert deadlines_sweep(batch=2) == 6  # five denied, one escalated, in three batches

    def status(run_id):
        return Run.objects.get(pk=run_id).status

    assert [status(r) for r in due] == ["denied"] * 5
    assert status(later) == "pending_review"
    escalated = Run.objects.get(pk=to_escalate)
    assert (escalated.status, escalated.queue) == ("pending_review", "escalated")
    assert deadlines_sweep() == 0  # nothing is due twice

    clock.advance(61)
    assert apply_deadlines.delay().get() == 1  # the escalated one, now denied
    assert short_client.get(f"/runs/{due[0]}").json()["status"] == "denied"
    assert Run.objects.get(pk=to_escalate).status == "denied"


def test_the_sweep_takes_its_own_now(make_workflow, agent):
    wf = make_workflow(rung=3)
    run = submit(agent(wf), "n-1", wf)
    assert deadlines_sweep(now=timezone.now() + timedelta(hours=71)) == 0
    assert deadlines_sweep(now=timezone.now() + timedelta(hours=73)) == 1
    assert Run.objects.get(pk=run["id"]).status == "denied"


def test_celery_beat_runs_the_sweep_every_30_seconds():
    entry = settings.CELERY_BEAT_SCHEDULE["apply-deadlines"]
    assert entry["schedule"] == 30.0
    assert entry["task"] == apply_deadlines.name
    assert entry["task"] in celery_app.tasks


def test_runs_decided_in_time_are_left_alone(make_workflow, agent, clock):
    wf = make_workflow(rung=4)  # no policy: every action escalates to a person
    client = agent(wf)
    run = submit(client, "ok-1", wf)
    stored = Run.objects.get(pk=run["id"])
    run_decide(
        run_id=stored.pk,
        user_id=None,
        actor_name="someone",
        seen_version=stored.version,
        seen_hash="x",
        decision=DecisionInput(verdict="rejected", action="refund.issue", params={}, extra={}),
    )
    clock.advance(THREE_DAYS + 1)
    assert deadlines_sweep() == 0
    assert client.get(f"/runs/{run['id']}").json()["status"] == "rejected"


def test_a_decision_after_the_deadline_is_refused_by_the_guarded_update(
    make_workflow, agent, clock
):
    wf = make_workflow(rung=3)
    run = submit(agent(wf), "late-1", wf)
    stored = Run.objects.get(pk=run["id"])
    clock.advance(THREE_DAYS)
    with pytest.raises(Conflict) as refused:
        run_decide(
            run_id=stored.pk,
            user_id=None,
            actor_name="late",
            seen_version=stored.version,
            seen_hash="x",
            decision=DecisionInput(verdict="approved", action="refund.issue", params={}, extra={}),
        )
    assert refused.value.code == "deadline_passed"
    assert Run.objects.get(pk=run["id"]).status == "pending_review"  # the deadline decides


def test_the_sweep_reads_due_runs_from_the_deadline_index(make_workflow, agent):
    wf = make_workflow(rung=3)
    client = agent(wf)
    for i in range(3):
        submit(client, f"i-{i}", wf)
    with connection.cursor() as cur:
        cur.execute("ANALYZE traces_run")
        cur.execute("SET LOCAL enable_seqscan = off")
        # On three rows a bitmap scan and a sort cost what the ordered index scan costs;
        # the test is about what the index offers a long queue.
        cur.execute("SET LOCAL enable_bitmapscan = off")
    now = timezone.now()
    for skipped in ([], [Run.objects.first().pk]):
        plan = runs_past_deadline(now=now, skipped=skipped)[:500].explain()
        assert "run_deadline_idx" in plan, plan
        assert "Sort  " not in plan, plan  # the index order serves ORDER BY


@pytest.mark.django_db(transaction=True)
def test_the_sweep_skips_a_run_someone_holds_and_gets_it_next_time(make_workflow, agent, clock):
    wf = make_workflow(rung=3)
    client = agent(wf)
    held, free = submit(client, "h-1", wf)["id"], submit(client, "h-2", wf)["id"]
    clock.advance(THREE_DAYS + 1)
    locked, release = threading.Event(), threading.Event()

    def hold():  # as a reviewer's decision would, mid-transaction
        try:
            with transaction.atomic():
                Run.objects.select_for_update().get(pk=held)
                locked.set()
                release.wait(timeout=20)
        finally:
            connections.close_all()

    holder = threading.Thread(target=hold, daemon=True)
    holder.start()
    assert locked.wait(timeout=10)
    try:
        assert deadlines_sweep() == 1  # returns at once: the held row is not waited for
        assert Run.objects.get(pk=free).status == "denied"
        assert Run.objects.get(pk=held).status == "pending_review"
    finally:
        release.set()
        holder.join(timeout=10)
    assert deadlines_sweep() == 1
    assert Run.objects.get(pk=held).status == "denied"
