"""The reviewer's screens in a real browser: queue, L1 draft, L2 pick, L3 approve, races
between two reviewers, and the plain-HTML path without JavaScript."""

import re

import pytest
from playwright.sync_api import expect

from approvals.models import Review
from tests.browser.support import PASSWORD, screenshot, sign_in
from traces.models import Run, RunStatus, TraceEvent

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def run_url(live_server, run_id) -> str:
    return f"{live_server.url}/runs/{run_id}/"


def event_types(run_id) -> list[str]:
    return list(
        TraceEvent.objects.filter(run_id=run_id).order_by("seq").values_list("type", flat=True)
    )


def test_a_reviewer_signs_in_and_sees_every_waiting_run_with_badges_counts_and_filters(
    page, live_server, ladder
):
    l1 = ladder.submit(1)
    l2 = ladder.submit(2)
    l3 = ladder.submit(3)

    page.goto(f"{live_server.url}/")
    expect(page).to_have_url(re.compile(r"/accounts/login/\?next=/$"))
    page.fill("#id_username", "reviewer")
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    expect(page).to_have_url(f"{live_server.url}/")
    expect(page.locator(".whoami")).to_contain_text("reviewer")

    rows = page.locator("tr[data-row]")
    expect(rows).to_have_count(3)
    # Oldest first, one row per run, each with its rung badge.
    for i, (slug, badge) in enumerate(
        [("support-reply", "L1"), ("refund-recommend", "L2"), ("support-refund", "L3")]
    ):
        expect(rows.nth(i).locator("td").first).to_have_text(slug)
        expect(rows.nth(i).locator(".badge")).to_have_text(badge)
    expect(rows.nth(1).locator("td.num")).to_have_text("42.00 EUR")
    expect(rows.nth(1).locator(".flag")).to_have_text("fraud_adjacent")
    expect(rows.nth(2)).to_contain_text("Refund duplicate charge on A-3043")
    expect(page.locator("#queue-list h1 .count")).to_have_text("3")
    assert page.title().startswith("(3) ")

    rung_filters = page.locator("aside.filters ul").nth(1).locator("a")
    expect(rung_filters).to_have_count(3)
    for i, label in enumerate(["L1 draft", "L2 pick", "L3 approve"]):
        expect(rung_filters.nth(i)).to_contain_text(label)
        expect(rung_filters.nth(i).locator(".count")).to_have_text("1")
    screenshot(page, "queue.png")

    page.evaluate("window.__marker = 1")
    page.get_by_role("link", name=re.compile(r"^L2 pick")).click()
    expect(page).to_have_url(f"{live_server.url}/?queue=l2")
    expect(rows).to_have_count(1)
    expect(rows.first.locator(".badge")).to_have_text("L2")
    expect(rows.first.locator("a.open")).to_have_attribute("href", f"/runs/{l2['id']}/?queue=l2")
    expect(page.locator("#queue-list")).to_contain_text("Filtered: rung l2")
    assert page.evaluate("window.__marker") == 1, "the filter reloaded the whole page"
    expect(page).to_have_title("(3) Queue — Autonomy Ladder")

    # The filter link also works as a plain link (no htmx), and it toggles off.
    page.goto(f"{live_server.url}/?queue=l3")
    expect(rows).to_have_count(1)
    expect(rows.first.locator("a.open")).to_have_attribute("href", f"/runs/{l3['id']}/?queue=l3")
    page.locator("aside.filters a.active").click()
    expect(rows).to_have_count(3)

    # Looking at the queue decides nothing and shows no run for review yet.
    ids = [l1["id"], l2["id"], l3["id"]]
    assert Run.objects.filter(pk__in=ids, status=RunStatus.PENDING_REVIEW).count() == 3
    assert not TraceEvent.objects.filter(run_id__in=ids, type="review_shown").exists()


def test_an_l1_draft_is_edited_and_submitted_and_the_next_run_loads_in_place(
    page, live_server, ladder
):
    l1 = ladder.submit(1)
    l2 = ladder.submit(2)
    ladder.submit(3)
    sign_in(page.context, ladder.reviewer, live_server)

    page.goto(run_url(live_server, l1["id"]))
    assert page.title().startswith("(3) support-reply · reply.send")
    body = page.locator("#p-body")
    expect(body).to_have_value(re.compile(r"^Hello,\n\nyour order A-1041 is on its way"))
    expect(page.locator("#p-subject")).to_have_value("Your order A-1041")
    screenshot(page, "l1-draft.png")

    edited = (
        "Hello,\n\nyour order A-1041 left our warehouse today; DHL delivers it Friday."
        "\n\nKind regards, Sam"
    )
    body.fill(edited)
    page.evaluate("window.__marker = 1")
    page.get_by_role("button", name=re.compile("Submit my version")).click()

    # htmx swapped the next run in and pushed its URL: no full page load happened.
    expect(page).to_have_url(run_url(live_server, l2["id"]))
    flash = page.locator("#run-panel .msg.success")
    expect(flash).to_have_text("reply.send on support-reply submitted with edits. Next one below.")
    expect(flash.locator("a")).to_have_attribute("href", f"/runs/{l1['id']}/")
    expect(page.locator("#run-panel h1 .badge")).to_have_text("L2")
    assert page.evaluate("window.__marker") == 1, "the decision reloaded the whole page"
    expect(page).to_have_title(re.compile(r"^\(2\) refund-recommend · refund\.issue"))

    # The decided run's page shows what was sent and the diff against the draft.
    page.goto(run_url(live_server, l1["id"]))
    expect(page.locator(".decide .status")).to_have_text("Submitted with edits")
    expect(page.locator(".decide")).to_contain_text("by reviewer")
    diff = page.locator("pre.diff")
    expect(diff).to_be_visible()
    expect(diff.locator(".del")).to_contain_text(["is on its way with DHL", "Best regards"])
    expect(diff.locator(".add")).to_contain_text(["left our warehouse today", "Kind regards, Sam"])
    expect(page.locator(".decide")).to_contain_text("Kind regards, Sam")
    screenshot(page, "l1-decided.png")

    review = Review.objects.get(run_id=l1["id"])
    assert review.verdict == Review.Verdict.SUBMITTED
    assert review.reviewer == ladder.reviewer
    assert review.edit_distance > 0
    assert review.submitted["params"]["body"] == edited
    run = Run.objects.get(pk=l1["id"])
    assert run.status == RunStatus.APPROVED
    assert run.decision["params"]["body"] == edited
    types = event_types(l1["id"])
    assert types.index("review_shown") < types.index("review_decision") == len(types) - 1
    decision = TraceEvent.objects.get(run_id=l1["id"], type="review_decision").payload
    assert decision["params"]["body"] == edited
    assert decision["by"] == "reviewer"
    assert decision["seen_hash"] == review.seen_hash


def test_an_l2_reviewer_picks_an_alternative_and_it_is_recorded_as_no_match(
    page, live_server, ladder
):
    l2 = ladder.submit(2)
    sign_in(page.context, ladder.reviewer, live_server)

    page.goto(run_url(live_server, l2["id"]))
    cards = page.locator("label.card")
    expect(cards).to_have_count(3)
    expect(cards.nth(0).locator(".badge.first")).to_have_text("agent's choice")
    expect(cards.nth(0).locator("input[type=radio]")).to_be_checked()
    expect(cards.nth(1)).to_contain_text("score 0.61")
    expect(cards.nth(1).locator("[data-param=amount] dd")).to_have_text("21.00 EUR")
    expect(cards.nth(1).locator("details.raw-json pre")).to_contain_text('"amount": 21.0')
    expect(cards.nth(2)).to_contain_text("voucher.issue")

    cards.nth(1).click()
    expect(cards.nth(1).locator("input[type=radio]")).to_be_checked()
    page.get_by_role("button", name=re.compile("Take the selected option")).click()
    # Nothing else waits: back to the (now empty) queue.
    expect(page).to_have_url(f"{live_server.url}/?done=1")
    expect(page.locator(".empty")).to_have_text("Nothing waits for you.")

    page.goto(run_url(live_server, l2["id"]))
    expect(page.locator(".decide .status")).to_have_text("Picked another option")
    expect(page.locator(".decide")).to_contain_text(
        "Did not match the agent's first recommendation."
    )
    expect(page.locator("#decided-action [data-param=reason] dd")).to_have_text("partial: damaged")

    review = Review.objects.get(run_id=l2["id"])
    assert review.verdict == Review.Verdict.PICKED
    assert review.matched is False
    assert review.chosen_option == 1
    run = Run.objects.get(pk=l2["id"])
    alternative = run.proposal["alternatives"][0]
    assert run.status == RunStatus.APPROVED
    assert run.decision["action"] == alternative["action"] == "refund.issue"
    assert run.decision["params"] == alternative["params"]
    decision = TraceEvent.objects.get(run_id=l2["id"], type="review_decision").payload
    assert (decision["chosen_option"], decision["matched"]) == (1, False)


def test_l3_runs_are_approved_with_a_and_rejected_with_r_a_reason_and_enter(
    page, live_server, ladder
):
    first = ladder.submit(3)
    second = ladder.submit(3)
    sign_in(page.context, ladder.reviewer, live_server)

    page.goto(run_url(live_server, first["id"]))
    action = page.locator("#l3-action")
    expect(action.locator(".action-name")).to_have_text("refund.issue")
    expect(action.locator("[data-param=amount] dd")).to_have_text("64.25 EUR")
    expect(page.locator(".decide")).to_contain_text("reversible via refund.reverse")

    page.keyboard.press("a")
    expect(page).to_have_url(run_url(live_server, second["id"]))
    flash = page.locator("#run-panel .msg.success")
    expect(flash).to_contain_text("refund.issue on")
    expect(flash).to_contain_text("approved — the agent carries it out. Next one below.")
    expect(flash.locator("a")).to_have_attribute("href", f"/runs/{first['id']}/")
    expect(page).to_have_title(re.compile(r"^\(1\) "))
    assert Run.objects.get(pk=first["id"]).status == RunStatus.APPROVED
    assert Review.objects.get(run_id=first["id"]).verdict == Review.Verdict.APPROVED

    page.keyboard.press("r")
    reason = page.locator("#run-panel input[name=reason]")
    expect(reason).to_be_focused()
    page.keyboard.type("customer already refunded by bank")
    page.keyboard.press("Enter")
    # That was the last one: the queue says so.
    expect(page).to_have_url(f"{live_server.url}/?done=1")
    expect(page.locator(".empty")).to_have_text("Nothing waits for you.")

    run = Run.objects.get(pk=second["id"])
    assert run.status == RunStatus.REJECTED
    assert run.decision["reason"] == "customer already refunded by bank"
    review = Review.objects.get(run_id=second["id"])
    assert (review.verdict, review.reason) == (
        Review.Verdict.REJECTED,
        "customer already refunded by bank",
    )
    assert event_types(second["id"])[-1] == "review_decision"

    for run_id, status in (
        (first["id"], "Approved — the agent carries it out"),
        (second["id"], "Rejected"),
    ):
        page.goto(run_url(live_server, run_id))
        expect(page.locator(".decide .status")).to_have_text(status)
        expect(page.locator(".decide")).to_contain_text("by reviewer")
    expect(page.locator(".decide")).to_contain_text("Reason: customer already refunded by bank")


def test_a_second_reviewer_learns_the_run_was_already_decided_by_the_first(
    new_context, live_server, ladder, make_reviewer
):
    run = ladder.submit(3)
    second = make_reviewer("second")
    ladder.grant(second)
    first_page = new_context().new_page()
    second_page = new_context().new_page()
    sign_in(first_page.context, ladder.reviewer, live_server)
    sign_in(second_page.context, second, live_server)

    first_page.goto(run_url(live_server, run["id"]))
    second_page.goto(run_url(live_server, run["id"]))
    expect(second_page.locator(".msg.warn")).to_contain_text("Open by reviewer")

    first_page.get_by_role("button", name=re.compile("^Approve")).click()
    expect(first_page).to_have_url(f"{live_server.url}/?done=1")

    second_page.get_by_role("button", name=re.compile("^Approve")).click()
    expect(second_page.locator("#run-panel .msg.error")).to_contain_text(
        "already decided by reviewer"
    )
    # The refused reviewer now sees the decision instead of the buttons.
    expect(second_page.locator(".decide .status")).to_have_text(
        "Approved — the agent carries it out"
    )
    expect(second_page.get_by_role("button", name=re.compile("^Approve"))).to_have_count(0)

    stored = Run.objects.get(pk=run["id"])
    assert stored.status == RunStatus.APPROVED
    assert stored.decided_by == ladder.reviewer
    assert Review.objects.filter(run_id=run["id"]).count() == 1
    assert event_types(run["id"]).count("review_decision") == 1
    assert event_types(run["id"]).count("review_shown") == 2


def test_an_l3_run_can_be_approved_without_javascript(new_context, live_server, ladder):
    run = ladder.submit(3)
    page = new_context(java_script_enabled=False).new_page()

    page.goto(f"{live_server.url}/accounts/login/")
    page.fill("#id_username", "reviewer")
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    expect(page).to_have_url(f"{live_server.url}/")
    page.locator("tr[data-row] a.open").first.click()
    expect(page).to_have_url(run_url(live_server, run["id"]))
    assert page.evaluate("typeof window.htmx") == "undefined"  # no script ran

    page.get_by_role("button", name=re.compile("^Approve")).click()
    expect(page).to_have_url(f"{live_server.url}/")
    expect(page.locator(".messages .msg.success")).to_have_text(
        re.compile(r"refund\.issue on .* approved — the agent carries it out\.")
    )
    expect(page.locator(".empty")).to_have_text("Nothing waits for you.")

    stored = Run.objects.get(pk=run["id"])
    assert stored.status == RunStatus.APPROVED
    assert stored.decided_by == ladder.reviewer
    assert Review.objects.get(run_id=run["id"]).verdict == Review.Verdict.APPROVED
