"""In the browser: an owner sets the review deadline, the queue shows the time left, and a
reviewer audits an action the policy allowed, from the menu to the mark. Runs go through
the real gateway over HTTP; the assertions read what the pages show."""

import httpx
import pytest
from playwright.sync_api import expect

from approvals.roles import role_grant
from ladder.models import ActionType, Workflow
from ladder.rungs import Rung
from tests.browser.support import sign_in
from tests.factories import certify
from traces.models import Run
from traces.services.policy import policy_set
from traces.services.tokens import token_create

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

ENVELOPE = {
    "audit_sample_rate": 1,
    "rules": [
        {
            "id": "actions",
            "kind": "allow_actions",
            "actions": ["notify.send"],
            "control": "allowed_tools",
        }
    ],
}


def test_an_owner_sets_the_deadline_and_the_queue_shows_the_time_left(
    page, live_server, ladder, make_reviewer
):
    owner = make_reviewer("owner")
    role_grant(workflow=ladder.l3, user=owner, role="owner", by=None)
    sign_in(page.context, owner, live_server)
    page.goto(f"{live_server.url}/workflows/{ladder.l3.slug}/settings")
    expect(page.locator("main")).to_contain_text("a run waits at most 3 days")

    page.fill("input[name=amount]", "31")
    page.select_option("select[name=unit]", label="days")
    page.click("form.settings-form button[type=submit]")
    expect(page.locator(".field-error")).to_have_text("From 1 min to 30 days; 31 days is too long.")
    expect(page.locator("input[name=amount]")).to_have_value("31")

    page.fill("input[name=amount]", "90")
    page.select_option("select[name=unit]", label="minutes")
    page.check("input[name=action][value=escalate]")
    page.click("form.settings-form button[type=submit]")
    expect(page.locator(".messages")).to_contain_text("Settings of support-refund saved.")
    expect(page.locator("main")).to_contain_text("a run waits at most 1 h 30 min")
    expect(page.locator("input[name=action][value=escalate]")).to_be_checked()

    ladder.submit(3)
    sign_in(page.context, ladder.reviewer, live_server)
    page.goto(f"{live_server.url}/")
    expect(page.locator("td.deadline")).to_have_text("1 h 29 min left")
    page.locator("tr[data-row] a.open").click()
    expect(page.locator(".meta.deadline")).to_contain_text(
        "undecided by then, it is escalated by the deadline."
    )


def test_a_reviewer_audits_an_allowed_action_from_the_menu(page, live_server, ladder):
    wf = Workflow.objects.create(slug="shipping-update", name="Shipping update", rung=Rung.L4)
    ActionType.objects.create(
        workflow=wf, name="notify.send", param_schema={"order_id": {"type": "string"}}
    )
    policy_set(workflow=wf, document=ENVELOPE, by=None)
    certify(wf)
    role_grant(workflow=wf, user=ladder.reviewer, role="reviewer", by=None)
    _token, raw = token_create(name="l4 agent", workflows=[wf])
    api = httpx.Client(
        base_url=f"{live_server.url}/api/v1", headers={"Authorization": f"Bearer {raw}"}
    )
    run = api.post(
        "/runs",
        json={
            "workflow": wf.slug,
            "idempotency_key": "ship-1",
            "input": {"message": "where is A-7?"},
            "proposal": {"action": "notify.send", "params": {"order_id": "A-7"}},
        },
    ).json()
    assert run["status"] == "approved"
    assert api.post(f"/runs/{run['id']}/claim").status_code == 200
    assert (
        api.post(
            f"/runs/{run['id']}/result", json={"status": "succeeded", "output": {"sent": True}}
        ).status_code
        == 200
    )

    sign_in(page.context, ladder.reviewer, live_server)
    page.goto(f"{live_server.url}/")
    menu = page.locator("nav[aria-label=Main] a", has_text="Audit")
    expect(menu).to_have_text("Audit 1")
    menu.click()
    expect(page.locator("tr[data-row]")).to_have_count(1)
    page.locator("tr[data-row] a.open").click()
    expect(page.locator("pre.action")).to_contain_text('"order_id": "A-7"')
    expect(page.locator("main")).to_contain_text("Any action other than notify.send is refused.")
    expect(page.locator("main")).to_contain_text('"sent": true')

    page.click("button[value=wrong]")
    expect(page.locator(".msg.error")).to_have_text("say what was wrong")
    page.fill("textarea[name=note]", "sent to the wrong customer")
    page.click("button[value=wrong]")
    expect(page.locator(".messages")).to_contain_text("Marked wrong.")
    expect(page.locator(".empty")).to_have_text("No audit waits for you.")
    expect(menu).to_have_text("Audit 0")
    stored = Run.objects.get(pk=run["id"])
    assert (stored.audit, stored.outcome) == ("wrong", "wrong")
    assert api.get(f"/runs/{run['id']}").json()["outcome"] == "wrong"
