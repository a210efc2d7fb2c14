"""The stop button's effect on runs (docs/stop.md), through the agent's API and the
services the pages call: while stopped nothing executes, new runs wait, and on resume
they proceed; nothing is lost or done twice."""

from datetime import timedelta

import pytest
from django.utils import timezone

from ladder.errors import Conflict, Unprocessable
from ladder.models import Alert, RungChange
from ladder.rungs import Executor
from ladder.services import rung_change, rung_since_many, workflow_resume, workflow_stop
from tests.factories import ActionTypeFactory, UserFactory, WorkflowFactory
from traces.models import DemoLedgerEntry, PolicyAllowance, Run, TraceEvent
from traces.services import execution
from traces.services.deadlines import deadlines_sweep
from traces.services.decisions import DecisionInput, run_decide
from traces.services.policy import policy_set
from traces.services.stop import held_sweep, workflow_resume_release

pytestmark = pytest.mark.django_db

# Allows refunds up to 200 EUR (above: a person), at most 100 an hour: a held run must
# leave the rate counter untouched.
POLICY = {
    "audit_sample_rate": 0,
    "rules": [
        {"id": "actions", "kind": "allow_actions", "actions": ["refund.issue"],
         "control": "allowed_tools"},
        {"id": "cap", "kind": "value_cap", "action": "refund.issue", "max": "200.00",
         "currency": "EUR", "then": "escalate", "control": "value_cap"},
        {"id": "rate", "kind": "rate_limit", "action": "refund.issue", "window_seconds": 3600,
         "max_count": 100, "per": "workflow", "then": "escalate", "control": "rate_limit"},
    ],
}  # fmt: skip


def refund(wf, key, amount=20):
    return {
        "workflow": wf.slug,
        "idempotency_key": key,
        "input": {"message": f"refund order {key}"},
        "proposal": {
            "action": "refund.issue",
            "params": {"order_id": key, "amount": amount, "currency": "EUR"},
        },
    }


@pytest.fixture
def owner(db):
    return UserFactory(username="owner")


def l4(executor=Executor.AGENT):
    wf = WorkflowFactory(rung=4)
    ActionTypeFactory(
        workflow=wf,
        name="refund.issue",
        executor=executor,
        executor_path="traces.demo_executors.refund_issue" if executor == Executor.SERVER else "",
    )
    policy_set(workflow=wf, document=POLICY, by=None)
    return wf


def replay_ok(client, run_id):
    replay = client.get(f"/runs/{run_id}/replay").json()
    return replay["complete"] and replay["verified"], replay


def approve(run_id, person):
    run = Run.objects.get(pk=run_id)
    return run_decide(
        run_id=run.pk,
        user_id=person.pk,
        actor_name=person.username,
        seen_version=run.version,
        seen_hash="test",
        decision=DecisionInput(
            verdict="approved",
            action=run.proposal["action"],
            params=run.proposal["params"],
            extra={},
        ),
    )


# -- the services ------------------------------------------------------------------------


def test_a_stop_and_a_resume_are_recorded_and_a_second_click_is_a_conflict(owner):
    wf = WorkflowFactory(rung=3)
    since = rung_since_many(workflows=[wf])[wf.pk]

    stop = workflow_stop(workflow=wf, actor=owner, reason="  refunds went to the wrong  IBAN ")
    with pytest.raises(Conflict) as again:
        workflow_stop(workflow=wf, actor=owner, reason="again")

    assert again.value.code == "already_stopped"
    wf.refresh_from_db()
    assert wf.stopped_at is not None and wf.stopped_by == owner
    assert wf.stop_reason == "refunds went to the wrong IBAN"
    assert (stop.kind, stop.from_rung, stop.to_rung, stop.evidence) == ("stop", 3, 3, {})
    # A stop keeps the rung, and does not restart it.
    assert rung_since_many(workflows=[wf])[wf.pk] == since

    resume = workflow_resume(workflow=wf, actor=owner, reason="IBANs fixed")
    with pytest.raises(Conflict) as twice:
        workflow_resume(workflow=wf, actor=owner, reason="again")

    assert twice.value.code == "not_stopped"
    wf.refresh_from_db()
    assert wf.stopped_at is None and wf.stopped_by is None and wf.stop_reason == ""
    assert (resume.kind, resume.from_rung, resume.to_rung) == ("resume", 3, 3)
    kinds = list(RungChange.objects.filter(workflow=wf).values_list("kind", flat=True))
    assert sorted(kinds) == ["resume", "stop"]
    alerts = Alert.objects.filter(workflow=wf).values_list("kind", flat=True)
    assert sorted(alerts) == ["resume", "stop"]


def test_a_stop_or_resume_without_a_reason_is_refused(owner):
    wf = WorkflowFactory(rung=3)
    with pytest.raises(Unprocessable) as err:
        workflow_stop(workflow=wf, actor=owner, reason="   ")
    assert err.value.code == "reason_required"
    wf.refresh_from_db()
    assert wf.stopped_at is None


# -- while stopped -------------------------------------------------------------------------


def test_while_stopped_an_l4_run_the_policy_would_allow_waits_uncounted(agent, owner):
    wf = l4()
    client = agent(wf)
    workflow_stop(workflow=wf, actor=owner, reason="checking a complaint")

    answer = client.post("/runs", refund(wf, "A-1"))

    assert answer.status_code == 201
    run = answer.json()
    assert run["status"] == "pending_review" and run["queue"] == "escalated"
    assert run["escalation_reason"] == "workflow stopped: checking a complaint"
    assert run["policy"] is None and run["decision"] is None
    assert run["workflow_stopped"]["reason"] == "checking a complaint"
    assert run["workflow_stopped"]["at"]
    assert client.get(f"/runs/{run['id']}").json()["workflow_stopped"] == run["workflow_stopped"]
    assert Run.objects.get(pk=run["id"]).held
    # However long the stop, no review deadline decides a held run.
    assert Run.objects.get(pk=run["id"]).deadline_at is None
    deadlines_sweep(now=timezone.now() + timedelta(days=365))
    assert Run.objects.get(pk=run["id"]).status == "pending_review"
    # The policy was not asked: no allowance counted.
    assert PolicyAllowance.objects.count() == 0
    ok, replay = replay_ok(client, run["id"])
    assert ok
    assert replay["run"]["hold"] == [{"reason": "workflow stopped: checking a complaint"}]
    # The same key again is the same run, nothing new.
    again = client.post("/runs", refund(wf, "A-1"))
    assert again.status_code == 200 and again.json()["id"] == run["id"]
    assert again.json()["workflow_stopped"] == run["workflow_stopped"]


def test_a_run_without_a_proposal_is_recorded_as_always(agent, owner):
    wf = l4()
    workflow_stop(workflow=wf, actor=owner, reason="x")
    body = {"workflow": wf.slug, "idempotency_key": "r", "input": {"q": 1}}
    assert agent(wf).post("/runs", body).json()["status"] == "recorded"


def test_an_approved_run_is_neither_executed_nor_swept_nor_claimed_while_stopped(
    agent, owner, django_capture_on_commit_callbacks, monkeypatch
):
    server = WorkflowFactory(rung=3)
    ActionTypeFactory(
        workflow=server,
        executor=Executor.SERVER,
        executor_path="traces.demo_executors.refund_issue",
    )
    by_agent = WorkflowFactory(rung=3)
    ActionTypeFactory(workflow=by_agent)
    client = agent(server, by_agent)
    first = client.post("/runs", refund(server, "S-1")).json()
    second = client.post("/runs", refund(by_agent, "G-1")).json()
    for wf in (server, by_agent):
        workflow_stop(workflow=wf, actor=owner, reason="incident 42")

    # A person may still approve at L3 while stopped; the approval is kept...
    with django_capture_on_commit_callbacks(execute=True):
        approve(first["id"], owner)
    approve(second["id"], owner)

    # ...but the worker's claim finds nothing to claim, and the sweep sends nothing.
    assert Run.objects.get(pk=first["id"]).status == "approved"
    assert DemoLedgerEntry.objects.count() == 0
    execution.run_execute(run_id=first["id"])
    assert Run.objects.get(pk=first["id"]).status == "approved"
    sent = []
    monkeypatch.setattr(execution, "execution_dispatch", lambda run_id: sent.append(run_id))
    Run.objects.filter(pk=first["id"]).update(updated_at="2000-01-01T00:00:00Z")
    execution.execution_sweep()
    assert sent == []
    # The agent executor is told why it waits.
    claim = client.post(f"/runs/{second['id']}/claim")
    assert claim.status_code == 409
    assert claim.json()["error"]["code"] == "workflow_stopped"
    assert "incident 42" in claim.json()["error"]["message"]
    read = client.get(f"/runs/{second['id']}").json()
    assert read["status"] == "approved" and read["workflow_stopped"]["reason"] == "incident 42"

    # Resumed: the server run executes once, the agent's claim goes through.
    monkeypatch.undo()
    with django_capture_on_commit_callbacks(execute=True):
        workflow_resume_release(workflow=server, actor=owner, reason="fixed")
    workflow_resume_release(workflow=by_agent, actor=owner, reason="fixed")
    assert Run.objects.get(pk=first["id"]).status == "executed"
    assert DemoLedgerEntry.objects.count() == 1
    claimed = client.post(f"/runs/{second['id']}/claim")
    assert claimed.status_code == 200 and claimed.json()["workflow_stopped"] is None


# -- resume --------------------------------------------------------------------------------


def test_on_resume_held_runs_are_decided_by_the_policy_and_a_persons_decision_stands(
    agent, owner, django_capture_on_commit_callbacks
):
    wf = l4(executor=Executor.SERVER)
    client = agent(wf)
    workflow_stop(workflow=wf, actor=owner, reason="audit")
    small = client.post("/runs", refund(wf, "A-1", 20)).json()
    large = client.post("/runs", refund(wf, "A-2", 500)).json()
    decided = client.post("/runs", refund(wf, "A-3", 30)).json()
    approve(decided["id"], owner)  # a person decided this one while stopped
    version = Run.objects.get(pk=small["id"]).version

    with django_capture_on_commit_callbacks(execute=True):
        workflow_resume_release(workflow=wf, actor=owner, reason="audit done")

    allowed = Run.objects.get(pk=small["id"])
    assert allowed.status == "executed" and not allowed.held
    assert allowed.decider == "policy" and allowed.decision["by"] == "policy"
    assert allowed.policy["outcome"] == "allow"
    assert allowed.version > version  # a screen opened on the held run is stale
    escalated = Run.objects.get(pk=large["id"])
    assert escalated.status == "pending_review" and escalated.queue == "escalated"
    assert not escalated.held and "200.00" in escalated.escalation_reason
    assert escalated.policy["rules_fired"] == ["cap"] and escalated.deadline_at is not None
    person = Run.objects.get(pk=decided["id"])
    assert person.decider == "person" and not person.held
    assert person.status == "executed"  # approved while stopped: executes once resumed
    assert not TraceEvent.objects.filter(run_id=person.pk, type="policy_decision").exists()
    # Counted now, as a run allowed at submission would have been: the allowed one only.
    assert list(PolicyAllowance.objects.values_list("run_id", flat=True)) == [allowed.pk]
    assert DemoLedgerEntry.objects.count() == 2
    for run in (allowed, escalated, person):
        ok, replay = replay_ok(client, run.pk)
        assert ok, replay["missing"]
    assert replay_ok(client, allowed.pk)[1]["run"]["policy"]["decision"] == "allow"
    # A second release finds nothing held and does nothing twice.
    with django_capture_on_commit_callbacks(execute=True):
        held_sweep()
    assert DemoLedgerEntry.objects.count() == 2


def test_a_held_run_of_a_workflow_resumed_below_l4_stays_for_a_person(agent, owner):
    wf = l4()
    client = agent(wf)
    workflow_stop(workflow=wf, actor=owner, reason="audit")
    run = client.post("/runs", refund(wf, "A-1")).json()
    rung_change(workflow=wf, from_rung=4, to_rung=3, kind="demotion", reason="by hand")

    workflow_resume_release(workflow=wf, actor=owner, reason="done")

    stored = Run.objects.get(pk=run["id"])
    assert stored.status == "pending_review" and stored.queue == "escalated"
    assert not stored.held
    assert stored.escalation_reason == "the workflow resumed at L3: a person decides"
    ok, replay = replay_ok(client, run["id"])
    assert ok and replay["run"]["hold"][-1]["released"] is True


def test_the_sweep_releases_what_a_resume_by_hand_left_held(agent, owner):
    wf = l4()
    client = agent(wf)
    workflow_stop(workflow=wf, actor=owner, reason="audit")
    run = client.post("/runs", refund(wf, "A-1")).json()
    workflow_resume(workflow=wf, actor=owner, reason="resumed without releasing")

    assert held_sweep() == 1

    assert Run.objects.get(pk=run["id"]).status == "approved"
    assert held_sweep() == 0


# -- what agents read ----------------------------------------------------------------------


def test_the_workflow_answer_says_whether_it_is_stopped_but_not_by_whom(agent, owner):
    wf = l4()
    client = agent(wf)
    assert client.get(f"/workflows/{wf.slug}").json()["stopped"] is None

    workflow_stop(workflow=wf, actor=owner, reason="incident 42")

    body = client.get(f"/workflows/{wf.slug}").json()
    assert set(body["stopped"]) == {"at", "reason"}
    assert body["stopped"]["reason"] == "incident 42"
    assert body["rung_history"][0]["kind"] == "stop" and "by" not in body["rung_history"][0]
    assert "owner" not in str(body)
