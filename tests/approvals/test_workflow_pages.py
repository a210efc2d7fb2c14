"""The workflow pages: the list, one workflow, its policy (versions, diff, JSON) and the
owner's policy editor, through the Django test client as people use them."""

import json

import pytest

from approvals.roles import role_grant
from ladder.models import PolicyVersion
from tests.factories import UserFactory, WorkflowFactory
from traces.services.policy import policy_set

pytestmark = pytest.mark.django_db

HTMX = {"HX-Request": "true"}


def envelope(cap="200.00", *extra):
    return {
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
            *extra,
        ],
    }


FRAUD = {
    "id": "fraud",
    "kind": "flag",
    "flag": "fraud_adjacent",
    "then": "escalate",
    "control": "rbac",
    "note": "fraud team asked for this",
}


@pytest.fixture
def other_owner(db):
    """The owner of another workflow: no role on the `flows` workflows."""
    other = WorkflowFactory(slug="elsewhere", rung=3)
    user = UserFactory(username="other_owner")
    role_grant(workflow=other, user=user, role="owner", by=None)
    return user


# -- who may see and do what ---------------------------------------------------------------

ROLES = ["anonymous", "rev", "owner", "compliance", "admin", "stranger", "other_owner"]
# fmt: off
EXPECTED = {
    #             anon  rev  owner compl admin stranger other_owner
    "list":      (302, 200, 200, 200, 200, 200, 200),
    "detail":    (302, 200, 200, 200, 200, 404, 404),
    "policy":    (302, 200, 200, 200, 200, 404, 404),
    "json":      (302, 200, 200, 200, 200, 404, 404),
    "edit":      (302, 403, 200, 403, 200, 404, 404),
    "preview":   (302, 403, 200, 403, 200, 404, 404),
    "save":      (302, 403, 302, 403, 302, 404, 404),
}
# fmt: on


def request_view(view, client, slug, based_on):
    base = f"/workflows/{slug}"
    form = {"document": json.dumps(envelope("150")), "note": "", "based_on": based_on}
    return {
        "list": lambda: client.get("/workflows/"),
        "detail": lambda: client.get(f"{base}/"),
        "policy": lambda: client.get(f"{base}/policy/"),
        "json": lambda: client.get(f"{base}/policy.json"),
        "edit": lambda: client.get(f"{base}/policy/edit"),
        "preview": lambda: client.post(
            f"{base}/policy/edit", {**form, "intent": "preview"}, headers=HTMX
        ),
        "save": lambda: client.post(f"{base}/policy/edit", {**form, "intent": "save"}),
    }[view]()


@pytest.mark.parametrize("view", list(EXPECTED))
@pytest.mark.parametrize("role", ROLES)
def test_each_role_gets_the_status_it_must_on_every_workflow_page(
    view, role, client, people, flows, other_owner
):
    wf = flows["l3"]
    policy_set(workflow=wf, document=envelope(), by=people["owner"])
    if role == "other_owner":
        client.force_login(other_owner)
    elif role != "anonymous":
        client.force_login(people[role])
    response = request_view(view, client, wf.slug, based_on=1)
    assert response.status_code == EXPECTED[view][ROLES.index(role)]
    saved = PolicyVersion.objects.filter(workflow=wf).count()
    assert saved == (2 if view == "save" and role in ("owner", "admin") else 1)


def test_the_list_shows_only_the_workflows_a_person_has_a_role_on(
    login, people, flows, other_owner
):
    policy_set(workflow=flows["l3"], document=envelope(), by=None)
    page = login(people["rev"]).get("/workflows/").content.decode()
    for slug in ("drafts", "picks", "approvals"):
        assert f"<code>{slug}</code>" in page
    assert "elsewhere" not in page
    assert "version 1: draft, evaluated in shadow" in page
    assert 'href="/workflows/"' in page  # the menu offers the list
    mine = login(other_owner).get("/workflows/").content.decode()
    assert "<code>elsewhere</code>" in mine and "approvals" not in mine


def test_people_without_any_role_see_no_workflows_entry_in_the_menu(login, people, flows):
    page = login(people["stranger"]).get("/").content.decode()
    assert 'href="/workflows/"' not in page
    listing = login(people["stranger"]).get("/workflows/").content.decode()
    assert "You have no role on any workflow yet" in listing


def test_only_owners_see_the_edit_links(login, people, flows):
    wf = flows["l3"]
    policy_set(workflow=wf, document=envelope(), by=None)
    edit = f'href="/workflows/{wf.slug}/policy/edit"'
    for name, shown in (("rev", False), ("compliance", False), ("owner", True), ("admin", True)):
        client = login(people[name])
        for path in (f"/workflows/{wf.slug}/", f"/workflows/{wf.slug}/policy/", "/workflows/"):
            assert (edit in client.get(path).content.decode()) is shown, (name, path)


# -- the workflow page ---------------------------------------------------------------------


def test_the_workflow_page_shows_rung_actions_deadline_and_the_draft(login, people, flows):
    wf = flows["l3"]
    wf.review_deadline_seconds = 2 * 3600
    wf.save()
    policy_set(workflow=wf, document=envelope("200.00", FRAUD), by=people["owner"])
    page = login(people["rev"]).get(f"/workflows/{wf.slug}/").content.decode()
    assert 'aria-current="step"><span class="badge r3">L3</span> Execute with approval' in page
    assert "<code>refund.issue</code>" in page
    assert "Version 1 is a draft" in page
    assert "refund.issue above 200.00 EUR always goes to a person" in page
    assert "Proposals flagged fraud_adjacent always go to a person." in page
    assert "Note: fraud team asked for this" in page
    assert "A run may wait <b>2 hours</b>" in page and "<b>denied</b>" in page


def test_at_l4_the_page_says_the_policy_is_in_force_or_missing(login, people, flows):
    wf = flows["l3"]
    wf.rung = 4
    wf.save()
    client = login(people["rev"])
    assert "No policy is in force" in client.get(f"/workflows/{wf.slug}/").content.decode()
    policy_set(workflow=wf, document=envelope(), by=None)
    page = client.get(f"/workflows/{wf.slug}/").content.decode()
    assert "Version 1 is in force" in page
    assert 'id="shadow"' not in page


# -- the policy page, its diff and its JSON ------------------------------------------------


def test_the_policy_page_lists_rules_with_ids_controls_json_and_history(login, people, flows):
    wf = flows["l3"]
    policy_set(workflow=wf, document=envelope(), by=people["owner"], note="first cut")
    page = login(people["compliance"]).get(f"/workflows/{wf.slug}/policy/").content.decode()
    assert "Version 1 is a draft" in page
    assert "<code>cap</code> · control <code>value_cap</code>" in page
    assert "<code>actions</code> · control <code>allowed_tools</code>" in page
    assert "5% of the actions the policy allows are sampled for a human audit." in page
    assert "&quot;max&quot;: &quot;200.00&quot;" in page  # the JSON, escaped
    assert "first cut" in page and ">owner<" in page


def test_the_diff_shows_sentences_and_json_lines_added_and_removed(login, people, flows):
    wf = flows["l3"]
    policy_set(workflow=wf, document=envelope("200.00"), by=people["owner"])
    policy_set(workflow=wf, document=envelope("150.00", FRAUD), by=people["owner"])
    policy_set(workflow=wf, document=envelope("150.00"), by=people["owner"])
    client = login(people["rev"])

    page = client.get(f"/workflows/{wf.slug}/policy/?from=1&to=2").content.decode()
    diff = page[page.index('id="policy-diff"') :]
    assert "2 added, 1 removed" in diff
    assert '<span class="del">- refund.issue above 200.00 EUR' in diff
    assert '<span class="add">+ refund.issue above 150.00 EUR' in diff
    assert '<span class="add">+ Proposals flagged fraud_adjacent always go to a person.' in diff
    assert '<span class="same">  Any action other than refund.issue is refused.' in diff
    assert '<span class="del">-       &quot;max&quot;: &quot;200.00&quot;,</span>' in diff
    assert '<span class="add">+       &quot;max&quot;: &quot;150.00&quot;,</span>' in diff
    assert '<span class="add">+       &quot;flag&quot;: &quot;fraud_adjacent&quot;,</span>' in diff

    # By default: the previous version against the newest (3 dropped the fraud rule).
    default = client.get(f"/workflows/{wf.slug}/policy/").content.decode()
    assert "version 2 → 3: <span" in default and "0 added, 1 removed" in default

    # The compare form swaps the diff alone.
    partial = client.get(f"/workflows/{wf.slug}/policy/?from=0&to=1", headers=HTMX)
    body = partial.content.decode()
    assert body.lstrip().startswith('<div id="policy-diff">')
    assert "3 added, 0 removed" in body

    missing = client.get(f"/workflows/{wf.slug}/policy/?from=1&to=9")
    assert missing.status_code == 404
    assert "There is no version 9 of this policy." in missing.content.decode()


def test_policy_json_is_the_api_shape_for_people(login, people, flows, agent):
    wf = flows["l3"]
    policy_set(workflow=wf, document=envelope(), by=people["owner"], note="n1")
    data = login(people["rev"]).get(f"/workflows/{wf.slug}/policy.json").json()
    api = agent(wf).get(f"/workflows/{wf.slug}").json()
    assert data["policy"] is None and api["policy"] is None
    for key in ("version", "rules", "text", "audit_sample_rate", "note"):
        assert data["draft_policy"][key] == api["draft_policy"][key]
    assert data["versions"][0]["version"] == 1 and data["versions"][0]["note"] == "n1"
    # People see who saved it; agents are never told a person's name.
    assert data["draft_policy"]["created_by"] == "owner"
    assert api["draft_policy"]["created_by"] is None
    assert "owner" not in json.dumps(api)


# -- the editor ----------------------------------------------------------------------------

BROKEN = {
    "audit_sample_rate": 0.05,
    "rules": [
        {"id": "actions", "kind": "allow_actions", "actions": ["refund.issue"], "control": "rbac"},
        {"id": "odd", "kind": "magic", "control": "rbac", "then": "deny"},
        {
            "id": "cap",
            "kind": "value_cap",
            "action": "refund.issue",
            "max": "lots",
            "then": "escalate",
            "control": "value_cap",
        },
        {
            "id": "rate",
            "kind": "rate_limit",
            "action": "refund.issue",
            "window_seconds": 0,
            "max_count": 5,
            "per": "workflow",
            "then": "escalate",
            "control": "rate_limit",
        },
        {
            "id": "other",
            "kind": "value_cap",
            "action": "voucher.issue",
            "max": "5",
            "then": "deny",
            "control": "value_cap",
        },
    ],
}


def edit(client, wf, document, *, intent="save", based_on=0, note="", htmx=False):
    text = document if isinstance(document, str) else json.dumps(document, indent=2)
    return client.post(
        f"/workflows/{wf.slug}/policy/edit",
        {"document": text, "note": note, "based_on": based_on, "intent": intent},
        headers=HTMX if htmx else {},
    )


def test_the_editor_starts_from_the_current_version_or_a_starter(login, people, flows):
    wf = flows["l2"]
    client = login(people["owner"])
    page = client.get(f"/workflows/{wf.slug}/policy/edit").content.decode()
    assert "Save as version 1" in page
    assert "saving makes version 1 the draft" in page
    # The starter lists the workflow's actions, and is itself a valid policy.
    assert "&quot;refund.issue&quot;,\n        &quot;voucher.issue&quot;" in page
    policy_set(workflow=wf, document=envelope(), by=None)
    page = client.get(f"/workflows/{wf.slug}/policy/edit").content.decode()
    assert "Save as version 2" in page and "&quot;200.00&quot;" in page
    wf.rung = 4
    wf.save()
    page = client.get(f"/workflows/{wf.slug}/policy/edit").content.decode()
    assert "saving puts version 2 in force" in page


def test_an_invalid_document_shows_every_problem_and_saves_nothing(login, people, flows):
    wf = flows["l3"]
    client = login(people["owner"])
    response = edit(client, wf, BROKEN)
    assert response.status_code == 422
    page = response.content.decode()
    assert "Nothing was saved." in page
    assert "rule <code>odd</code>, field <code>kind</code>: unknown kind &#x27;magic&#x27;" in page
    assert "rule <code>cap</code>, field <code>max</code>: must be a decimal number" in page
    assert "rule <code>rate</code>, field <code>window_seconds</code>: must be a whole" in page
    assert (
        "rule <code>other</code>, field <code>action</code>: &#x27;voucher.issue&#x27; is not"
        in page
    )
    # What was typed is still there, to be fixed.
    assert "&quot;lots&quot;" in page
    assert not PolicyVersion.objects.filter(workflow=wf).exists()


def test_text_that_is_not_json_is_named_with_its_line(login, people, flows):
    wf = flows["l3"]
    response = edit(login(people["owner"]), wf, '{"audit_sample_rate": 0.1,\n "rules": [}')
    assert response.status_code == 422
    assert "not valid JSON" in response.content.decode()
    assert "line 2" in response.content.decode()
    assert not PolicyVersion.objects.exists()


def test_preview_swaps_in_the_sentences_or_the_problems_and_saves_nothing(login, people, flows):
    wf = flows["l3"]
    client = login(people["owner"])
    good = edit(client, wf, envelope("200.00", FRAUD), intent="preview", htmx=True)
    assert good.status_code == 200
    body = good.content.decode()
    assert body.lstrip().startswith('<section id="policy-preview"')
    assert "refund.issue above 200.00 EUR always goes to a person" in body
    assert "<code>fraud</code> · control <code>rbac</code>" in body
    bad = edit(client, wf, BROKEN, intent="preview", htmx=True)
    assert bad.status_code == 422
    assert "rule <code>cap</code>, field <code>max</code>" in bad.content.decode()
    # Without JavaScript the same button re-renders the whole page, text kept.
    plain = edit(client, wf, BROKEN, intent="preview")
    assert plain.status_code == 422
    page = plain.content.decode()
    assert "<textarea" in page and "&quot;lots&quot;" in page
    assert "rule <code>cap</code>, field <code>max</code>" in page
    assert not PolicyVersion.objects.exists()


def test_a_save_makes_version_n_plus_1_and_the_api_shows_it(login, people, flows, agent):
    wf = flows["l3"]
    policy_set(workflow=wf, document=envelope(), by=None)
    client = login(people["owner"])
    response = edit(client, wf, envelope("150.00", FRAUD), based_on=1, note="tighter cap")
    assert response.status_code == 302
    assert response.url == f"/workflows/{wf.slug}/policy/"
    page = client.get(response.url).content.decode()
    assert "Saved version 2: it is now the draft, evaluated in shadow." in page
    version = PolicyVersion.objects.get(workflow=wf, number=2)
    assert version.created_by == people["owner"] and version.note == "tighter cap"
    assert version.document["rules"][2]["note"] == "fraud team asked for this"
    api = agent(wf).get(f"/workflows/{wf.slug}").json()
    assert api["draft_policy"]["version"] == 2
    assert api["draft_policy"]["rules"][1]["max"] == "150.00"
    assert "Proposals flagged fraud_adjacent always go to a person." in api["draft_policy"]["text"]


def test_a_save_on_a_stale_version_is_refused_and_keeps_the_text(login, people, flows):
    wf = flows["l3"]
    policy_set(workflow=wf, document=envelope(), by=None)
    client = login(people["owner"])
    assert edit(client, wf, envelope("150.00"), based_on=1).status_code == 302
    # A second editor opened on version 1 and saves after the first.
    response = edit(login(people["admin"]), wf, envelope("120.00"), based_on=1)
    assert response.status_code == 409
    page = response.content.decode()
    assert "version 2 was saved by owner after you opened the editor" in page
    assert "&quot;120.00&quot;" in page and "Save as version 3" in page
    assert 'name="based_on" value="2"' in page
    assert PolicyVersion.objects.filter(workflow=wf).count() == 2


def test_a_note_too_long_is_named_and_nothing_saved(login, people, flows):
    wf = flows["l3"]
    response = edit(login(people["owner"]), wf, envelope(), note="x" * 301)
    assert response.status_code == 422
    assert "field <code>note</code>" in response.content.decode()
    assert not PolicyVersion.objects.exists()


def test_saving_without_the_csrf_token_is_refused(people, flows):
    from django.test import Client

    client = Client(enforce_csrf_checks=True)
    client.force_login(people["owner"])
    response = edit(client, flows["l3"], envelope())
    assert response.status_code == 403
    assert not PolicyVersion.objects.exists()


def test_the_pages_take_no_more_queries_with_more_versions_and_workflows(
    login, people, flows, django_assert_max_num_queries
):
    wf = flows["l3"]
    client = login(people["admin"])
    for cap in ("200", "190"):
        policy_set(workflow=wf, document=envelope(cap), by=people["owner"])
    paths = ("/workflows/", f"/workflows/{wf.slug}/", f"/workflows/{wf.slug}/policy/")
    counts = {}
    for path in paths:
        with django_assert_max_num_queries(25) as few:
            assert client.get(path).status_code == 200
        counts[path] = len(few.captured_queries)
    for n in range(6):
        policy_set(workflow=wf, document=envelope(str(180 - n)), by=people["admin"])
        role_grant(workflow=WorkflowFactory(), user=people["admin"], role="reviewer", by=None)
    for path in paths:
        with django_assert_max_num_queries(counts[path]):
            assert client.get(path).status_code == 200
