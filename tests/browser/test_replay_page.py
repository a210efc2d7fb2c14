"""The replay page in a real browser, at 1280 px and at phone width (390 px): a compliance
officer reads a run step by step, sees the reviewer's screen rebuilt and downloads the
trace, which verifies on its own."""

import contextlib
import json
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.approvals.replay_setup import every_step_run
from tests.browser.support import screenshot, sign_in
from traces.chain import verify_chain

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def no_capture(*, execute):
    # Outside a transaction on-commit callbacks run at once: nothing to capture.
    return contextlib.nullcontext()


def test_a_compliance_officer_reads_a_replay_and_downloads_the_trace(
    new_context, live_server, clock
):
    run, people = every_step_run(capture=no_capture, clock=clock)
    ctx = new_context(accept_downloads=True)
    sign_in(ctx, people["compliance"], live_server)
    page = ctx.new_page()

    page.goto(f"{live_server.url}/runs/{run.pk}/replay")

    expect(page.locator("#check-verified")).to_contain_text("Chain verified")
    expect(page.locator("#check-complete")).to_contain_text("Complete")
    screen = page.locator(".step-review_shown .screen")
    expect(screen).to_be_visible()
    expect(screen).to_contain_text("500.00 EUR")
    expect(screen).to_contain_text("Order A-1001 arrived broken")
    expect(page.locator(".step-review_shown")).to_contain_text("screen rebuilt matches its hash")
    decision = page.locator(".step-review_decision")
    expect(decision).to_contain_text("Approved")
    expect(decision.locator(".by")).to_have_text("by refunds-rev")
    # The raw JSON stays folded until asked for.
    raw = page.locator(".step-proposal details.raw")
    expect(raw.locator("pre")).to_be_hidden()
    raw.locator("summary").click()
    expect(raw.locator("pre")).to_contain_text('"order": "A-1001"')
    screenshot(page, "replay.png")

    with page.expect_download() as download_info:
        page.get_by_role("link", name="Download the trace (JSON)").click()
    download = download_info.value
    assert download.suggested_filename == f"run-{run.pk}-trace.json"
    data = json.loads(Path(download.path()).read_text(encoding="utf-8"))
    assert data["verified"] and len(data["steps"]) == run.trace_length
    assert verify_chain(data["id"], data["steps"], head=data["head"], length=data["length"]) == []


def test_the_replay_reads_at_phone_width(new_context, live_server, clock):
    run, people = every_step_run(capture=no_capture, clock=clock)
    ctx = new_context()
    sign_in(ctx, people["compliance"], live_server)
    page = ctx.new_page()
    page.set_viewport_size({"width": 390, "height": 844})

    page.goto(f"{live_server.url}/runs/{run.pk}/replay")

    expect(page.locator("#check-verified")).to_contain_text("Chain verified")
    # Nothing wider than the screen: no sideways scrolling to read a step.
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    params = page.locator(".step-proposal dl.param-fields").first
    box = params.bounding_box()
    assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 390
    # The screen's two columns stack: the context above what would happen.
    sections = page.locator(".step-review_shown .screen .run-cols > section")
    first, second = sections.nth(0).bounding_box(), sections.nth(1).bounding_box()
    assert second["y"] >= first["y"] + first["height"] - 1
    screenshot(page, "replay-phone.png")
