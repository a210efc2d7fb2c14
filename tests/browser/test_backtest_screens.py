"""A backtest in a real browser: an owner starts one over the L3 history, watches the
progress bar until the results replace it, and opens a would-be mistake; and the same
without JavaScript, through the reload link."""

import json

import pytest
from django.contrib.auth.models import User
from playwright.sync_api import expect

from approvals import services
from approvals.roles import role_grant
from tests.browser.support import PASSWORD, screenshot, sign_in
from traces.models import Backtest, Run
from traces.tasks import run_backtest

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

# Refunds up to 50 EUR go through; the history's refunds are 64.25 and 20 EUR.
POLICY = {
    "audit_sample_rate": 0,
    "rules": [
        {
            "id": "actions",
            "kind": "allow_actions",
            "actions": ["refund.issue"],
            "control": "allowed_tools",
        },
        {
            "id": "cap",
            "kind": "value_cap",
            "action": "refund.issue",
            "max": "50",
            "currency": "EUR",
            "then": "escalate",
            "control": "value_cap",
        },
    ],
}


@pytest.fixture
def history(ladder):
    """Three decided L3 runs: 64.25 approved, 20 rejected, 64.25 rejected."""
    decided = []
    for n, (amount, approve) in enumerate(((64.25, True), (20, False), (64.25, False))):
        params = {"order_id": f"A-{n}", "amount": amount, "currency": "EUR", "reason": "late"}
        body = ladder.submit(3, proposal={"params": params})
        run = Run.objects.select_related("workflow").get(pk=body["id"])
        opened = services.review_open(run=run, user=ladder.reviewer)
        services.review_decide(
            run=run,
            reviewer=ladder.reviewer,
            seen_hash=opened.hash,
            seen_version=run.version,
            decision=services.Approval(approve=approve, reason="" if approve else "not owed"),
        )
        decided.append(run)
    return decided


@pytest.fixture
def owner(ladder):
    person = User.objects.create_user(username="owner", password=PASSWORD)
    role_grant(workflow=ladder.l3, user=person, role="owner", by=None)
    return person


@pytest.fixture
def held_task(monkeypatch):
    """The task is not sent when a backtest starts: the test runs it when it chooses."""
    monkeypatch.setattr(run_backtest, "delay", lambda backtest_id: None)


def start(page, live_server):
    page.goto(f"{live_server.url}/workflows/support-refund/backtests/")
    page.select_option("#bt-policy", "draft")
    page.fill("#bt-document", json.dumps(POLICY))
    page.get_by_role("button", name="Run backtest").click()
    backtest = Backtest.objects.get()
    expect(page).to_have_url(f"{live_server.url}/workflows/support-refund/backtests/{backtest.pk}/")
    expect(page.locator("#backtest-state")).to_have_text("Queued")
    return backtest


def test_the_progress_bar_gives_way_to_the_results(
    new_context, live_server, ladder, history, owner, held_task
):
    ctx = new_context()
    sign_in(ctx, owner, live_server)
    page = ctx.new_page()
    backtest = start(page, live_server)

    run_backtest(backtest.pk)
    # The page polls its bar every second; once done it reloads into the results.
    expect(page.locator("#backtest-counts")).to_be_visible()
    expect(page.locator("#backtest-count")).to_have_text("3 of 3 runs")
    expect(page.locator("#backtest-mistakes")).to_contain_text(
        "1 run the policy would have allowed that a person rejected, worth 20.00 EUR"
    )
    screenshot(page, "backtest.png")
    page.locator("#backtest-mistake-list a").click()
    expect(page).to_have_url(f"{live_server.url}/runs/{history[1].pk}/")


def test_without_javascript_the_reload_link_shows_the_results(
    new_context, live_server, ladder, history, owner, held_task
):
    ctx = new_context(java_script_enabled=False)
    sign_in(ctx, owner, live_server)
    page = ctx.new_page()
    backtest = start(page, live_server)
    assert page.evaluate("typeof window.htmx") == "undefined"  # no script ran

    run_backtest(backtest.pk)
    page.get_by_role("link", name="Reload").click()
    expect(page.locator("#backtest-state")).to_have_text("Done")
    expect(page.locator("#backtest-counts")).to_contain_text("Allowed")
    assert Backtest.objects.get().result["mistakes"]["runs"] == [str(history[1].pk)]


def test_the_editor_backtests_the_document_being_written(
    new_context, live_server, ladder, history, owner
):
    ctx = new_context()
    sign_in(ctx, owner, live_server)
    page = ctx.new_page()
    page.goto(f"{live_server.url}/workflows/support-refund/policy/edit")
    page.fill("#policy-document", json.dumps(POLICY))
    page.get_by_role("button", name="Backtest this document").click()
    # Celery runs eagerly here: the backtest is done when its page opens.
    expect(page.locator("#backtest-state")).to_have_text("Done")
    expect(page.locator("#backtest-mistakes")).to_contain_text("worth 20.00 EUR")
    backtest = Backtest.objects.get()
    assert backtest.version is None and backtest.document["rules"][1]["max"] == "50"
