"""Attention probes (docs/evals.md): seeded at the owner's rate into the L3 queue from
known-wrong eval cases, shown like any run, never executed, told after the decision, and
counted per workflow."""

import json
import re
from datetime import timedelta

import pytest

from approvals import services
from ladder.rungs import Executor
from tests.factories import WorkflowFactory
from traces.evals import probe_catch
from traces.models import DemoLedgerEntry, EvalCase, Run, RunStatus
from traces.selectors import run_replay
from traces.services.deadlines import deadlines_sweep
from traces.services.evals import eval_cases_import
from traces.services.execution import execution_sweep, run_execute
from traces.services.probes import PROBE_ACTOR, probes_due, probes_seed

pytestmark = pytest.mark.django_db

WRONG_CASE = {
    "input": {"message": "where is my parcel?"},
    "expected": {"action": "refund.issue", "params": {"amount": 0}},
    "wrong": {
        "action": "refund.issue",
        "params": {"amount": 4200.0, "currency": "EUR"},
        "why": "a refund a hundred times the order total",
    },
}


@pytest.fixture
def l3(flows, people):
    wf = flows["l3"]
    # A server executor: if a probe were ever executed, the demo ledger would show it.
    wf.action_types.update(
        executor=Executor.SERVER, executor_path="traces.demo_executors.refund_issue"
    )
    eval_cases_import(workflow=wf, text=json.dumps(WRONG_CASE), by=None)
    return wf


@pytest.fixture
def probed(l3, people, submit):
    """18 real runs arrived in the L3 queue; at 10 % that calls for 2 probes."""
    for _ in range(18):
        submit("l3")
    services.workflow_probe_rate_set(workflow=l3, rate=0.1, by=people["owner"])
    return list(probes_seed(workflow=l3))


def test_probes_are_kept_at_the_rate_of_the_l3_queues_work():
    assert probes_due(arrivals=18, probes=0, rate=0.1) == 2
    assert probes_due(arrivals=18, probes=2, rate=0.1) == 0
    assert probes_due(arrivals=8, probes=0, rate=0.1) == 0
    assert probes_due(arrivals=1000, probes=0, rate=0.1) == 5  # a few per seeding
    assert probes_due(arrivals=100, probes=0, rate=0) == 0


def test_seeding_makes_probe_runs_that_look_like_any_waiting_run(probed, l3, agent):
    assert len(probed) == 2
    assert probes_seed(workflow=l3) == []  # topped up already
    sent = agent(l3).post(
        "/runs",
        {
            "workflow": l3.slug,
            "idempotency_key": "real",
            "input": {"message": "hello"},
            "proposal": {"action": "refund.issue", "params": {"amount": 3}},
        },
    )
    real = Run.objects.get(pk=sent.json()["id"])
    probe = Run.objects.get(pk=probed[0].pk)
    assert probe.probe and probe.status == RunStatus.PENDING_REVIEW and probe.queue == "l3"
    assert probe.rung == 3 and probe.deadline_at is not None
    assert set(probe.proposal) == set(real.proposal)
    assert probe.proposal["params"] == {"amount": 4200.0, "currency": "EUR"}
    assert probe.value == 4200 and probe.currency == "EUR"
    replay = run_replay(run=probe)
    assert replay["verified"]
    assert [s["type"] for s in replay["steps"]] == ["input", "proposal"]
    real_input = next(s for s in run_replay(run=real)["steps"] if s["type"] == "input")
    assert set(replay["steps"][0]["payload"]) == set(real_input["payload"])
    assert {s["actor"] for s in replay["steps"]} == {PROBE_ACTOR}
    assert EvalCase.objects.get().probes.count() == 2


def test_no_probes_below_l3_or_without_a_rate_or_without_known_wrong_cases(flows, people, submit):
    l2 = flows["l2"]
    l2.probe_rate = 0.1
    assert probes_seed(workflow=l2) == []
    l3 = flows["l3"]
    for _ in range(30):
        submit("l3")
    assert probes_seed(workflow=l3) == []  # rate 0
    l3.probe_rate = 0.1
    assert probes_seed(workflow=l3) == []  # no eval case with a wrong proposal


def test_the_review_screen_does_not_tell_a_probe_before_the_decision(probed, login, people):
    client = login(people["rev"])
    page = client.get(f"/runs/{probed[0].pk}/").content.decode()
    assert "probe" not in page.lower()
    replay = client.get(f"/runs/{probed[0].pk}/replay").content.decode()
    assert PROBE_ACTOR not in replay


def test_a_rejected_probe_is_told_as_caught(probed, login, people, seen):
    client = login(people["rev"])
    probe = probed[0]
    answer = client.post(
        f"/runs/{probe.pk}/decide",
        {**seen(probe), "verdict": "reject", "reason": "far too much"},
        follow=True,
    )
    text = answer.content.decode()
    assert "attention probe" in text and "You rejected it: caught" in text
    page = client.get(f"/runs/{probe.pk}/").content.decode()
    assert "This run was an attention probe" in page and "caught" in page
    assert "a hundred times the order total" in page
    assert probe_catch(workflow=probe.workflow).k == 1


def test_an_approved_probe_with_a_server_executor_is_never_executed(
    probed, login, people, seen, django_capture_on_commit_callbacks, clock
):
    client = login(people["rev"])
    probe = probed[0]
    # Callbacks run and Celery is eager: an execution queued would happen right here.
    with django_capture_on_commit_callbacks(execute=True):
        answer = client.post(
            f"/runs/{probe.pk}/decide", {**seen(probe), "verdict": "approve"}, follow=True
        )
    assert "You approved it: missed" in answer.content.decode()
    run = Run.objects.get(pk=probe.pk)
    assert run.status == RunStatus.APPROVED and run.decider == "person"
    clock.advance(3600)
    with django_capture_on_commit_callbacks(execute=True):
        sweep = execution_sweep()
    assert sweep.waiting == 0
    assert run_execute(run_id=probe.pk).status == RunStatus.APPROVED
    assert DemoLedgerEntry.objects.count() == 0
    catch = probe_catch(workflow=probe.workflow)
    assert (catch.k, catch.n) == (0, 1)


def test_no_agent_can_read_claim_or_report_on_a_probe(probed, l3, agent, people, seen, login):
    bot = agent(l3)
    probe = probed[0]
    assert bot.get(f"/runs/{probe.pk}").status_code == 404
    login(people["rev"]).post(f"/runs/{probe.pk}/decide", {**seen(probe), "verdict": "approve"})
    assert bot.post(f"/runs/{probe.pk}/claim", {}).status_code == 404
    assert bot.post(f"/runs/{probe.pk}/result", {"status": "succeeded"}).status_code == 404
    assert bot.get(f"/runs/{probe.pk}/replay").status_code == 404


def test_a_probe_the_deadline_decides_is_not_counted_as_caught_or_missed(probed, clock):
    clock.advance(timedelta(days=30).total_seconds())
    deadlines_sweep()
    assert Run.objects.filter(probe=True, status=RunStatus.DENIED).count() == 2
    catch = probe_catch(workflow=probed[0].workflow)
    assert (catch.k, catch.n) == (0, 0)


def test_the_workflow_page_shows_the_catch_rate_for_the_workflow_only(probed, login, people, seen):
    reviewer = login(people["rev"])
    reviewer.post(f"/runs/{probed[0].pk}/decide", {**seen(probed[0]), "verdict": "approve"})
    reviewer.post(
        f"/runs/{probed[1].pk}/decide", {**seen(probed[1]), "verdict": "reject", "reason": "no"}
    )
    page = login(people["owner"]).get(f"/workflows/{probed[0].workflow.slug}/").content.decode()
    assert "caught <b>1 of 2</b> attention probes (50.0%)" in page
    said = page.split('id="probes"')[1].split("</p>")[0]
    assert not re.search(r"\brev\b", said)  # nobody is named


def test_owners_set_the_probe_rate_on_the_settings_page(l3, login, people):
    owner = login(people["owner"])
    answer = owner.post(f"/workflows/{l3.slug}/settings", {"form": "probes", "percent": "5"})
    assert answer.status_code == 302
    l3.refresh_from_db()
    assert l3.probe_rate == pytest.approx(0.05)
    too_high = owner.post(f"/workflows/{l3.slug}/settings", {"form": "probes", "percent": "20"})
    assert too_high.status_code == 422
    l3.refresh_from_db()
    assert l3.probe_rate == pytest.approx(0.05)
    reviewer = login(people["rev"])
    assert (
        reviewer.post(f"/workflows/{l3.slug}/settings", {"form": "probes", "percent": "1"})
    ).status_code == 403
    other = WorkflowFactory(slug="not-theirs")
    assert owner.get(f"/workflows/{other.slug}/settings").status_code == 404
