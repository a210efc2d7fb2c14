"""Drift checks of L4/L5 workflows over runs submitted through the agent API
(traces/services/drift.py; docs/drift.md): a shifted action mix alerts the owners, trips
the breaker only where the workflow says so, and L5 is held to continuous evals. Time
moves with the `clock` fixture: baseline runs are submitted, then ten days pass."""

import json

import pytest
from django.core.management import call_command

from approvals.roles import role_grant
from ladder.models import Alert, DriftCheck, RungChange, Workflow
from tests.factories import ActionTypeFactory, UserFactory, WorkflowFactory
from traces.models import Run
from traces.services.drift import drift_check, drift_check_all, evals_check
from traces.services.evals import eval_cases_import
from traces.services.policy import policy_set

pytestmark = pytest.mark.django_db

DAY = 86400
POLICY = {
    "audit_sample_rate": 0,
    "rules": [
        {
            "id": "actions",
            "kind": "allow_actions",
            "actions": ["refund.issue", "voucher.issue"],
            "control": "allowed_tools",
        },
        {
            "id": "cap",
            "kind": "value_cap",
            "action": "refund.issue",
            "max": "100.00",
            "currency": "EUR",
            "then": "escalate",
            "control": "value_cap",
        },
    ],
}


@pytest.fixture
def owner(db):
    return UserFactory(username="owner", email="owner@example.com")


@pytest.fixture
def workflow(owner):
    def make(*, rung=4, breaker_bounds=None, drift_bounds=None):
        wf = WorkflowFactory(
            slug=f"refunds-l{rung}",
            rung=rung,
            max_rung=5,
            breaker_bounds=breaker_bounds or {},
            # Small windows keep the test quick; the defaults ask for 50 runs a side.
            drift_bounds=drift_bounds if drift_bounds is not None else {"min_runs": 20},
        )
        ActionTypeFactory(workflow=wf, name="refund.issue")
        ActionTypeFactory(workflow=wf, name="voucher.issue")
        role_grant(workflow=wf, user=owner, role="owner", by=None)
        policy_set(workflow=wf, document=POLICY, by=None)
        return wf

    return make


def submit(api, wf, prefix, mix):
    """Submit runs through the gateway: mix is [(action, amount, how many), ...]."""
    n = 0
    for action, amount, count in mix:
        for _ in range(count):
            n += 1
            response = api.post(
                "/runs",
                {
                    "workflow": wf.slug,
                    "idempotency_key": f"{prefix}-{n}",
                    "input": {"message": f"customer {prefix} {n}"},
                    "proposal": {
                        "action": action,
                        "params": {"order_id": f"O-{n}", "amount": amount, "currency": "EUR"},
                    },
                },
            )
            assert response.status_code == 201, response.content


def shifted(api, wf, clock):
    """30 refunds and 10 vouchers, then ten days later 5 refunds and 15 vouchers.
    Chi-square: rows 40 | 20, columns 35 | 25, N = 60; expected 23.33 | 11.67 and
    16.67 | 8.33; statistic = 6.667² (1/23.33 + 1/11.67 + 1/16.67 + 1/8.33) = 13.714,
    dof 1, p = 0.0002 < 0.01."""
    submit(api, wf, "base", [("refund.issue", 20.0, 30), ("voucher.issue", 20.0, 10)])
    clock.advance(10 * DAY)
    submit(api, wf, "recent", [("refund.issue", 20.0, 5), ("voucher.issue", 20.0, 15)])


def test_a_shifted_action_mix_alerts_the_owners_and_leaves_the_rung(
    workflow, agent, clock, mailoutbox, django_capture_on_commit_callbacks
):
    wf = workflow()
    shifted(agent(wf), wf, clock)
    with django_capture_on_commit_callbacks(execute=True):
        check = drift_check(workflow=wf, trigger=DriftCheck.Trigger.ON_DEMAND)
    assert check.breached
    mix = {c["name"]: c for c in check.checks}["action_mix"]
    assert mix["breached"] and mix["detail"]["statistic"] == pytest.approx(13.714, abs=1e-3)
    assert mix["detail"]["baseline"] == {"refund.issue": 30, "voucher.issue": 10}
    assert mix["detail"]["recent"] == {"refund.issue": 5, "voucher.issue": 15}
    # Same values and no escalations either side: those checks hold.
    verdicts = {c["name"]: c["verdict"] for c in check.checks}
    assert verdicts == {
        "action_mix": "breach",
        "value": "ok",
        "escalation_rate": "ok",
        "audit_agreement": "insufficient",
    }
    alert = Alert.objects.get(workflow=wf)
    assert alert.kind == Alert.Kind.DRIFT and "action mix" in alert.subject
    assert alert.evidence["drift_check"] == check.pk
    assert [m.to for m in mailoutbox] == [["owner@example.com"]]
    assert "chi-square 13.71" in mailoutbox[0].body
    wf.refresh_from_db()
    assert wf.rung == 4  # drift_trips is off by default
    assert not RungChange.objects.filter(workflow=wf, kind="demotion").exists()
    # The same breach again: stored, but the owners are not told twice.
    again = drift_check(workflow=wf, trigger=DriftCheck.Trigger.ON_DEMAND)
    assert again.breached and Alert.objects.filter(workflow=wf).count() == 1


def test_drift_trips_the_breaker_where_the_workflow_says_so(
    workflow, agent, clock, mailoutbox, django_capture_on_commit_callbacks
):
    wf = workflow(breaker_bounds={"drift_trips": True})
    api = agent(wf)
    shifted(api, wf, clock)
    with django_capture_on_commit_callbacks(execute=True):
        check = drift_check(workflow=wf, trigger=DriftCheck.Trigger.NIGHTLY)
    wf.refresh_from_db()
    assert wf.rung == 3
    demotion = RungChange.objects.get(workflow=wf, kind="demotion")
    assert demotion.from_rung == 4 and demotion.evidence["breaker"] == "drift"
    assert demotion.evidence["drift_check"] == check.pk
    assert "action mix" in demotion.reason
    kinds = sorted(Alert.objects.filter(workflow=wf).values_list("kind", flat=True))
    assert kinds == ["demotion", "drift"]
    # The agent's very next run waits for a person.
    response = api.post(
        "/runs",
        {
            "workflow": wf.slug,
            "idempotency_key": "after",
            "input": {"message": "x"},
            "proposal": {"action": "voucher.issue", "params": {"order_id": "O", "amount": 5}},
        },
    )
    assert response.json()["status"] == "pending_review"
    # Below L4 nothing is checked.
    assert drift_check(workflow=wf, trigger=DriftCheck.Trigger.NIGHTLY) is None


def test_a_steady_workflow_raises_nothing(workflow, agent, clock, mailoutbox):
    wf = workflow(breaker_bounds={"drift_trips": True})
    api = agent(wf)
    mix = [("refund.issue", 20.0, 20), ("refund.issue", 150.0, 5), ("voucher.issue", 20.0, 15)]
    submit(api, wf, "base", mix)
    clock.advance(10 * DAY)
    submit(api, wf, "recent", mix)
    check = drift_check(workflow=wf, trigger=DriftCheck.Trigger.COMMAND)
    assert not check.breached
    checks = {c["name"]: c for c in check.checks}
    # 5 of 40 escalated by the value cap, both windows.
    assert checks["escalation_rate"]["value"] == 0 and checks["escalation_rate"]["verdict"] == "ok"
    assert checks["escalation_rate"]["detail"]["recent"] == {"k": 5, "n": 40}
    assert not Alert.objects.filter(workflow=wf).exists() and not mailoutbox
    assert Workflow.objects.get(pk=wf.pk).rung == 4


def test_too_few_runs_is_insufficient_and_silent(workflow, agent, clock, mailoutbox):
    wf = workflow(drift_bounds={})  # the defaults: 50 runs a side
    shifted(agent(wf), wf, clock)
    check = drift_check(workflow=wf, trigger=DriftCheck.Trigger.COMMAND)
    assert not check.breached
    assert {c["verdict"] for c in check.checks} == {"insufficient"}
    assert not Alert.objects.exists()


def test_the_escalation_rate_change_is_counted_from_the_policys_decisions(workflow, agent, clock):
    wf = workflow()
    api = agent(wf)
    # 2 of 40 escalated (amount above the 100 EUR cap), then 16 of 40.
    # Change +35 points; pooled 18/80 = 0.225: se = sqrt(0.225 · 0.775 · (1/40 + 1/40))
    # = 0.0933742, z = 0.35 / 0.0933742 = 3.7484.
    submit(api, wf, "base", [("refund.issue", 20.0, 38), ("refund.issue", 500.0, 2)])
    clock.advance(10 * DAY)
    submit(api, wf, "recent", [("refund.issue", 20.0, 24), ("refund.issue", 500.0, 16)])
    assert Run.objects.filter(workflow=wf, queue="escalated").count() == 18
    check = drift_check(workflow=wf, trigger=DriftCheck.Trigger.COMMAND)
    rate = {c["name"]: c for c in check.checks}["escalation_rate"]
    assert rate["breached"] and rate["value"] == pytest.approx(0.35)
    assert rate["detail"]["baseline"] == {"k": 2, "n": 40}
    assert rate["detail"]["z"] == pytest.approx(3.7484, abs=1e-4)


def test_the_nightly_task_and_the_command_check_every_l4_and_l5_workflow(
    workflow, agent, clock, make_workflow
):
    wf = workflow()
    low = make_workflow(rung=3)
    shifted(agent(wf), wf, clock)
    from traces.tasks import check_drift

    assert check_drift() == 1
    assert DriftCheck.objects.get(workflow=wf).trigger == "nightly"
    call_command("drift_check", "--quiet")
    call_command("drift_check", wf.slug, "--quiet")
    assert DriftCheck.objects.filter(workflow=wf).count() == 3
    assert not DriftCheck.objects.filter(workflow=low).exists()
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="L4 and L5 only"):
        call_command("drift_check", low.slug)


def test_drift_checks_are_append_only(workflow):
    from django.db import IntegrityError, transaction

    wf = workflow()
    check = drift_check(workflow=wf, trigger=DriftCheck.Trigger.COMMAND)
    with pytest.raises(IntegrityError), transaction.atomic():
        DriftCheck.objects.filter(pk=check.pk).update(breached=True)
    with pytest.raises(IntegrityError), transaction.atomic():
        DriftCheck.objects.filter(pk=check.pk).delete()


def test_the_workflow_api_shows_the_latest_drift_check(workflow, agent, clock):
    wf = workflow()
    api = agent(wf)
    assert api.get(f"/workflows/{wf.slug}").json()["drift"] is None
    shifted(api, wf, clock)
    drift_check(workflow=wf, trigger=DriftCheck.Trigger.COMMAND)
    body = api.get(f"/workflows/{wf.slug}").json()["drift"]
    assert body["breached"] is True and body["rung"] == 4
    assert [c["name"] for c in body["checks"]] == [
        "action_mix",
        "value",
        "escalation_rate",
        "audit_agreement",
    ]
    assert (
        body["checks"][0]["verdict"] == "breach" and "chi-square" in body["checks"][0]["sentence"]
    )


# -- L5: continuous evals -------------------------------------------------------------------


def eval_pass(api, wf, *, cases, matched, label):
    """An eval pass through the agent API: `matched` of the cases answered as expected."""
    for i, case in enumerate(cases):
        amount = case.expected_params["amount"] if i < matched else 999
        response = api.post(
            "/runs",
            {
                "workflow": wf.slug,
                "idempotency_key": f"{label}-{case.pk}",
                "input": case.input,
                "proposal": {
                    "action": "refund.issue",
                    "params": {**case.expected_params, "amount": amount},
                },
                "eval_case": case.pk,
                "eval_pass": label,
            },
        )
        assert response.status_code in (200, 201), response.content


@pytest.fixture
def l5(workflow):
    wf = workflow(rung=5)
    lines = [
        {
            "input": {"ticket": f"refund order A-{i}"},
            "expected": {"action": "refund.issue", "params": {"order_id": f"A-{i}", "amount": 30}},
        }
        for i in range(40)
    ]
    text = "\n".join(json.dumps(line) for line in lines) + "\n"
    return wf, eval_cases_import(workflow=wf, text=text, by=None)


def test_l5_stays_while_its_evals_are_fresh_and_at_the_bar(l5, agent):
    wf, cases = l5
    # 40 of 40: Wilson lower bound 0.912 >= the 0.90 eval bar.
    eval_pass(agent(wf), wf, cases=cases, matched=40, label="p1")
    assert evals_check(workflow=wf) is None
    drift_check_all(trigger=DriftCheck.Trigger.NIGHTLY)
    assert Workflow.objects.get(pk=wf.pk).rung == 5


def test_a_stale_eval_pass_drops_l5_to_l4(l5, agent, clock, mailoutbox):
    wf, cases = l5
    eval_pass(agent(wf), wf, cases=cases, matched=40, label="p1")
    clock.advance(8 * DAY)  # the bound is 7 days
    drift_check_all(trigger=DriftCheck.Trigger.NIGHTLY)
    wf.refresh_from_db()
    assert wf.rung == 4
    demotion = RungChange.objects.get(workflow=wf, kind="demotion")
    assert demotion.evidence["breaker"] == "evals" and demotion.evidence["age_days"] > 7
    assert "days old" in demotion.reason


def test_an_eval_pass_below_the_bar_drops_l5_to_l4(l5, agent):
    wf, cases = l5
    eval_pass(agent(wf), wf, cases=cases, matched=30, label="p1")  # lower bound 0.60
    change = evals_check(workflow=wf)
    assert change is not None and change.to_rung == 4
    assert change.evidence["matched"] == 30 and change.evidence["total"] == 40


def test_l5_without_any_eval_pass_drops_to_l4(workflow):
    wf = workflow(rung=5)
    check = drift_check(workflow=wf, trigger=DriftCheck.Trigger.ON_DEMAND)
    assert check.rung == 5
    assert Workflow.objects.get(pk=wf.pk).rung == 4
