"""The reviewer's screen reads like a form, in a real browser at desktop (1280 px) and
phone (390 px) widths: params as fields, the own action checked in place, approve and
reject in view while scrolling, "next" inside the filter, new runs announced without a
reload, My decisions and the menu."""

import re

import pytest
from playwright.sync_api import expect

from tests.browser.support import screenshot, sign_in
from traces.models import Run, RunStatus

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

WIDTHS = {"desktop": {"width": 1280, "height": 900}, "phone": {"width": 390, "height": 844}}


@pytest.fixture(params=list(WIDTHS))
def width(request):
    return request.param


@pytest.fixture
def reviewer_page(new_context, live_server, ladder, width):
    page = new_context(viewport=WIDTHS[width]).new_page()
    sign_in(page.context, ladder.reviewer, live_server)
    return page


def no_sideways_scroll(page) -> None:
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")


def test_l2_options_read_as_labelled_fields_and_a_bad_own_action_is_explained_in_place(
    reviewer_page, live_server, ladder, width
):
    page = reviewer_page
    run = ladder.submit(2)
    page.goto(f"{live_server.url}/runs/{run['id']}/")
    cards = page.locator("label.card")
    expect(cards).to_have_count(3)
    first = cards.nth(0)
    expect(first.locator("[data-param=amount] dt")).to_have_text("Amount")
    expect(first.locator("[data-param=amount] dd")).to_have_text("42.00 EUR")
    expect(first.locator("[data-param=order_id] dt")).to_have_text("Order id")
    expect(first.locator("[data-param=currency]")).to_have_count(0)  # folded into the amount
    expect(cards.nth(2).locator("[data-param=amount] dd")).to_have_text("10.00 EUR")
    raw = first.locator("details.raw-json pre")
    expect(raw).to_be_hidden()
    first.locator("details.raw-json summary").click()
    expect(raw).to_be_visible()
    expect(raw).to_contain_text('"amount": 42.0')
    no_sideways_scroll(page)
    if width == "desktop":
        screenshot(page, "l2-pick.png")

    page.locator("details.own summary").click()
    typed = '{"order_id": "A-1", "amount": 5,\n "reason": goodwill}'
    page.fill("#own-params", typed)
    page.get_by_role("button", name="Take my own action").click()
    error = page.locator("#own-error")
    expect(error).to_contain_text("not valid JSON")
    expect(error).to_contain_text("line 2, column 12")
    expect(page.locator("#own-params")).to_have_value(typed)
    expect(page.locator("details.own")).to_have_attribute("open", "")

    page.fill("#own-params", '{"order_id": "A-1", "amout": 5}')
    page.get_by_role("button", name="Take my own action").click()
    expect(page.locator("#own-error")).to_contain_text("refund.issue takes no 'amout'")
    assert Run.objects.get(pk=run["id"]).status == RunStatus.PENDING_REVIEW

    page.fill(
        "#own-params", '{"order_id": "A-1", "amount": 5, "currency": "EUR", "reason": "goodwill"}'
    )
    page.get_by_role("button", name="Take my own action").click()
    expect(page).to_have_url(re.compile(r"/\?done=1$"))
    page.goto(f"{live_server.url}/runs/{run['id']}/")
    expect(page.locator("#decision-words")).to_have_text("Wrote their own")
    expect(page.locator("#decided-action [data-param=amount] dd")).to_have_text("5.00 EUR")


def test_approve_and_reject_stay_in_view_while_a_long_l3_run_scrolls(
    reviewer_page, live_server, ladder, width
):
    page = reviewer_page
    long_reason = "\n".join(f"line {i}: the customer was charged twice" for i in range(40))
    run = ladder.submit(
        3,
        proposal={
            "params": {
                "order_id": "A-9",
                "amount": 64.25,
                "currency": "EUR",
                "reason": long_reason,
            }
        },
    )
    page.goto(f"{live_server.url}/runs/{run['id']}/")
    action = page.locator("#l3-action")
    expect(action.locator("[data-param=amount] dd")).to_have_text("64.25 EUR")
    expect(action.locator("[data-param=reason] .multiline")).to_contain_text("line 39")
    approve = page.get_by_role("button", name=re.compile("^Approve"))
    reject = page.get_by_role("button", name=re.compile("^Reject"))
    for target in ("#l3-action [data-param=order_id] dt", "#l3-action [data-param=reason] dd"):
        page.locator(target).scroll_into_view_if_needed()
        expect(approve).to_be_in_viewport()
        expect(reject).to_be_in_viewport()
    no_sideways_scroll(page)
    if width == "desktop":
        page.evaluate("window.scrollTo(0, 0)")
        screenshot(page, "l3-approve.png")
    approve.click()
    expect(page).to_have_url(re.compile(r"/\?done=1$"))
    assert Run.objects.get(pk=run["id"]).status == RunStatus.APPROVED


def test_next_run_stays_in_the_filter_and_says_where_the_reviewer_is(
    reviewer_page, live_server, ladder
):
    page = reviewer_page
    a = ladder.submit(3)
    ladder.submit(2)
    b = ladder.submit(3)
    page.goto(f"{live_server.url}/")
    page.get_by_role("link", name=re.compile(r"^L3 approve")).click()
    expect(page).to_have_url(f"{live_server.url}/?queue=l3")
    # The counts narrow: under L3 only support-refund has runs.
    workflows = page.locator("aside.filters ul").nth(0)
    expect(workflows.locator("a")).to_have_count(1)
    expect(workflows.locator("a .count")).to_have_text("2")
    page.locator("tr[data-row] a.open").first.click()
    expect(page).to_have_url(f"{live_server.url}/runs/{a['id']}/?queue=l3")
    expect(page.locator("#queue-position")).to_have_text("1 of 2 in this filter")
    page.get_by_role("button", name=re.compile("^Approve")).click()
    # The next run is the next L3 one, not the L2 run that waits in between.
    expect(page).to_have_url(f"{live_server.url}/runs/{b['id']}/?queue=l3")
    expect(page.locator("#queue-position")).to_have_text("1 of 1 in this filter")


def test_new_runs_are_announced_on_the_queue_without_a_reload(new_context, live_server, ladder):
    page = new_context().new_page()
    sign_in(page.context, ladder.reviewer, live_server)
    ladder.submit(3)
    page.goto(f"{live_server.url}/")
    expect(page.locator("tr[data-row]")).to_have_count(1)
    page.evaluate("window.__marker = 1")
    ladder.submit(3)
    ladder.submit(1)
    notice = page.locator("#queue-new a")
    expect(notice).to_have_text("2 new runs — refresh", timeout=25_000)
    assert page.evaluate("window.__marker") == 1
    expect(page.locator("tr[data-row]")).to_have_count(1)  # nothing moved under the reader
    notice.click()
    expect(page.locator("tr[data-row]")).to_have_count(3)


def test_my_decisions_and_the_menu_on_a_phone(reviewer_page, live_server, ladder, width):
    page = reviewer_page
    runs = [ladder.submit(3), ladder.submit(1)]
    page.goto(f"{live_server.url}/runs/{runs[0]['id']}/")
    page.get_by_role("button", name=re.compile("^Approve")).click()
    expect(page).to_have_url(re.compile(rf"/runs/{runs[1]['id']}/$"))
    page.get_by_role("button", name=re.compile("Submit my version")).click()
    expect(page).to_have_url(re.compile(r"/\?done=1$"))

    menu = page.locator("nav[aria-label=Main]")
    for label in ("Queue", "My decisions", "Audit", "Workflows", "API docs"):
        expect(menu.get_by_role("link", name=re.compile(f"^{label}"))).to_be_visible()
    expect(menu.get_by_role("link", name="Promotions")).to_have_count(0)
    no_sideways_scroll(page)
    if width == "phone":
        screenshot(page, "menu-mobile.png")

    menu.get_by_role("link", name="My decisions").click()
    rows = page.locator("#my-decisions tbody tr")
    expect(rows).to_have_count(2)
    expect(rows.nth(0).locator(".decision-words")).to_have_text("Submitted as drafted")
    expect(rows.nth(1).locator(".decision-words")).to_have_text(
        "Approved — the agent carries it out"
    )
    expect(rows.nth(0).locator("time")).to_have_attribute("title", re.compile(r" UTC$"))
    expect(page.locator("#my-decisions .count")).to_have_count(0)
    no_sideways_scroll(page)
    if width == "desktop":
        screenshot(page, "my-decisions.png")
