"""The drift panel on the workflow page and its "Check drift now" button (approvals/
drift_views.py): owners and compliance of an L4/L5 workflow check on demand, with or
without JavaScript; reviewers are refused, strangers do not learn the workflow exists."""

import pytest

from approvals.roles import role_grant
from ladder.models import Alert, DriftCheck
from tests.factories import ActionTypeFactory, WorkflowFactory
from traces.services.drift import drift_check
from traces.services.policy import policy_set

pytestmark = pytest.mark.django_db

HTMX = {"HX-Request": "true"}
POLICY = {
    "audit_sample_rate": 0,
    "rules": [
        {
            "id": "actions",
            "kind": "allow_actions",
            "actions": ["refund.issue", "voucher.issue"],
            "control": "allowed_tools",
        }
    ],
}


@pytest.fixture
def l4(people):
    wf = WorkflowFactory(slug="autonomous", rung=4, drift_bounds={"min_runs": 20})
    ActionTypeFactory(workflow=wf, name="refund.issue")
    ActionTypeFactory(workflow=wf, name="voucher.issue")
    for name, role in (("rev", "reviewer"), ("owner", "owner"), ("compliance", "compliance")):
        role_grant(workflow=wf, user=people[name], role=role, by=None)
    role_grant(workflow=wf, user=people["admin"], role="admin", by=None)
    policy_set(workflow=wf, document=POLICY, by=None)
    return wf


def submit(api, wf, prefix, mix):
    n = 0
    for action, count in mix:
        for _ in range(count):
            n += 1
            response = api.post(
                "/runs",
                {
                    "workflow": wf.slug,
                    "idempotency_key": f"{prefix}-{n}",
                    "input": {"message": "m"},
                    "proposal": {"action": action, "params": {"order_id": "O", "amount": 10}},
                },
            )
            assert response.status_code == 201


@pytest.mark.parametrize(
    ("role", "status"),
    [("rev", 403), ("owner", 302), ("compliance", 302), ("admin", 302), ("stranger", 404)],
)
def test_who_may_check_drift(client, people, l4, role, status):
    client.force_login(people[role])
    response = client.post(f"/workflows/{l4.slug}/drift/check")
    assert response.status_code == status
    assert DriftCheck.objects.filter(workflow=l4).exists() == (status == 302)


def test_an_anonymous_post_goes_to_the_login(client, l4):
    response = client.post(f"/workflows/{l4.slug}/drift/check")
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]
    assert not DriftCheck.objects.exists()


def test_the_button_shows_for_owners_and_compliance_only(client, people, l4):
    for name, shown in (("owner", True), ("compliance", True), ("rev", False)):
        client.force_login(people[name])
        page = client.get(f"/workflows/{l4.slug}/").content.decode()
        assert 'id="drift"' in page and 'id="no-drift"' in page
        assert ('id="check-drift"' in page) is shown


def test_a_check_without_javascript_redirects_to_the_panel_with_the_breach(
    client, people, l4, agent, clock
):
    api = agent(l4)
    submit(api, l4, "base", [("refund.issue", 30), ("voucher.issue", 10)])
    clock.advance(10 * 86400)
    submit(api, l4, "recent", [("refund.issue", 5), ("voucher.issue", 15)])
    client.force_login(people["owner"])
    response = client.post(f"/workflows/{l4.slug}/drift/check", follow=True)
    assert response.redirect_chain[-1][0].endswith(f"/workflows/{l4.slug}/#drift")
    page = response.content.decode()
    assert "action mix drifted" in page
    assert "Drift alert:</b> action mix changed" in page
    assert 'data-check="action_mix" class="verdict-fail"' in page
    assert "chi-square 13.71 on 1 degree of freedom" in page
    assert "checked on demand by owner" in page
    check = DriftCheck.objects.get(workflow=l4)
    assert check.requested_by == people["owner"] and check.trigger == "on_demand"
    assert Alert.objects.filter(workflow=l4, kind="drift").count() == 1


def test_an_htmx_check_returns_the_panel_alone(client, people, l4):
    client.force_login(people["compliance"])
    response = client.post(f"/workflows/{l4.slug}/drift/check", headers=HTMX)
    assert response.status_code == 200
    html = response.content.decode()
    assert html.lstrip().startswith('<section id="drift"') and "<html" not in html
    assert html.count("too few to judge") == 4 and 'id="drift-alert"' not in html


def test_below_l4_there_is_no_panel_and_no_check(client, people, flows):
    wf = flows["l3"]
    client.force_login(people["owner"])
    assert 'id="drift"' not in client.get(f"/workflows/{wf.slug}/").content.decode()
    response = client.post(f"/workflows/{wf.slug}/drift/check", follow=True)
    assert "Drift is checked at L4 and L5" in response.content.decode()
    assert not DriftCheck.objects.exists()


def test_the_panel_says_when_a_check_was_made_at_another_rung(client, people, l4):
    drift_check(workflow=l4, trigger=DriftCheck.Trigger.COMMAND)
    l4.rung = 5
    l4.save(update_fields=["rung"])
    client.force_login(people["rev"])
    page = client.get(f"/workflows/{l4.slug}/").content.decode()
    assert 'id="drift-stale"' in page and "made at L4" in page
