"""The stop button and the rollback drill button in a real browser.

An owner stops an L4 workflow with one click: the agent's next run waits with "workflow
stopped" and cannot be claimed; the owner resumes it and the waiting run is decided by
the policy and can be carried out. An owner runs a rollback drill from the workflow page
and reads its result; the L3 -> L4 rollback gate then passes."""

import httpx
import pytest
from django.contrib.auth.models import User
from playwright.sync_api import expect

from approvals.roles import role_grant
from ladder.models import ActionType, RungChange, Workflow
from ladder.rungs import Executor
from tests.browser.support import PASSWORD, screenshot, sign_in
from tests.factories import certify
from tests.traces.drills_setup import approve, refund_body, refunds_workflow
from traces.models import DemoLedgerEntry, Run
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


def test_an_owner_stops_a_workflow_with_one_click_and_resumes_it(new_context, live_server):
    owner = User.objects.create_user(username="owner", password=PASSWORD)
    wf = Workflow.objects.create(
        slug="shipping-update", name="Shipping update", rung=4, owner=owner
    )
    ActionType.objects.create(workflow=wf, name="notify.send", executor=Executor.AGENT)
    role_grant(workflow=wf, user=owner, role="owner", by=None)
    policy_set(workflow=wf, document=ALLOW, by=None)
    certify(wf)
    _, token = token_create(name="shipper", workflows=[wf])
    api = httpx.Client(
        base_url=f"{live_server.url}/api/v1", headers={"Authorization": f"Bearer {token}"}
    )

    ctx = new_context()
    sign_in(ctx, owner, live_server)
    page = ctx.new_page()
    page.goto(f"{live_server.url}/workflows/{wf.slug}/")
    page.get_by_label("Why stop").fill("Carrier sends wrong tracking links")
    page.get_by_role("button", name="Stop workflow").click()
    banner = page.locator(".stop-banner")
    expect(banner).to_contain_text("Stopped by owner")
    expect(banner).to_contain_text("Carrier sends wrong tracking links")
    assert api.get(f"/workflows/{wf.slug}").json()["stopped"]["reason"] == (
        "Carrier sends wrong tracking links"
    )

    # The agent's next run waits, says why, and cannot be carried out.
    run = api.post(
        "/runs",
        json={
            "workflow": wf.slug,
            "idempotency_key": "parcel-1",
            "input": {"order": "A-1"},
            "proposal": {"action": "notify.send", "params": {"order": "A-1"}},
        },
    ).json()
    assert run["status"] == "pending_review", run
    assert run["escalation_reason"].startswith("workflow stopped: Carrier sends wrong tracking")
    assert api.post(f"/runs/{run['id']}/claim").json()["error"]["code"] in (
        "not_approved",
        "workflow_stopped",
    )
    screenshot(page, "workflow-stopped.png")

    page.get_by_label("Why resume").fill("Carrier fixed the links")
    page.get_by_role("button", name="Resume workflow").click()
    expect(page.locator(".stop-banner")).to_have_count(0)
    expect(page.get_by_role("button", name="Stop workflow")).to_be_visible()
    history = page.locator("#rung-history")
    expect(history.locator("tr[data-cause=stop]")).to_contain_text("Stopped at L4")
    expect(history.locator("tr[data-cause=resume]")).to_contain_text("Carrier fixed the links")
    # The waiting run was decided by the policy at resume: the agent carries it out once.
    answer = api.get(f"/runs/{run['id']}").json()
    assert answer["status"] == "approved" and answer["workflow_stopped"] is None, answer
    assert api.post(f"/runs/{run['id']}/claim").status_code == 200
    assert api.post(f"/runs/{run['id']}/claim").status_code == 409
    kinds = list(RungChange.objects.filter(workflow=wf).values_list("kind", flat=True))
    assert sorted(kinds) == ["resume", "stop"]
    assert Workflow.objects.get(pk=wf.pk).rung == 4


def test_an_owner_runs_a_rollback_drill_from_the_workflow_page(new_context, live_server):
    wf, people = refunds_workflow(slug="support-refund")
    people["owner"].set_password(PASSWORD)
    people["owner"].save()
    _, token = token_create(name="refunds", workflows=[wf])
    ids = []
    for i in range(6):
        resp = httpx.post(
            f"{live_server.url}/api/v1/runs",
            json=refund_body(wf, f"order-{i}"),
            headers={"Authorization": f"Bearer {token}"},
        )
        assert resp.status_code == 201, resp.text
        ids.append(resp.json()["id"])
        approve(ids[-1], people["rev"])  # executed at once: Celery runs eagerly here
    assert Run.objects.filter(pk__in=ids, status="executed").count() == 6

    ctx = new_context()
    sign_in(ctx, people["owner"], live_server)
    page = ctx.new_page()
    page.goto(f"{live_server.url}/workflows/{wf.slug}/")
    expect(page.locator("#drill-list")).to_contain_text("No rollback drill has been run")
    page.get_by_label("Runs to revert").fill("5")
    page.get_by_role("button", name="Run a rollback drill").click()
    # The drill's page: every item reverted, the drill passed.
    expect(page.locator("body")).to_contain_text("Passed")
    screenshot(page, "drill.png")
    page.goto(f"{live_server.url}/workflows/{wf.slug}/")
    row = page.locator("#drill-list tbody tr").first
    expect(row).to_contain_text("Passed")
    expect(row.locator("td.num").nth(0)).to_have_text("5")
    expect(row.locator("td.num").nth(1)).to_have_text("5")
    expect(row.locator("td.num").nth(2)).to_have_text("0")
    # The newest five were reverted, each once; the oldest still stands.
    assert Run.objects.filter(pk__in=ids[1:], status="rolled_back").count() == 5
    assert Run.objects.get(pk=ids[0]).status == "executed"
    assert DemoLedgerEntry.objects.filter(action="refund.reverse").count() == 5
    # The rollback gate reads it once the gates are recomputed.
    page.get_by_role("button", name="Recompute now").click()
    expect(page.locator("#gates tr[data-gate=rollback_drill]")).to_contain_text("pass")
    screenshot(page, "workflow-drills.png")
