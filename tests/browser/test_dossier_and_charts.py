"""The gate charts and the evidence dossier in a real browser, at desktop and phone
width: the charts of a workflow with several snapshots, and a compliance user opening a
promotion request's dossier and downloading its PDF."""

import io
import re
from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.utils import timezone
from playwright.sync_api import expect
from pypdf import PdfReader

from approvals.models import PromotionRequest
from approvals.roles import role_grant
from approvals.services import evidence_freeze
from ladder import gates
from ladder.models import GateSnapshot
from tests.approvals.test_promotion_pages import snapshot_of
from tests.browser.support import PASSWORD, screenshot, sign_in
from tests.browser.test_csp import RECORD_VIOLATIONS

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

WIDTHS = [1280, 390]


def person(name: str, workflow, role: str) -> User:
    user = User.objects.create_user(username=name, password=PASSWORD)
    role_grant(workflow=workflow, user=user, role=role, by=None)
    return user


def open_page(new_context, live_server, user, width: int):
    ctx = new_context()
    ctx.add_init_script(RECORD_VIOLATIONS)
    sign_in(ctx, user, live_server)
    page = ctx.new_page()
    page.set_viewport_size({"width": width, "height": 900})
    return page


def fits(page, selector: str, width: int) -> None:
    box = page.locator(selector).first.bounding_box()
    assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= width, box


@pytest.mark.parametrize("width", WIDTHS)
def test_the_workflow_page_charts_each_gate_over_its_snapshots(
    new_context, live_server, ladder, width
):
    wf = ladder.l3
    owner = person("owner", wf, "owner")
    now = timezone.now()
    for days_ago, k in ((21, 3900), (14, 4000), (7, 4080), (0, 4120)):
        # Snapshots are append-only: one a week is made by computing it "then".
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(timezone, "now", lambda d=days_ago: now - timedelta(days=d))
            snapshot_of(
                wf,
                volume=4200 - days_ago * 50,
                approval=gates.Count(k, 4200),
                failure=gates.Count(12 + days_ago, 4000),
            )
    page = open_page(new_context, live_server, owner, width)
    page.goto(f"{live_server.url}/workflows/{wf.slug}/")

    charts = page.locator("#gate-charts")
    expect(charts).to_contain_text("over the latest 4 snapshots")
    approval = charts.locator("figure[data-chart=approval_rate]")
    svg = approval.locator("svg[role=img]")
    expect(svg).to_be_visible()
    expect(svg).to_have_attribute(
        "aria-label",
        re.compile(
            r"^Approval rate: latest 98\.1% \(95% interval 97\.6\u201398\.5%\), bar 95\.0%, "
            r".+; 4 snapshots from "
        ),
    )
    expect(approval.locator("polygon.band")).to_have_count(1)
    expect(approval.locator("polyline.bar-line")).to_have_count(1)
    expect(charts.locator("figure[data-chart=volume] svg")).to_be_visible()
    expect(charts.locator("figure[data-chart=failure_rate] svg")).to_be_visible()
    fits(page, "figure[data-chart=approval_rate] svg", width)

    # The numbers behind the line, without JavaScript's help: a <details> table.
    approval.locator("summary").click()
    rows = approval.locator("details table tbody tr")
    expect(rows).to_have_count(4)
    expect(rows.first).to_contain_text("98.1%")
    expect(rows.last).to_contain_text("92.9%")
    if width == 1280:
        charts.scroll_into_view_if_needed()
        screenshot(page, "workflow-charts.png")
    assert page.evaluate("window.__csp") == []


@pytest.mark.parametrize("width", WIDTHS)
def test_compliance_opens_the_promotion_dossier_and_downloads_its_pdf(
    new_context, live_server, ladder, width
):
    wf = ladder.l3
    owner = person("owner", wf, "owner")
    compliance = person("compliance", wf, "compliance")
    snapshot = snapshot_of(
        wf, volume=4200, approval=gates.Count(4120, 4200), failure=gates.Count(12, 4000)
    )
    canonical, digest = evidence_freeze(
        GateSnapshot.objects.select_related("workflow").get(pk=snapshot.pk)
    )
    request = PromotionRequest.objects.create(
        workflow=wf,
        from_rung=3,
        to_rung=4,
        requested_by=owner,
        snapshot=snapshot,
        evidence_canonical=canonical,
        evidence_hash=digest,
    )
    # A newer, worse snapshot: the dossier keeps the frozen numbers.
    snapshot_of(wf, volume=4200, approval=gates.Count(3000, 4200))

    page = open_page(new_context, live_server, compliance, width)
    page.goto(f"{live_server.url}/promotions/{request.pk}/")
    page.locator("#dossier-links").get_by_role("link", name="Evidence dossier").click()
    expect(page).to_have_url(f"{live_server.url}/promotions/{request.pk}/dossier")
    dossier = page.locator("#dossier")
    expect(dossier.locator("tr[data-gate=approval_rate]")).to_contain_text("98.1%")
    expect(dossier).not_to_contain_text("71.4%")
    expect(page.locator("#dossier-hash")).to_contain_text(digest)
    expect(page.locator("#dossier-hash")).to_contain_text("matches the stored evidence")
    fits(page, "#dossier-gate-table", width)
    if width == 1280:
        screenshot(page, "dossier.png")

    with page.expect_download() as info:
        page.locator("#dossier-pdf").click()
    download = info.value
    assert download.suggested_filename == f"dossier-{wf.slug}-promotion-{request.pk}.pdf"
    with open(download.path(), "rb") as handle:
        body = handle.read()
    assert body.startswith(b"%PDF-")
    text = "\n".join(p.extract_text() for p in PdfReader(io.BytesIO(body)).pages)
    assert wf.name in text
    assert "98.1%" in text
    assert "71.4%" not in text
    assert page.evaluate("window.__csp") == []
