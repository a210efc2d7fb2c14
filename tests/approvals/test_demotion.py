"""Moving a workflow down: by hand from its page (owners and compliance, a reason, no
evidence), and by the breaker when an L4 workflow's executions fail; both are recorded
with why and told to the workflow's people, on the page and by mail."""

import pytest
from django.core import mail

from approvals.roles import role_grant
from ladder.models import Alert, RungChange, Workflow
from ladder.rungs import Executor
from tests.factories import ActionTypeFactory, UserFactory, WorkflowFactory
from traces.auth import AgentAuth
from traces.services.agent import run_claim, run_record_outcome, run_report_result
from traces.services.gateway import run_submit
from traces.services.policy import policy_set

pytestmark = pytest.mark.django_db


@pytest.fixture
def mailed(people):
    for user in people.values():
        user.email = f"{user.username}@example.com"
        user.save()
    return people


def test_an_owner_moves_a_workflow_down_with_a_reason_and_everyone_is_told(
    client, flows, mailed, submit, django_capture_on_commit_callbacks
):
    wf = flows["l3"]
    client.force_login(mailed["owner"])
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            f"/workflows/{wf.slug}/demote",
            {"to_rung": "1", "reason": "the refund agent was retrained; drafts first"},
        )
    assert response.status_code == 302
    wf.refresh_from_db()
    assert wf.rung == 1
    change = RungChange.objects.get(workflow=wf, kind="demotion")
    assert (change.from_rung, change.to_rung, change.actor) == (3, 1, mailed["owner"])
    assert change.evidence == {"cause": "by_hand"}
    # The very next run is a draft for a person.
    run = submit("l3")
    assert (run.rung, run.queue) == (1, "l1")
    # Owners and compliance got the mail; reviewers did not.
    assert len(mail.outbox) == 1
    sent = mail.outbox[0]
    assert sorted(sent.to) == [
        "admin@example.com",
        "compliance@example.com",
        "owner@example.com",
    ]
    assert sent.subject == f"[{wf.slug}] {wf.name} moved down to L1 by owner"
    assert "the refund agent was retrained" in sent.body
    page = client.get(f"/workflows/{wf.slug}/").content.decode()
    assert "Demotion by hand: L3 → L1" in page
    assert 'id="certificate-above"' not in page  # an L3 workflow made here has none
    assert "moved down to L1 by owner" in page  # the alert


def test_a_demotion_needs_a_reason_and_a_lower_rung_and_keeps_what_was_typed(client, flows, people):
    wf = flows["l2"]
    client.force_login(people["compliance"])
    response = client.post(f"/workflows/{wf.slug}/demote", {"to_rung": "1", "reason": "  "})
    assert response.status_code == 422
    assert "a rung change needs a reason" in response.content.decode()
    response = client.post(f"/workflows/{wf.slug}/demote", {"to_rung": "2", "reason": "why not"})
    assert response.status_code == 422
    page = response.content.decode()
    assert "a demotion goes to a lower rung" in page and "why not</textarea>" in page
    wf.refresh_from_db()
    assert wf.rung == 2 and not RungChange.objects.filter(workflow=wf).exists()


def test_reviewers_cannot_move_a_workflow_down_and_strangers_do_not_see_it(client, flows, people):
    wf = flows["l3"]
    client.force_login(people["rev"])
    assert 'id="demote-form"' not in client.get(f"/workflows/{wf.slug}/").content.decode()
    assert (
        client.post(f"/workflows/{wf.slug}/demote", {"to_rung": "1", "reason": "x"}).status_code
        == 403
    )
    client.force_login(people["stranger"])
    assert (
        client.post(f"/workflows/{wf.slug}/demote", {"to_rung": "1", "reason": "x"}).status_code
        == 404
    )
    assert Workflow.objects.get(pk=wf.pk).rung == 3


ALLOW = {
    "audit_sample_rate": 0,
    "rules": [
        {
            "id": "actions",
            "kind": "allow_actions",
            "actions": ["notify.send"],
            "control": "allowed_tools",
        }
    ],
}


def test_failed_agent_results_trip_the_breaker_and_owners_and_compliance_are_mailed(
    django_capture_on_commit_callbacks,
):
    owner = UserFactory(username="ola", email="ola@example.com")
    officer = UserFactory(username="cora", email="cora@example.com")
    wf = WorkflowFactory(rung=4, owner=owner)
    role_grant(workflow=wf, user=officer, role="compliance", by=None)
    ActionTypeFactory(workflow=wf, name="notify.send", param_schema={}, executor=Executor.AGENT)
    policy_set(workflow=wf, document=ALLOW, by=None)
    wf.refresh_from_db()
    auth = AgentAuth(token_id=0, prefix="lat_test", workflow_ids=frozenset({wf.id}))

    def one(i, succeeded):
        run, _ = run_submit(
            auth=auth,
            body={
                "workflow": wf.slug,
                "idempotency_key": f"k{i}",
                "input": {"n": i},
                "tool_calls": None,
                "output": None,
                "proposal": {"action": "notify.send", "params": {"n": i}},
            },
        )
        assert (run.rung, run.status) == (4, "approved")
        with django_capture_on_commit_callbacks(execute=True):
            run_claim(auth=auth, run=run)
            run_report_result(
                auth=auth, run=run, succeeded=succeeded, error=None if succeeded else "down"
            )
        return run

    good = [one(i, True) for i in range(5)]
    one(5, False)
    one(6, False)
    assert Workflow.objects.get(pk=wf.pk).rung == 4  # 2 of 7: lower bound 0.082 <= 0.10
    one(7, False)  # 3 of 8: lower bound 0.137
    assert Workflow.objects.get(pk=wf.pk).rung == 3
    change = RungChange.objects.get(workflow=wf, kind="demotion")
    assert change.evidence["failures"] == 3 and change.evidence["executed"] == 8
    assert "3 of the last 8 executed runs failed" in change.reason
    assert len(mail.outbox) == 1 and sorted(mail.outbox[0].to) == [
        "cora@example.com",
        "ola@example.com",
    ]
    assert Alert.objects.filter(workflow=wf, kind="demotion").count() == 1
    # More bad news about L4 runs changes nothing: the workflow is at L3, no breaker there.
    with django_capture_on_commit_callbacks(execute=True):
        run_record_outcome(actor="agent", run=good[0], label="wrong", source="crm")
    assert RungChange.objects.filter(workflow=wf).count() == 1


def test_owners_tighten_the_breaker_on_the_settings_page_and_cannot_loosen_it(
    client, flows, people
):
    wf = flows["l3"]
    client.force_login(people["owner"])
    page = client.get(f"/workflows/{wf.slug}/settings").content.decode()
    assert 'name="window_runs"' in page and 'value="50"' in page
    form = {
        "form": "breaker",
        "window_runs": "30",
        "failure_percent": "5",
        "drift_trips": "on",
        "eval_max_age_days": "3",
    }
    assert client.post(f"/workflows/{wf.slug}/settings", form).status_code == 302
    wf.refresh_from_db()
    assert wf.breaker_bounds == {
        "window_runs": 30,
        "failure_rate_max": 0.05,
        "drift_trips": True,
        "eval_max_age_days": 3,
    }
    looser = client.post(f"/workflows/{wf.slug}/settings", form | {"failure_percent": "25"})
    assert looser.status_code == 422
    assert "Ensure this value is less than or equal to 10" in looser.content.decode()
    wf.refresh_from_db()
    assert wf.breaker_bounds["failure_rate_max"] == 0.05
    client.force_login(people["compliance"])
    assert client.post(f"/workflows/{wf.slug}/settings", form).status_code == 403


def test_the_service_refuses_a_looser_breaker_even_without_the_form(flows, people):
    from approvals.services import workflow_breaker_set
    from ladder.errors import Unprocessable

    with pytest.raises(Unprocessable, match="only an admin can set that"):
        workflow_breaker_set(
            workflow=flows["l3"], bounds={"replay_coverage_min": 0.5}, by=people["owner"]
        )
    with pytest.raises(Unprocessable, match="unknown bound"):
        workflow_breaker_set(workflow=flows["l3"], bounds={"speed": 1}, by=people["owner"])
