"""Going down, in a real browser: an L4 workflow whose agent reports failures is dropped
to L3 by the breaker, and its owner reads why on the workflow page (the alert, and the
history with its numbers); then moves it further down by hand, with a reason, without
JavaScript."""

import httpx
import pytest
from django.contrib.auth.models import User
from playwright.sync_api import expect

from approvals.roles import role_grant
from ladder.models import ActionType, RungChange, Workflow
from ladder.rungs import Executor
from tests.browser.support import PASSWORD, screenshot, sign_in
from tests.factories import certify
from traces.services.policy import policy_set
from traces.services.tokens import token_create

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

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


def agent_reports(url: str, token: str, wf: Workflow, n: int, *, succeeded: bool) -> dict:
    """One run through the gateway, claimed and reported by the agent over HTTP."""
    auth = {"Authorization": f"Bearer {token}"}
    run = httpx.post(
        f"{url}/api/v1/runs",
        json={
            "workflow": wf.slug,
            "idempotency_key": f"ship-{n}",
            "input": {"order": f"A-{n}"},
            "proposal": {"action": "notify.send", "params": {"order": f"A-{n}"}},
        },
        headers=auth,
        timeout=10,
    ).json()
    assert run["status"] == "approved", run
    assert (
        httpx.post(f"{url}/api/v1/runs/{run['id']}/claim", headers=auth, timeout=10).status_code
        == 200
    )
    result = (
        {"status": "succeeded"} if succeeded else {"status": "failed", "error": "carrier API down"}
    )
    assert (
        httpx.post(
            f"{url}/api/v1/runs/{run['id']}/result", json=result, headers=auth, timeout=10
        ).status_code
        == 200
    )
    return run


def test_the_breaker_drops_a_failing_workflow_and_its_owner_moves_it_down_by_hand(
    new_context, live_server
):
    owner = User.objects.create_user(username="owner", password=PASSWORD, email="o@example.com")
    wf = Workflow.objects.create(
        slug="shipping-update",
        name="Shipping update",
        rung=4,
        owner=owner,
        breaker_bounds={"window_runs": 20},
    )
    ActionType.objects.create(workflow=wf, name="notify.send", executor=Executor.AGENT)
    role_grant(workflow=wf, user=owner, role="owner", by=None)
    policy_set(workflow=wf, document=ALLOW, by=None)
    certify(wf)
    _, token = token_create(name="shipper", workflows=[wf])
    for n in range(4):
        agent_reports(live_server.url, token, wf, n, succeeded=True)
    for n in range(4, 7):
        agent_reports(live_server.url, token, wf, n, succeeded=False)
    # 3 of 7 failed: Wilson lower bound 0.158 > 0.10.
    assert Workflow.objects.get(pk=wf.pk).rung == 3

    ctx = new_context(java_script_enabled=False)
    sign_in(ctx, owner, live_server)
    page = ctx.new_page()
    page.goto(f"{live_server.url}/workflows/{wf.slug}/")
    expect(page.locator("ol.ladder li[aria-current=step]")).to_contain_text("L3")
    alert = page.locator("#alerts li").first
    expect(alert).to_contain_text("Shipping update dropped to L3: the breaker tripped")
    expect(alert).to_contain_text("3 of the last 7 executed runs failed")
    row = page.locator("#rung-history tr[data-cause=breaker]")
    expect(row).to_contain_text("Demotion: the breaker tripped: L4 → L3")
    expect(row).to_contain_text("failures 3; executed runs 7")
    expect(row).to_contain_text("the system")

    # Without JavaScript the details element is opened by clicking its summary.
    page.get_by_text("Move this workflow down").click()
    page.get_by_label("Move to").select_option("L1")
    page.get_by_label("Reason").fill(
        "Carrier integration is being rebuilt: drafts until it is stable"
    )
    screenshot(page, "workflow-demote.png")
    page.get_by_role("button", name="Move down").click()
    expect(page.locator(".messages, .msg").first).to_contain_text("moved from L3 to L1")
    expect(page.locator("ol.ladder li[aria-current=step]")).to_contain_text("L1")
    by_hand = page.locator("#rung-history tr[data-cause=by_hand]")
    expect(by_hand).to_contain_text("Demotion by hand: L3 → L1")
    expect(by_hand).to_contain_text("Carrier integration is being rebuilt")
    expect(by_hand).to_contain_text("owner")
    expect(page.locator("#certificate-above")).to_contain_text(
        "This certificate is for L4; the workflow was moved down to L1 since"
    )
    screenshot(page, "workflow-rung-history.png")
    assert RungChange.objects.filter(workflow=wf, kind="demotion").count() == 2
