"""The content security policy holds without 'unsafe-inline' for styles: the review
screens, their htmx swaps, the replay page and the API docs report no violation
(security review, finding 10)."""

import pytest
from playwright.sync_api import expect

from tests.browser.support import sign_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

# Installed before any page script: every violation the browser reports is kept.
RECORD_VIOLATIONS = """
window.__csp = [];
document.addEventListener("securitypolicyviolation", (e) => {
  window.__csp.push(`${e.effectiveDirective} blocked ${e.blockedURI || "inline"}`
                    + ` at ${e.sourceFile || document.location.pathname}:${e.lineNumber}`);
});
"""


@pytest.fixture
def watched(new_context, live_server, ladder):
    """A signed-in page whose CSP violations (events and console reports) are collected."""
    ctx = new_context()
    ctx.add_init_script(RECORD_VIOLATIONS)
    sign_in(ctx, ladder.reviewer, live_server)
    page = ctx.new_page()
    console = []
    page.on(
        "console",
        lambda msg: console.append(msg.text) if "Content Security Policy" in msg.text else None,
    )

    def violations() -> list[str]:
        return page.evaluate("window.__csp") + console

    page.violations = violations
    return page


def test_the_review_screens_and_replay_run_without_a_csp_violation(watched, live_server, ladder):
    page = watched
    runs = {rung: ladder.submit(rung) for rung in (1, 2, 3)}
    page.goto(f"{live_server.url}/")
    expect(page.locator("tr[data-row]")).to_have_count(3)
    # An htmx swap: a filter link replaces the list in place.
    page.locator("aside.filters a").first.click()
    expect(page.locator("#queue-list")).to_contain_text("Filtered")
    assert page.violations() == []
    for rung, run in runs.items():
        page.goto(f"{live_server.url}/runs/{run['id']}/")
        expect(page.locator("#run-panel")).to_be_visible()
        assert page.violations() == [], f"L{rung}"
    # A decision loads the next run in place (htmx), then the replay page.
    page.keyboard.press("a")
    expect(page.locator(".flash, .msg").first).to_be_visible()
    page.goto(f"{live_server.url}/runs/{runs[3]['id']}/replay")
    expect(page.locator("main")).to_contain_text(runs[3]["id"])
    assert page.violations() == []


def test_the_api_docs_page_renders_under_its_policy(watched, live_server):
    page = watched
    page.goto(f"{live_server.url}/api/v1/docs")
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("Autonomy Ladder gateway")
    # Opening an operation renders its parameters, schemas and highlighted examples.
    page.locator(".opblock-summary").first.click()
    expect(page.locator(".opblock-body").first).to_be_visible()
    page.get_by_role("button", name="Try it out").first.click()
    expect(page.locator(".opblock-body textarea").first).to_be_visible()
    assert page.violations() == []
