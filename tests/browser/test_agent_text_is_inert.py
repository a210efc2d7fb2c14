"""Agent-supplied text is always shown as text, never as HTML, on every reviewer page.

The hostile strings go in through the real gateway, in every place an agent controls:
input, tool call arguments and results, output, summary, flags, params, alternatives and
the artifact. A page passes when nothing ran (no `window.__xss`, no dialog), no element
came from agent content, no `javascript:` link exists, and the strings read as text.
"""

import json

import pytest
from playwright.sync_api import expect

from tests.browser.support import sign_in
from traces.models import Run, RunStatus

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SCRIPT = "<script>window.__xss=1</script>"
IMG = '<img src=x onerror="window.__xss=1">'
SVG = "<svg onload=window.__xss=1>"
MD_LINK = "[click](javascript:window.__xss=1)"
JS_URL = "javascript:window.__xss=1"
ALERT = "<img src=x onerror=alert(1)>"
# Breaking out of the contexts the templates put agent text in.
OUT_OF_TEXTAREA = "</textarea><script>window.__xss=1</script>"
OUT_OF_ATTRIBUTE = '"><img src=x onerror=window.__xss=1>'
OUT_OF_PRE = "</pre><svg onload=window.__xss=1></svg>"
HOSTILE = [SCRIPT, IMG, SVG, MD_LINK, JS_URL, ALERT, OUT_OF_TEXTAREA, OUT_OF_PRE]
TEXT = "\n".join(HOSTILE)

# Elements agent content could smuggle in; <main> has none of its own.
SMUGGLED = (
    "main script, main img, main svg, main iframe, main object, main embed, main math, "
    "main [onerror], main [onload], main [onclick], main [onmouseover], main [style]"
)


def hostile(ladder, rung: int) -> dict:
    tool_calls = [
        {"name": "kb.search", "arguments": {"q": SCRIPT, "href": JS_URL}, "result": TEXT},
        {"name": IMG, "arguments": MD_LINK, "result": {"html": SVG, "link": JS_URL}},
    ]
    proposal = {"summary": f"{SCRIPT} {IMG} {SVG} {MD_LINK}", "flags": [SVG, JS_URL]}
    if rung == 1:
        proposal["params"] = {"to": JS_URL, "subject": OUT_OF_ATTRIBUTE, "body": TEXT}
        proposal["artifact"] = f"{OUT_OF_TEXTAREA}\n{MD_LINK}"
    else:
        params = {"order_id": OUT_OF_ATTRIBUTE, "amount": 9.5, "currency": "EUR", "reason": TEXT}
        proposal["params"] = params
        proposal["artifact"] = {"note": TEXT}
        if rung == 2:
            proposal["alternatives"] = [
                {"action": "voucher.issue", "score": 0.5, "params": {**params, "reason": SVG}}
            ]
    return ladder.submit(
        rung,
        input={"message": TEXT, "link": JS_URL},
        tool_calls=tool_calls,
        output=f"{SCRIPT}\n{MD_LINK}",
        proposal=proposal,
    )


def assert_inert(page, *texts: str) -> None:
    # Open every collapsed tool call / replay step so their contents render and show.
    page.evaluate("document.querySelectorAll('details').forEach((d) => { d.open = true; })")
    page.wait_for_timeout(50)  # give a broken-image onerror the chance to fire
    assert page.evaluate("typeof window.__xss") == "undefined", f"agent code ran on {page.url}"
    assert page.locator(SMUGGLED).count() == 0, page.locator(SMUGGLED).first.evaluate(
        "(e) => e.outerHTML"
    )
    assert page.locator('a[href^="javascript:" i], [href*="javascript:" i]').count() == 0
    shown = page.locator("main").inner_text()
    for text in texts:
        # Structured payloads are shown as JSON, where quotes read \" and newlines \n.
        assert text in shown or json.dumps(text)[1:-1] in shown, (
            f"{text!r} is not shown as text on {page.url}"
        )


def test_agent_supplied_markup_is_shown_as_text_on_every_reviewer_page(page, live_server, ladder):
    runs = {rung: hostile(ladder, rung) for rung in (1, 2, 3)}
    assert Run.objects.filter(status=RunStatus.PENDING_REVIEW).count() == 3
    sign_in(page.context, ladder.reviewer, live_server)

    page.goto(f"{live_server.url}/")
    expect(page.locator("tr[data-row]")).to_have_count(3)
    assert_inert(page, SVG, JS_URL)
    # The summary is truncated in the queue, but its start reads as text.
    assert page.locator("tr[data-row] a.open").first.inner_text().startswith(f"{SCRIPT} {IMG}")

    for rung, run in runs.items():
        page.goto(f"{live_server.url}/runs/{run['id']}/")
        assert_inert(page, *HOSTILE, JS_URL, MD_LINK)
        if rung == 1:
            # Draft fields hold the exact text, whatever closing tags it contains.
            expect(page.locator("#p-body")).to_have_value(TEXT)
            expect(page.locator("#p-subject")).to_have_value(OUT_OF_ATTRIBUTE)
            expect(page.locator("#p-to")).to_have_value(JS_URL)
            expect(page.locator("#p-artifact")).to_have_value(f"{OUT_OF_TEXTAREA}\n{MD_LINK}")
        else:
            expect(page.locator(".decide")).to_contain_text(json.dumps(OUT_OF_ATTRIBUTE))

        page.goto(f"{live_server.url}/runs/{run['id']}/replay")
        expect(page.locator("#check-complete")).to_contain_text("✓ Complete")
        assert_inert(page, SCRIPT, IMG, SVG, MD_LINK, JS_URL, OUT_OF_PRE)

    # Decide the L1 draft: the next (hostile) run is swapped in by htmx, the decided one
    # shows the diff of hostile text, and still nothing runs.
    page.goto(f"{live_server.url}/runs/{runs[1]['id']}/")
    page.locator("#p-body").fill(f"{TEXT}\n{OUT_OF_PRE}")
    page.get_by_role("button", name="Submit my version").click()
    expect(page).to_have_url(f"{live_server.url}/runs/{runs[2]['id']}/")
    expect(page.locator("#run-panel .msg.success")).to_be_visible()
    assert_inert(page, *HOSTILE)

    page.goto(f"{live_server.url}/runs/{runs[1]['id']}/")
    expect(page.locator("pre.diff .add").last).to_have_text(f"+{OUT_OF_PRE}")
    assert_inert(page, *HOSTILE)
    assert Run.objects.get(pk=runs[1]["id"]).decision["params"]["body"].endswith(OUT_OF_PRE)
