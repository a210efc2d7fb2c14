"""The worked example as people meet it in the browser: `manage.py simulate` plays its
2,000 tickets (in process, tasks eager), then the owner opens the workflow page (the
rung history up to L4 and back down by the breaker, the gate charts over eleven weeks)
and the compliance officer the L4 promotion's dossier. The README's two pictures of the
story are taken here."""

from io import StringIO

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from playwright.sync_api import expect

from approvals.models import PromotionRequest
from tests.browser.support import SCREENSHOTS, VIEWPORT, sign_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_the_story_reads_from_the_workflow_page_and_the_dossier(new_context, live_server):
    out = StringIO()
    call_command("simulate", "support-refund", "--runs", "2000", "--seed", "7", stdout=out)
    story = out.getvalue()
    assert "the breaker trips, L4 -> L3" in story

    ctx = new_context(viewport=VIEWPORT)
    sign_in(ctx, User.objects.get(username="ops-lead"), live_server)
    page = ctx.new_page()
    page.goto(f"{live_server.url}/workflows/support-refund/")
    expect(page.locator("ol.ladder li[aria-current=step]")).to_contain_text("L3")
    history = page.locator("#rung-history")
    expect(history.locator("tr[data-cause=promotion]")).to_have_count(3)
    breaker = history.locator("tr[data-cause=breaker]")
    expect(breaker).to_contain_text("L4 → L3")
    expect(breaker).to_contain_text("of the last 50 executed runs failed or were labelled wrong")
    charts = page.locator("#gate-charts")
    expect(charts.locator("figure[data-chart=approval_rate] svg")).to_be_visible()
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.locator("#rung-history").screenshot(path=str(SCREENSHOTS / "story-rung-history.png"))

    request = PromotionRequest.objects.get(workflow__slug="support-refund", to_rung=4)
    ctx = new_context(viewport=VIEWPORT)
    sign_in(ctx, User.objects.get(username="compliance-officer"), live_server)
    page = ctx.new_page()
    page.goto(f"{live_server.url}/promotions/{request.pk}/dossier")
    dossier = page.locator("#dossier")
    for name in ("approval_rate", "probe_catch_rate", "failure_rate", "rollback_drill"):
        expect(dossier.locator(f"tr[data-gate={name}]")).to_contain_text("pass")
    expect(page.locator("#dossier-hash")).to_contain_text("matches the stored evidence")
    expect(page.locator("body")).not_to_contain_text("LNone")  # the initial rung reads "L1"
    page.screenshot(path=str(SCREENSHOTS / "story-dossier.png"), full_page=True)
    assert f"/promotions/{request.pk}/dossier" in story
