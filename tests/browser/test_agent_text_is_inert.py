"""Agent-supplied text is always shown as text, never as HTML, on every reviewer page.

The hostile strings go in through the real gateway, in every place an agent controls:
input, tool call arguments and results, output, summary, flags, params, alternatives and
the artifact. A page passes when nothing ran (no `window.__xss`, no dialog), no element
came from agent content, no `javascript:` link exists, and the strings read as text.
"""

import json
from urllib.parse import quote

import httpx
import pytest
from playwright.sync_api import expect

from approvals.roles import role_grant
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


# Pages that draw their own charts (workflow, dossier, promotion) have svg of their own:
# an injected one still shows as an element with an event handler.
SMUGGLED_BESIDE_CHARTS = SMUGGLED.replace("main svg, ", "")


def assert_inert(page, *texts: str, charts: bool = False) -> None:
    # Open every collapsed tool call / replay step so their contents render and show.
    page.evaluate("document.querySelectorAll('details').forEach((d) => { d.open = true; })")
    page.wait_for_timeout(50)  # give a broken-image onerror the chance to fire
    assert page.evaluate("typeof window.__xss") == "undefined", f"agent code ran on {page.url}"
    smuggled = SMUGGLED_BESIDE_CHARTS if charts else SMUGGLED
    assert page.locator(smuggled).count() == 0, page.locator(smuggled).first.evaluate(
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


# Eight characters, the most a run row keeps of a currency: bold if it were ever markup.
CURRENCY = "<b>Q</b>"
DRAFT = {
    "audit_sample_rate": 0,
    "rules": [
        {"id": "actions", "kind": "allow_actions", "actions": ["refund.issue"],
         "control": "allowed_tools"},
    ],
}  # fmt: skip


def agent_api(ladder, method: str, path: str, body=None) -> dict:
    resp = httpx.request(
        method,
        f"{ladder.live_server_url}/api/v1{path}",
        json=body,
        headers={"Authorization": f"Bearer {ladder.token}"},
        timeout=10,
    )
    assert resp.status_code in (200, 201), resp.text
    return resp.json()


def test_agent_text_is_inert_on_history_replay_workflow_policy_and_promotion_pages(
    page, live_server, ladder
):
    """The same hostile strings, now also in what agents send after the submission (more
    context, execution reports, results, outcome labels), on the pages owners and
    compliance read: the history and its search, the replay, the workflow page's shadow
    comparison, the policy page, a backtest's would-be mistakes, the promotion request and
    the dossiers. Everything goes in through the agent API, as an agent would send it."""
    from approvals.services import promotion_request
    from ladder.models import ActionType, Workflow
    from traces.services.backtests import backtest_start
    from traces.services.policy import policy_set

    person = ladder.reviewer
    for role in ("owner", "compliance"):
        role_grant(workflow=ladder.l3, user=person, role=role, by=None)
    # A draft envelope in shadow (the owner's): it would allow every refund, so a refund
    # the reviewer rejects is a would-be mistake on the workflow page and in a backtest.
    draft = policy_set(workflow=ladder.l3, document=DRAFT, by=person)

    runs = []
    for _ in range(2):
        run = ladder.submit(
            3,
            input={"message": TEXT, "link": JS_URL},
            tool_calls=[{"name": IMG, "arguments": MD_LINK, "result": {"html": SVG}}],
            output=f"{SCRIPT}\n{MD_LINK}",
            proposal={
                "summary": f"{SCRIPT} {IMG} {SVG} {MD_LINK}",
                "flags": [SVG, JS_URL],
                "params": {"order_id": OUT_OF_ATTRIBUTE, "amount": 9.5, "currency": CURRENCY,
                           "reason": TEXT},
            },
        )  # fmt: skip
        # More context before anyone looks: every kind of event agents may add.
        agent_api(ladder, "POST", f"/runs/{run['id']}/events", {"events": [
            {"type": "input", "input": {"message": OUT_OF_PRE, "href": JS_URL, "text": TEXT}},
            {"type": "tool_call", "name": SCRIPT, "arguments": {"q": IMG}, "result": TEXT},
            {"type": "output", "output": OUT_OF_TEXTAREA},
        ]})  # fmt: skip
        runs.append(run)
    approved, rejected = runs

    sign_in(page.context, person, live_server)
    page.goto(f"{live_server.url}/runs/{approved['id']}/")
    assert_inert(page, *HOSTILE)
    page.keyboard.press("a")
    expect(page).to_have_url(f"{live_server.url}/runs/{rejected['id']}/")
    page.keyboard.press("r")
    expect(page.locator("#run-panel input[name=reason]")).to_be_focused()
    page.keyboard.type("not this one")
    page.keyboard.press("Enter")
    expect(page).to_have_url(f"{live_server.url}/?done=1")

    # After the decisions: the approved action is claimed, carried out and reported, with
    # hostile text in every report; both runs get an outcome label with a hostile note.
    agent_api(ladder, "POST", f"/runs/{approved['id']}/claim")
    agent_api(ladder, "POST", f"/runs/{approved['id']}/events", {
        "type": "tool_call", "phase": "execution", "name": SVG, "arguments": {"x": ALERT},
        "result": OUT_OF_PRE})  # fmt: skip
    agent_api(ladder, "POST", f"/runs/{approved['id']}/result", {
        "status": "failed", "error": TEXT, "output": {"html": IMG, "link": JS_URL}})  # fmt: skip
    for run, label in ((approved, "wrong"), (rejected, "correct")):
        agent_api(ladder, "POST", f"/runs/{run['id']}/outcome", {
            "label": label, "source": IMG, "note": TEXT})  # fmt: skip
    assert Run.objects.get(pk=approved["id"]).status == RunStatus.FAILED

    # The history: each run's summary and value as text.
    page.goto(f"{live_server.url}/history/")
    expect(page.locator("tr[data-run]")).to_have_count(2)
    assert_inert(page, CURRENCY)
    for row in page.locator("tr[data-run] a.open").all():
        assert row.inner_text().startswith(f"{SCRIPT} {IMG}")
    # Its search box gets the text back as its value, and finds the runs by it.
    page.goto(f"{live_server.url}/history/?q={quote(SCRIPT)}")
    expect(page.locator("#h-q")).to_have_value(SCRIPT)
    assert_inert(page, CURRENCY)
    page.goto(f"{live_server.url}/history/?q={quote(OUT_OF_ATTRIBUTE)}")
    expect(page.locator("#h-q")).to_have_value(OUT_OF_ATTRIBUTE)
    assert_inert(page)

    # The replay: context added later, the execution report, the result and the labels.
    for run in runs:
        page.goto(f"{live_server.url}/runs/{run['id']}/replay")
        expect(page.locator("#check-complete")).to_contain_text("✓ Complete")
        assert_inert(page, SCRIPT, IMG, SVG, MD_LINK, JS_URL, OUT_OF_PRE, OUT_OF_TEXTAREA)

    # The workflow page compares the draft with people: the rejected refund is listed.
    page.goto(f"{live_server.url}/workflows/{ladder.l3.slug}/")
    expect(page.locator("#mistakes-count")).to_have_text("1")
    assert_inert(page, CURRENCY, charts=True)
    page.goto(f"{live_server.url}/workflows/{ladder.l3.slug}/policy/")
    assert_inert(page, charts=True)

    # A backtest of the draft lists the same would-be mistake with its summary.
    backtest = backtest_start(workflow=ladder.l3, by=person, version=draft)
    page.goto(f"{live_server.url}/workflows/{ladder.l3.slug}/backtests/{backtest.pk}/")
    expect(page.locator("main")).to_contain_text(f"{SCRIPT} {IMG}")
    assert_inert(page, CURRENCY, f"{SCRIPT} {IMG} {SVG} {MD_LINK}", charts=True)

    # A promotion request and the dossiers (the note is a person's text, hostile too).
    assist = Workflow.objects.create(slug="assist", name="Assist", rung=0, owner=person)
    ActionType.objects.create(workflow=assist, name="reply.send")
    for role in ("owner", "compliance"):
        role_grant(workflow=assist, user=person, role=role, by=None)
    promotion = promotion_request(workflow=assist, by=person, note=TEXT)
    for path in (
        f"/promotions/{promotion.pk}/",
        f"/promotions/{promotion.pk}/dossier",
        f"/workflows/{ladder.l3.slug}/dossier",
    ):
        page.goto(f"{live_server.url}{path}")
        assert_inert(page, charts=True)
    page.goto(f"{live_server.url}/promotions/{promotion.pk}/")
    expect(page.locator("blockquote.note")).to_contain_text(SCRIPT)
