"""The owner's policy editor in a real browser: an invalid document shows its problems in
place, the fixed one previews as sentences, and saving makes the next version."""

import json
import re

import pytest
from playwright.sync_api import expect

from approvals.roles import role_grant
from ladder.models import PolicyVersion
from tests.browser.support import screenshot, sign_in
from tests.browser.test_csp import RECORD_VIOLATIONS
from traces.services.policy import policy_set

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def document(cap, window):
    return json.dumps(
        {
            "audit_sample_rate": 0.05,
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
                    "max": cap,
                    "currency": "EUR",
                    "then": "escalate",
                    "control": "value_cap",
                },
                {
                    "id": "daily",
                    "kind": "rate_limit",
                    "action": "refund.issue",
                    "window_seconds": window,
                    "max_count": 50,
                    "per": "workflow",
                    "then": "escalate",
                    "control": "rate_limit",
                },
            ],
        },
        indent=2,
    )


def test_an_owner_fixes_an_invalid_policy_previews_it_and_saves_version_2(
    new_context, live_server, ladder, make_reviewer
):
    owner = make_reviewer("owner")
    wf = ladder.l3
    role_grant(workflow=wf, user=owner, role="owner", by=None)
    policy_set(workflow=wf, document=json.loads(document("200.00", 3600)), by=owner)
    ctx = new_context()
    ctx.add_init_script(RECORD_VIOLATIONS)
    sign_in(ctx, owner, live_server)
    page = ctx.new_page()

    page.goto(f"{live_server.url}/workflows/{wf.slug}/")
    page.get_by_role("link", name="Edit the policy").click()
    expect(page).to_have_url(f"{live_server.url}/workflows/{wf.slug}/policy/edit")
    expect(page.locator("#save-means")).to_contain_text("saving makes version 2 the draft")
    save = page.get_by_role("button", name="Save as version 2")
    expect(save).to_be_visible()

    editor = page.locator("#policy-document")
    editor.fill(document("a lot", 0))
    page.evaluate("window.__marker = 1")
    page.get_by_role("button", name="Preview").click()
    problems = page.locator("#policy-preview ul.problems li")
    expect(problems).to_have_count(2)
    expect(problems.nth(0)).to_have_text(
        "rule cap, field max: must be a decimal number or a decimal string"
    )
    expect(problems.nth(1)).to_contain_text("rule daily, field window_seconds: must be a whole")
    # Swapped in place: the page did not reload and what was typed is still there.
    assert page.evaluate("window.__marker") == 1
    expect(editor).to_have_value(document("a lot", 0))
    screenshot(page, "policy-problems.png")

    editor.fill(document("150.00", 86400))
    page.get_by_role("button", name="Preview").click()
    rules = page.locator("#policy-preview ol.rules li")
    expect(rules).to_have_count(4)
    expect(rules.nth(1)).to_contain_text("refund.issue above 150.00 EUR always goes to a person")
    expect(rules.nth(2)).to_contain_text(
        "At most 50 refund.issue per day for the whole workflow; beyond that, a person decides."
    )
    expect(rules.nth(2)).to_contain_text("daily · control rate_limit")
    assert PolicyVersion.objects.filter(workflow=wf).count() == 1, "a preview saved"

    page.fill("#policy-note", "cap down to 150, daily limit")
    save.click()
    expect(page).to_have_url(f"{live_server.url}/workflows/{wf.slug}/policy/")
    expect(page.locator(".messages")).to_contain_text(
        "Saved version 2: it is now the draft, evaluated in shadow."
    )
    expect(page.locator("#policy-state")).to_contain_text("Version 2 is a draft")
    expect(page.locator("#versions tbody tr").first).to_contain_text("cap down to 150, daily limit")
    diff = page.locator("#diff-sentences")
    expect(diff.locator(".del")).to_contain_text(["refund.issue above 200.00 EUR"])
    expect(diff.locator(".add")).to_contain_text(["refund.issue above 150.00 EUR"])
    screenshot(page, "policy-saved.png")
    saved = PolicyVersion.objects.get(workflow=wf, number=2)
    assert saved.created_by == owner and saved.document["rules"][1]["max"] == "150.00"
    assert page.evaluate("window.__csp") == []
    expect(page.get_by_role("link", name=re.compile("Edit: save as version 3"))).to_be_visible()
