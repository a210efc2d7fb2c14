"""Rollback drills in one process (Celery eager): the service's refusals, no double
reversal, a failing compensation, the sweep, the gates and the pages. The same with real
workers: tests/traces/test_drill_worker.py."""

from datetime import timedelta
from io import StringIO

import pytest
from django.core import mail
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from ladder.errors import Unprocessable
from ladder.models import ActionType, Alert
from tests.factories import UserFactory, WorkflowFactory
from tests.traces.drills_setup import approve, refund_body, refunds_workflow
from traces.gates import run_tallies, window_for
from traces.models import DemoLedgerEntry, RollbackDrill, RollbackDrillItem, Run, TraceEvent
from traces.selectors import run_replay
from traces.services import drills
from traces.services.gates import gates_recompute
from traces.tasks import revert_drill_item, sweep_executions

pytestmark = pytest.mark.django_db


@pytest.fixture
def executed(agent, django_capture_on_commit_callbacks):
    """`executed(wf, people, n)`: n runs submitted by the agent, approved by the reviewer
    and executed (eagerly) by the server executor. Returns their ids, oldest first."""

    def make(wf, people, n, *, start=0):
        api = agent(wf)
        ids = []
        for i in range(start, start + n):
            response = api.post("/runs", refund_body(wf, f"order-{i}"))
            assert response.status_code == 201, response.content
            run_id = response.json()["id"]
            with django_capture_on_commit_callbacks(execute=True):
                approve(run_id, people["rev"])
            ids.append(run_id)
        assert Run.objects.filter(pk__in=ids, status="executed").count() == n
        return ids

    return make


def start(wf, batch, capture, **kw):
    with capture(execute=True):
        drill = drills.drill_start(workflow=wf, batch=batch, **kw)
    drill.refresh_from_db()
    return drill


def reversals(run_id) -> int:
    return DemoLedgerEntry.objects.filter(
        idempotency_key=f"refund.reverse:rollback:{run_id}"
    ).count()


def test_a_drill_reverts_the_newest_runs_and_each_replay_shows_its_rollback(
    executed, django_capture_on_commit_callbacks
):
    wf, people = refunds_workflow()
    ids = executed(wf, people, 5)
    drill = start(wf, 3, django_capture_on_commit_callbacks, actor=people["owner"])
    assert (drill.status, drill.picked, drill.succeeded, drill.failed) == ("finished", 3, 3, 0)
    assert drill.passed and drill.duration_seconds > 0
    reverted = set(drill.items.values_list("run_id", flat=True))
    assert {str(r) for r in reverted} == set(ids[-3:])  # newest first
    for run_id in ids[-3:]:
        run = Run.objects.get(pk=run_id)
        assert run.status == "rolled_back" and run.replay_ok is True
        replay = run_replay(run=run)
        assert replay["complete"] and replay["verified"], replay["missing"]
        rollback = replay["run"]["rollback"]
        assert rollback["drill"] == drill.pk and rollback["status"] == "succeeded"
        assert rollback["compensating_action"] == "refund.reverse"
        assert reversals(run_id) == 1
    assert Run.objects.filter(pk__in=ids[:2], status="executed").count() == 2
    # A second drill takes the rest; a third finds nothing left.
    assert start(wf, 50, django_capture_on_commit_callbacks).picked == 2
    with pytest.raises(Unprocessable, match="no executed run"):
        drills.drill_start(workflow=wf, batch=5)


def test_a_redelivered_item_is_not_reversed_twice(executed, django_capture_on_commit_callbacks):
    wf, people = refunds_workflow()
    [run_id] = executed(wf, people, 1)
    drill = start(wf, 1, django_capture_on_commit_callbacks)
    item = drill.items.get()
    revert_drill_item.delay(item.pk)  # delivered again, twice
    revert_drill_item(item.pk)
    assert drills.drill_item_revert(item_id=item.pk) is None
    assert reversals(run_id) == 1
    assert TraceEvent.objects.filter(run_id=run_id, type="rollback").count() == 1
    # Nor can another drill item ever hold the same run.
    with pytest.raises(Exception, match="drillitem_one_per_run"):
        RollbackDrillItem.objects.create(drill=drill, run_id=run_id, compensating_action="x")


def test_a_failing_compensation_fails_the_drill_and_is_never_retried(
    executed, django_capture_on_commit_callbacks
):
    wf, people = refunds_workflow(reverse_path="tests.traces.drill_executors.reverse_fails")
    ids = executed(wf, people, 2)
    for person in people.values():
        person.email = f"{person.username}@example.com"
        person.save()
    drill = start(wf, 2, django_capture_on_commit_callbacks)
    assert (drill.status, drill.succeeded, drill.failed, drill.passed) == ("finished", 0, 2, False)
    # The owners are told, on the workflow page and by mail; compliance is not mailed.
    alert = Alert.objects.get(workflow=wf, kind=Alert.Kind.DRILL_FAILED)
    assert alert.subject == f"Rollback drill #{drill.pk} of {wf.name} failed"
    assert "reverted 0 of 2 runs; 2 compensations failed" in alert.body
    assert [m.to for m in mail.outbox] == [[people["owner"].email]]
    attempts = DemoLedgerEntry.objects.filter(action="attempt")
    assert attempts.count() == 2
    for item in drill.items.all():
        assert item.status == "failed" and "the bank refused" in item.error
        revert_drill_item(item.pk)  # delivered again: nothing is called
    drills.drills_sweep(now=timezone.now() + timedelta(hours=1))
    assert attempts.count() == 2
    for run_id in ids:
        run = Run.objects.get(pk=run_id)
        assert run.status == "executed"  # nothing was reverted
        rollback = run_replay(run=run)["run"]["rollback"]
        assert rollback["status"] == "failed" and "the bank refused" in rollback["error"]
    # The failed runs are not picked again: a person reconciles them.
    with pytest.raises(Unprocessable, match="no executed run"):
        drills.drill_start(workflow=wf, batch=5)
    gate = {g["name"]: g for g in gates_recompute(workflow=wf, trigger="command").gates}
    assert gate["rollback_drill"]["verdict"] == "fail"
    assert "failed" in gate["rollback_drill"]["sentence"]


def test_an_item_left_reverting_by_a_dead_worker_is_failed_as_unknown_not_rerun(
    executed, django_capture_on_commit_callbacks
):
    wf, people = refunds_workflow()
    [run_id] = executed(wf, people, 1)
    with django_capture_on_commit_callbacks(execute=False):  # the tasks are never sent
        drill = drills.drill_start(workflow=wf, batch=1)
    item = drill.items.get()
    # A worker claimed it, then died before the compensation returned.
    RollbackDrillItem.objects.filter(pk=item.pk).update(
        status="reverting", started_at=timezone.now()
    )
    sweep_executions()  # the periodic sweep, within the lease: left alone
    assert RollbackDrillItem.objects.get(pk=item.pk).status == "reverting"
    assert drills.drills_sweep(now=timezone.now() + timedelta(minutes=5)) == (0, 1)
    item.refresh_from_db()
    drill.refresh_from_db()
    assert item.status == "failed" and item.error.startswith("unknown:")
    assert "reconcile by hand" in item.error
    assert drill.finished and not drill.passed
    assert reversals(run_id) == 0 and Run.objects.get(pk=run_id).status == "executed"


def test_a_pending_item_whose_task_was_never_sent_is_sent_again_by_the_sweep(
    executed, django_capture_on_commit_callbacks
):
    wf, people = refunds_workflow()
    [run_id] = executed(wf, people, 1)
    with django_capture_on_commit_callbacks(execute=False):
        drill = drills.drill_start(workflow=wf, batch=1)
    assert drills.drills_sweep(now=timezone.now() + timedelta(minutes=1)) == (1, 0)
    drill.refresh_from_db()
    assert drill.passed and reversals(run_id) == 1


def test_the_service_refuses_nonsense_with_reasons(make_workflow):
    plain = make_workflow()
    with pytest.raises(Unprocessable, match=r"nothing in .* is reversible"):
        drills.drill_start(workflow=plain, batch=5)
    ActionType.objects.filter(workflow=plain).update(
        reversible=True, compensating_action="refund.undo"
    )
    with pytest.raises(Unprocessable, match=r"refund\.undo is not defined"):
        drills.drill_start(workflow=plain, batch=5)
    wf, _ = refunds_workflow()
    with pytest.raises(Unprocessable, match="at least 1"):
        drills.drill_start(workflow=wf, batch=0)
    with pytest.raises(Unprocessable, match="no executed run"):
        drills.drill_start(workflow=wf, batch=5)
    assert not RollbackDrill.objects.exists()


def test_the_command_says_what_is_wrong():
    wf, _ = refunds_workflow()
    plain = WorkflowFactory(slug="plain")
    cases = [
        (("nope",), "unknown workflow: nope"),
        ((wf.slug, "--batch", "0"), "--batch must be at least 1"),
        (("plain",), "nothing in plain is reversible"),
        ((wf.slug,), "no executed run of refunds"),
    ]
    for args, message in cases:
        with pytest.raises(CommandError, match=message):
            call_command("rollback_drill", *args, stdout=StringIO())
    assert plain.pk


def test_rolled_back_runs_count_as_executed_not_failed_unless_labelled_wrong(
    executed, agent, django_capture_on_commit_callbacks
):
    wf, people = refunds_workflow()
    ids = executed(wf, people, 4)
    start(wf, 3, django_capture_on_commit_callbacks)
    api = agent(wf)
    response = api.post(f"/runs/{ids[-1]}/outcome", {"label": "wrong", "source": "customer"})
    assert response.status_code in (200, 201), response.content
    now = timezone.now() + timedelta(seconds=1)
    tallies = run_tallies([window_for(workflow_id=wf.pk, rung=3, days=90, now=now)])[wf.pk]
    assert tallies.failure.n == 4 and tallies.failure.k == 1  # only the one labelled wrong
    assert tallies.replay.k == tallies.replay.n == 4
    assert tallies.approval.k == tallies.approval.n == 4


def test_the_gates_read_the_latest_finished_drill(executed, django_capture_on_commit_callbacks):
    wf, people = refunds_workflow()
    executed(wf, people, 2)
    gate = {g["name"]: g for g in gates_recompute(workflow=wf, trigger="command").gates}
    assert (gate["rollback_drill"]["verdict"], gate["rollback_drill"]["required"]) == (
        "insufficient",
        True,
    )
    drill = start(wf, 2, django_capture_on_commit_callbacks)
    snap = gates_recompute(workflow=wf, trigger="command")
    gate = {g["name"]: g for g in snap.gates}["rollback_drill"]
    assert gate["verdict"] == "pass"
    assert snap.tallies["drill"] == {
        "id": drill.pk,
        "at": drill.finished_at.isoformat(),
        "passed": True,
        "size": 2,
        "duration_seconds": drill.duration_seconds,
        "under_load": False,
    }
    assert "Rollback drill: pass." not in snap.reasons


def test_under_load_is_the_gateways_rate_during_the_drill(settings):
    start_at = timezone.now() - timedelta(seconds=2)
    before = Run.objects.count()
    wf = WorkflowFactory()
    for i in range(12):
        Run.objects.create(workflow=wf, idempotency_key=f"k{i}", rung=3, status="recorded")
    assert Run.objects.count() - before == 12
    n, rps = drills.gateway_load(since=start_at, until=timezone.now() + timedelta(seconds=1))
    assert n == 12 and 3.5 < rps <= 4.0
    assert drills.gateway_load(since=start_at, until=start_at + timedelta(seconds=1)) == (0, 0.0)


# -- pages ---------------------------------------------------------------------------------


def test_an_owner_starts_a_drill_from_the_page_and_reads_its_items(
    client, executed, django_capture_on_commit_callbacks, django_assert_max_num_queries
):
    wf, people = refunds_workflow()
    ids = executed(wf, people, 3)
    client.force_login(people["owner"])
    page = client.get(f"/workflows/{wf.slug}/").content.decode()
    assert 'id="drill-form"' in page and "No rollback drill has been run." in page
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(f"/workflows/{wf.slug}/drills", {"batch": "2"})
    assert response.status_code == 302
    drill = RollbackDrill.objects.get()
    assert response["Location"] == f"/workflows/{wf.slug}/drills/{drill.pk}/"
    assert (drill.started_by, drill.trigger) == (people["owner"], "page")
    with django_assert_max_num_queries(10):  # the items and their runs in one query
        detail = client.get(response["Location"]).content.decode()
    assert "Passed" in detail and detail.count('<span class="status ok">Reverted</span>') == 2
    for run_id in ids[-2:]:
        assert f'href="/runs/{run_id}/"' in detail
    listed = client.get(f"/workflows/{wf.slug}/").content.decode()
    assert f"/workflows/{wf.slug}/drills/{drill.pk}/" in listed and "Passed" in listed


def test_only_owners_start_drills_compliance_reads_them_strangers_see_nothing(client, executed):
    wf, people = refunds_workflow()
    executed(wf, people, 1)
    client.force_login(people["compliance"])
    page = client.get(f"/workflows/{wf.slug}/").content.decode()
    assert 'id="drill-list"' in page and 'id="drill-form"' not in page
    assert client.post(f"/workflows/{wf.slug}/drills", {"batch": "1"}).status_code == 403
    client.force_login(people["rev"])
    assert client.post(f"/workflows/{wf.slug}/drills", {"batch": "1"}).status_code == 403
    client.force_login(UserFactory(username="stranger"))
    assert client.post(f"/workflows/{wf.slug}/drills", {"batch": "1"}).status_code == 404
    assert client.get(f"/workflows/{wf.slug}/drills").status_code == 404
    assert not RollbackDrill.objects.exists()


def test_a_refused_drill_is_explained_on_the_page(client):
    wf, people = refunds_workflow()
    client.force_login(people["owner"])
    response = client.post(f"/workflows/{wf.slug}/drills", {"batch": "0"})
    assert response.status_code == 422
    assert "whole number from 1 to 1000" in response.content.decode()
    response = client.post(f"/workflows/{wf.slug}/drills", {"batch": "10"})
    assert response.status_code == 422
    assert "no executed run of refunds can be reverted" in response.content.decode()
