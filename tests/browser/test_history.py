"""In the browser: compliance reads the history back: filters it, searches it, pages
through it and opens a run, at desktop and at phone width, and without JavaScript. Runs
go through the real gateway over HTTP."""

import re

import pytest
from playwright.sync_api import expect

from approvals.roles import role_grant
from tests.browser.support import screenshot, sign_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def history(ladder, make_reviewer):
    compliance = make_reviewer("compliance")
    for wf in (ladder.l1, ladder.l2, ladder.l3):
        role_grant(workflow=wf, user=compliance, role="compliance", by=None)
    for _ in range(3):
        ladder.submit(1)
    kettle = ladder.submit(3, proposal={"summary": "Refund the broken kettle"})
    for _ in range(52):
        ladder.submit(3)
    return {"compliance": compliance, "kettle": kettle}


def test_compliance_filters_searches_pages_and_opens_a_run(page, live_server, history):
    sign_in(page.context, history["compliance"], live_server)
    page.goto(f"{live_server.url}/history/")
    rows = page.locator("table.history-runs tbody tr")
    expect(rows).to_have_count(50)

    # Older, then back to newer: 56 runs in all, none twice.
    first = rows.first.get_attribute("data-run")
    page.locator("nav.pager a[rel=next]").click()
    expect(rows).to_have_count(6)
    older = set(rows.evaluate_all("rs => rs.map(r => r.dataset.run)"))
    assert first not in older
    page.locator("nav.pager a[rel=prev]").click()
    expect(rows).to_have_count(50)
    expect(rows.first).to_have_attribute("data-run", first)

    # A filter swaps the results in place and keeps its value in the address.
    page.select_option("#h-workflow", "support-reply")
    expect(rows).to_have_count(3)
    expect(page).to_have_url(re.compile(r"workflow=support-reply"))
    expect(page.locator("#h-workflow")).to_have_value("support-reply")
    screenshot(page, "history.png")

    page.select_option("#h-workflow", "")
    page.fill("#h-q", "kettle")
    page.press("#h-q", "Enter")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("Refund the broken kettle")
    rows.first.get_by_role("link", name="Refund the broken kettle").click()
    expect(page).to_have_url(re.compile(rf"/runs/{history['kettle']['id']}/$"))
    expect(page.locator("main")).to_contain_text("Refund the broken kettle")


@pytest.fixture
def phone(browser):
    ctx = browser.new_context(viewport={"width": 390, "height": 844})
    ctx.set_default_timeout(5_000)
    yield ctx.new_page()
    ctx.close()


def test_at_phone_width_the_history_fits_and_searches(phone, live_server, history):
    page = phone
    sign_in(page.context, history["compliance"], live_server)
    page.goto(f"{live_server.url}/history/")
    expect(page.locator("table.history-runs tbody tr")).to_have_count(50)
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    page.fill("#h-q", "kettle")
    page.press("#h-q", "Enter")
    expect(page.locator("table.history-runs tbody tr")).to_have_count(1)
    page.get_by_role("link", name="replay").click()
    expect(page).to_have_url(re.compile(rf"/runs/{history['kettle']['id']}/replay$"))


def test_without_javascript_the_form_and_the_pages_still_work(new_context, live_server, history):
    page = new_context(java_script_enabled=False).new_page()
    sign_in(page.context, history["compliance"], live_server)
    page.goto(f"{live_server.url}/history/")
    page.select_option("#h-workflow", "support-refund")
    page.check("#h-failure")
    page.click("form.history-filters button[type=submit]")
    expect(page).to_have_url(re.compile(r"workflow=support-refund.*failure=1"))
    expect(page.locator(".empty")).to_have_text("No run matches these filters.")
    expect(page.locator("#h-failure")).to_be_checked()
    page.uncheck("#h-failure")
    page.click("form.history-filters button[type=submit]")
    expect(page.locator("table.history-runs tbody tr")).to_have_count(50)
    page.locator("nav.pager a[rel=next]").click()
    expect(page.locator("table.history-runs tbody tr")).to_have_count(3)
