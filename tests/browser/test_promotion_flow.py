"""The workflow page and the promotion flow in a real browser: an owner recomputes the
gates and asks for the next rung, a compliance user approves it (without JavaScript), and
the workflow page shows the new rung and the change in its history."""

import re

import pytest
from django.contrib.auth.models import User
from playwright.sync_api import expect

from approvals.models import PromotionRequest
from approvals.roles import role_grant
from ladder.models import ActionType, RungChange, Workflow
from tests.browser.support import PASSWORD, screenshot, sign_in
from tests.browser.test_csp import RECORD_VIOLATIONS

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_an_owner_recomputes_the_gates_and_sees_why_the_workflow_cannot_climb_yet(
    new_context, live_server, ladder, make_reviewer
):
    owner = make_reviewer("owner")
    wf = ladder.l3
    role_grant(workflow=wf, user=owner, role="owner", by=None)
    for _ in range(3):
        ladder.submit(3)
    ctx = new_context()
    ctx.add_init_script(RECORD_VIOLATIONS)
    sign_in(ctx, owner, live_server)
    page = ctx.new_page()

    page.goto(f"{live_server.url}/workflows/{wf.slug}/")
    expect(page.locator("ol.ladder li[aria-current=step]")).to_contain_text("L3")
    expect(page.locator("#no-gates")).to_be_visible()
    page.evaluate("window.__marker = 1")
    page.get_by_role("button", name="Recompute now").click()
    gates = page.locator("#gates")
    expect(gates).to_contain_text("recomputed on demand by owner")
    # Swapped in place by htmx: no reload.
    assert page.evaluate("window.__marker") == 1
    expect(gates.locator("tr[data-gate=volume]")).to_contain_text("too few to judge")
    expect(gates.locator("tr[data-gate=policy]")).to_contain_text("fail")
    expect(gates).to_contain_text("Not eligible for L4")

    page.reload()
    button = page.get_by_role("button", name="Request promotion to L4")
    expect(button).to_be_disabled()
    expect(page.locator("#request-blockers")).to_contain_text("Written policy: fail.")
    screenshot(page, "workflow-gates.png")

    page.get_by_role("link", name="Workflows").first.click()
    row = page.locator(f"tr[data-workflow={wf.slug}]")
    expect(row.locator(".glance")).to_contain_text("not eligible for L4")
    expect(row.locator(".waits")).to_contain_text("3 runs in the queue")
    expect(row.locator("ol.ladder li[aria-current=step]")).to_have_text("L3")
    screenshot(page, "workflows.png")
    assert page.evaluate("window.__csp") == []


def test_an_owner_requests_promotion_and_compliance_approves_it_without_javascript(
    new_context, live_server, transactional_db
):
    owner = User.objects.create_user(username="owner", password=PASSWORD)
    compliance = User.objects.create_user(username="compliance", password=PASSWORD)
    wf = Workflow.objects.create(slug="triage", name="Ticket triage", rung=0, owner=owner)
    ActionType.objects.create(workflow=wf, name="ticket.tag")
    role_grant(workflow=wf, user=owner, role="owner", by=None)
    role_grant(workflow=wf, user=compliance, role="compliance", by=None)

    # The owner: home is the workflows list.
    ctx = new_context()
    ctx.add_init_script(RECORD_VIOLATIONS)
    sign_in(ctx, owner, live_server)
    page = ctx.new_page()
    page.goto(f"{live_server.url}/")
    expect(page).to_have_url(f"{live_server.url}/workflows/")
    row = page.locator("tr[data-workflow=triage]")
    expect(row).to_contain_text("gates not computed yet")
    row.get_by_role("link", name="triage").click()
    page.get_by_role("button", name="Recompute now").click()
    expect(page.locator("#gates")).to_contain_text("Eligible for L1")
    page.reload()  # the request button reflects the fresh numbers
    page.fill("#note", "Tags are right; ready for drafts.")
    page.get_by_role("button", name="Request promotion to L1").click()
    expect(page).to_have_url(re.compile(r"/promotions/\d+/$"))
    expect(page.locator(".messages")).to_contain_text("Promotion to L1 requested")
    expect(page.locator("#state")).to_contain_text("Open")
    expect(page.locator("#evidence-hash")).to_contain_text("matches the stored evidence")
    request = PromotionRequest.objects.get(workflow=wf)
    expect(page.locator("#evidence-hash code")).to_have_text(request.evidence_hash)
    expect(page.locator("#decide-form")).to_have_count(0)  # never one's own
    screenshot(page, "promotion-requested.png")
    assert page.evaluate("window.__csp") == []

    # Compliance, with JavaScript off: every step is a plain link or form.
    ctx2 = new_context(java_script_enabled=False)
    sign_in(ctx2, compliance, live_server)
    page2 = ctx2.new_page()
    page2.goto(f"{live_server.url}/")
    expect(page2).to_have_url(f"{live_server.url}/promotions/")
    expect(page2.locator("#open-requests")).to_contain_text("triage")
    page2.get_by_role("link", name=f"#{request.pk}").click()
    expect(page2.locator("#frozen-gates tr[data-gate=owner]")).to_contain_text("pass")
    page2.get_by_role("button", name="Approve: move to L1").click()
    # The reason is required: the browser's own check, then the server's.
    expect(page2).to_have_url(f"{live_server.url}/promotions/{request.pk}/")
    page2.fill("#reason", "Both L0 gates pass; owner named.")
    page2.get_by_role("button", name="Approve: move to L1").click()
    expect(page2.locator(".messages")).to_contain_text("triage is now at L1")
    expect(page2.locator("#state")).to_contain_text("Approved by compliance")
    screenshot(page2, "promotion-approved.png")

    page2.get_by_role("link", name="the workflow now").click()
    expect(page2.locator("ol.ladder li[aria-current=step]")).to_contain_text("L1")
    expect(page2.locator("#rung-history")).to_contain_text("Promotion: L0 → L1")
    expect(page2.locator("#rung-history")).to_contain_text("Both L0 gates pass")
    expect(page2.locator("#gates-stale")).to_contain_text("computed at L0")
    screenshot(page2, "workflow-promoted.png")
    wf.refresh_from_db()
    assert wf.rung == 1
    assert RungChange.objects.filter(workflow=wf, kind="promotion").count() == 1
