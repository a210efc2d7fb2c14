"""The reviewer's screen reads like a form (issue 13): params as labelled fields,
decisions named for what happened, queue navigation that keeps the filter, the own-action
form checked in place, the menu by role, My decisions, error pages, landing pages."""

import re
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone

from approvals import views
from approvals.models import Review
from approvals.review import decision_words
from approvals.templatetags.ladder_tags import ago, ago_text
from approvals.templatetags.params import money_text, param_rows
from traces.models import Run, RunStatus

REFUND = {
    "order_id": {"type": "string"},
    "amount": {"type": "number"},
    "currency": {"type": "string"},
    "reason": {"type": "string"},
}


# -- pure: params as fields, words, times -----------------------------------------------------


def test_the_value_param_is_shown_as_money_with_its_currency_and_the_currency_row_folds():
    rows = param_rows(
        {"amount": 42, "currency": "EUR", "order_id": "A-1", "reason": "damaged"},
        schema=REFUND,
        value_param="amount",
        currency_param="currency",
    )
    assert [(r["label"], r["kind"], r["shown"]) for r in rows] == [
        ("Order id", "text", "A-1"),
        ("Amount", "money", "42.00 EUR"),
        ("Reason", "text", "damaged"),
    ]


def test_money_keeps_its_precision_and_accepts_decimal_strings():
    assert money_text("12.5", "EUR") == "12.50 EUR"
    assert money_text(0.125) == "0.125"
    assert money_text(True) is None and money_text("twelve") is None


def test_long_text_is_multiline_unknown_keys_are_flagged_and_pseudonyms_stay_as_they_are():
    rows = param_rows(
        {"to": "<EMAIL:3f9a1c2b4d5e6f70>", "body": "Hello,\n\nyour parcel.", "cc": ["x"]},
        schema={"to": {"type": "string", "title": "Recipient"}, "body": {"type": "string"}},
    )
    by_name = {r["name"]: r for r in rows}
    assert by_name["to"]["label"] == "Recipient"
    assert by_name["to"]["shown"] == "<EMAIL:3f9a1c2b4d5e6f70>"
    assert by_name["body"]["kind"] == "multiline"
    assert by_name["cc"]["unknown"] and by_name["cc"]["kind"] == "json"
    assert [r["name"] for r in rows] == ["to", "body", "cc"]  # the schema's order first


def test_decisions_are_named_for_what_happened():
    assert decision_words(kind="draft", verdict="submitted", edit_distance=0.1) == (
        "Submitted with edits"
    )
    assert decision_words(kind="draft", verdict="submitted", edit_distance=0.0) == (
        "Submitted as drafted"
    )
    assert decision_words(kind="draft", verdict="discarded") == "Discarded"
    assert decision_words(kind="pick", verdict="picked", chosen_option=0) == (
        "Picked the agent's first choice"
    )
    assert decision_words(kind="pick", verdict="picked", chosen_option=2) == (
        "Picked another option"
    )
    assert decision_words(kind="pick", verdict="picked") == "Wrote their own"
    assert decision_words(kind="approve", verdict="approved", executor="server") == (
        "Approved — executed by the server"
    )
    assert decision_words(kind="approve", verdict="approved", executor="agent") == (
        "Approved — the agent carries it out"
    )
    assert decision_words(kind="approve", verdict="rejected") == "Rejected"


def test_times_read_as_ago_with_the_exact_utc_time_on_hover():
    assert ago_text(30) == "just now"
    assert ago_text(4 * 60 + 5) == "4 min ago"
    assert ago_text(3 * 3600) == "3 h ago"
    assert ago_text(86400) == "1 day ago" and ago_text(3 * 86400) == "3 days ago"
    assert ago_text(-300) == "in 5 min"
    at = timezone.now() - timedelta(minutes=4)
    html = ago(at)
    assert ">4 min ago</time>" in html
    assert f'title="{at.strftime("%Y-%m-%d %H:%M:%S")} UTC"' in html


# -- pages --------------------------------------------------------------------------------------


pytestmark_db = pytest.mark.django_db


def _decide(client, run, seen, **data):
    return client.post(f"/runs/{run.id}/decide", {**seen(run), **data})


@pytest.mark.django_db
def test_l2_cards_l3_block_and_the_decided_action_show_labelled_fields_with_raw_json(
    submit, login, people, seen
):
    l2 = submit("l2")
    l3 = submit("l3")
    client = login(people["rev"])
    page = client.get(f"/runs/{l2.id}/").content.decode()
    assert page.count('class="params"') == 3  # one per card
    assert '<b class="money">20.00 EUR</b>' in page
    assert "<summary>Raw JSON</summary>" in page

    page = client.get(f"/runs/{l3.id}/").content.decode()
    assert 'id="l3-action"' in page and '<b class="money">42.00 EUR</b>' in page
    assert 'id="actionbar"' in page  # approve and reject in the sticky bar

    assert _decide(client, l3, seen, verdict="approve").status_code == 302
    page = client.get(f"/runs/{l3.id}/").content.decode()
    assert 'id="decided-action"' in page and '<b class="money">42.00 EUR</b>' in page
    assert "Approved — the agent carries it out" in page


@pytest.mark.django_db
def test_l1_words_say_whether_the_draft_was_edited_or_discarded(submit, login, people, seen):
    client = login(people["rev"])
    as_drafted, edited, discarded = submit("l1"), submit("l1"), submit("l1")
    run = Run.objects.get(pk=as_drafted.id)
    _decide(client, run, seen, verdict="submit")
    _decide(
        client,
        edited,
        seen,
        verdict="submit",
        param__to=edited.proposal["params"]["to"],
        param__body="Hello, it left today.",
    )
    _decide(client, discarded, seen, verdict="discard")
    words = {
        r.id: re.search(
            r'id="decision-words">([^<]+)<', client.get(f"/runs/{r.id}/").content.decode()
        )[1]
        for r in (as_drafted, edited, discarded)
    }
    assert words == {
        as_drafted.id: "Submitted as drafted",
        edited.id: "Submitted with edits",
        discarded.id: "Discarded",
    }
    # The API's values are unchanged.
    assert Review.objects.get(run_id=edited.id).verdict == Review.Verdict.SUBMITTED
    assert Run.objects.get(pk=discarded.id).status == RunStatus.REJECTED


@pytest.mark.django_db
def test_l2_words_say_which_option_was_taken(submit, login, people, seen):
    client = login(people["rev"])
    first, other, own = submit("l2"), submit("l2"), submit("l2")
    _decide(client, first, seen, verdict="pick", option="0")
    _decide(client, other, seen, verdict="pick", option="2")
    _decide(
        client,
        own,
        seen,
        verdict="own",
        own_action="refund.issue",
        own_params='{"amount": 7}',
    )
    for run, words in (
        (first, "Picked the agent&#x27;s first choice"),
        (other, "Picked another option"),
        (own, "Wrote their own"),
    ):
        assert words in client.get(f"/runs/{run.id}/").content.decode()


@pytest.mark.django_db
def test_next_keeps_the_filter_and_says_where_the_reviewer_is(submit, login, people, seen):
    client = login(people["rev"])
    a, _l2, b, c = submit("l3"), submit("l2"), submit("l3"), submit("l3")
    page = client.get(f"/runs/{b.id}/?queue=l3").content.decode()
    assert re.search(r'id="queue-position">2 of 3 in this filter<', page)
    assert f'href="/runs/{c.id}/?queue=l3" data-key="j"' in page
    assert f'href="/runs/{a.id}/?queue=l3" data-key="k"' in page
    assert f'action="/runs/{b.id}/decide?queue=l3"' in page

    # Deciding goes on to the next run of the same filter (not the L2 one in between).
    response = client.post(f"/runs/{a.id}/decide?queue=l3", {**seen(a), "verdict": "approve"})
    assert response["Location"] == f"/runs/{b.id}/?queue=l3"
    response = client.post(
        f"/runs/{a.id}/decide?queue=l3", {**seen(b), "verdict": "approve"}, HTTP_HX_REQUEST="true"
    )  # an htmx decision on a decided run is refused in place; the next one keeps the filter
    assert response.status_code in (409, 422)
    response = client.post(
        f"/runs/{b.id}/decide?queue=l3", {**seen(b), "verdict": "approve"}, HTTP_HX_REQUEST="true"
    )
    assert response["HX-Push-Url"] == f"/runs/{c.id}/?queue=l3"
    assert 'id="queue-position">1 of 1 in this filter<' in response.content.decode()


@pytest.mark.django_db
def test_filter_counts_narrow_with_the_active_filter(submit, login, people):
    client = login(people["rev"])
    submit("l1"), submit("l3"), submit("l3")
    page = client.get("/?queue=l3").content.decode()
    workflows = re.search(r"<h3>Workflow</h3>(.*?)</ul>", page, re.S)[1]
    assert re.search(r">approvals <span class=\"count\">2<", workflows)
    assert "drafts" not in workflows  # no L3 run of drafts waits
    rungs = re.search(r"<h3>Rung</h3>(.*?)</ul>", page, re.S)[1]
    assert re.search(r"L1 draft <span class=\"count\">1<", rungs)  # other rungs stay offered
    assert re.search(r"Waiting for you <span class=\"count\">2<", page)


@pytest.mark.django_db
def test_new_runs_are_announced_by_a_small_count_endpoint(submit, login, people):
    client = login(people["rev"])
    page = client.get("/?queue=l3").content.decode()
    poll = re.search(r'id="queue-new"[^>]*hx-get="([^"]+)"', page)[1].replace("&amp;", "&")
    assert "every 10s" in page
    assert ">new run" not in client.get(poll).content.decode()
    submit("l3"), submit("l3"), submit("l1")
    answer = client.get(poll).content.decode()
    assert "2 new runs — refresh</a>" in answer
    assert 'href="/?queue=l3"' in answer
    assert "<html" not in answer  # a fragment, not a page


@pytest.mark.django_db
def test_invalid_own_json_keeps_what_was_typed_and_says_where(submit, login, people, seen):
    client = login(people["rev"])
    run = submit("l2")
    typed = '{\n  "amount": 7,\n  "note": oops\n}'
    response = _decide(
        client, run, seen, verdict="own", own_action="refund.issue", own_params=typed
    )
    assert response.status_code == 422
    page = response.content.decode()
    assert "line 3, column 11" in page
    assert '<details class="own" data-edit-open open>' in page
    assert ">{\n  &quot;amount&quot;: 7,\n  &quot;note&quot;: oops\n}</textarea>" in page
    assert Run.objects.get(pk=run.id).status == RunStatus.PENDING_REVIEW

    # htmx: the same, swapped in place.
    response = client.post(
        f"/runs/{run.id}/decide",
        {**seen(run), "verdict": "own", "own_action": "refund.issue", "own_params": typed},
        HTTP_HX_REQUEST="true",
    )
    assert response.status_code == 422 and "line 3, column 11" in response.content.decode()


@pytest.mark.django_db
def test_own_params_are_checked_against_the_schema_and_unknown_keys_flagged(
    submit, login, people, seen
):
    client = login(people["rev"])
    run = submit("l2")
    response = _decide(
        client, run, seen, verdict="own", own_action="refund.issue", own_params='{"amout": 7}'
    )
    page = response.content.decode()
    assert response.status_code == 422
    assert "refund.issue takes no &#x27;amout&#x27; (it takes amount)" in page
    response = _decide(
        client, run, seen, verdict="own", own_action="refund.issue", own_params='{"amount": "x"}'
    )
    assert "&#x27;amount&#x27; must be of type number" in response.content.decode()
    assert not Review.objects.filter(run_id=run.id).exists()


def _menu(page: str) -> list[str]:
    nav = re.search(r'<nav aria-label="Main">(.*?)</nav>', page, re.S)[1]
    links = [re.sub(r"<[^>]+>", "", m) for m in re.findall(r"<a [^>]*>(.*?)</a>", nav, re.S)]
    return [re.sub(r"\s+\d+\+?$", "", link.strip()) for link in links]


@pytest.mark.django_db
def test_the_menu_shows_what_each_persons_roles_reach(flows, login, people):
    menus = {}
    for name in ("rev", "owner", "compliance", "stranger"):
        client = login(people[name])
        menus[name] = _menu(client.get("/workflows/").content.decode())
    assert menus["rev"] == ["Queue", "My decisions", "Audit", "Workflows", "API docs"]
    # History appears once its page exists (another change builds it).
    assert [m for m in menus["owner"] if m != "History"] == [
        "Queue",
        "Workflows",
        "Roles",
        "Promotions",
        "API docs",
    ]
    assert menus["compliance"][:2] == ["Workflows", "Promotions"]
    assert "My decisions" not in menus["compliance"] and "Queue" not in menus["compliance"]
    assert menus["stranger"] == ["Queue", "API docs"]
    page = login(people["rev"]).get("/").content.decode()
    assert re.search(r'<link rel="icon" href="/static/favicon[^"]*\.svg"', page)


@pytest.mark.django_db
def test_the_api_docs_the_menu_links_to_are_served(client):
    assert client.get("/api/v1/docs").status_code == 200


@pytest.mark.django_db
def test_not_found_and_not_allowed_are_styled_pages(submit, login, people, seen, settings):
    settings.DEBUG = False
    run = submit("l3")
    response = login(people["stranger"]).get(f"/runs/{run.id}/")
    assert response.status_code == 404
    page = response.content.decode()
    assert "<h1>Not found</h1>" in page and 'aria-label="Main"' in page
    response = login(people["compliance"]).post(
        f"/runs/{run.id}/decide", {**seen(run), "verdict": "approve"}
    )
    assert response.status_code == 403
    page = response.content.decode()
    assert "<h1>Not allowed</h1>" in page and "you do not review this workflow" in page


@pytest.mark.django_db
def test_my_decisions_lists_the_persons_own_decisions_newest_first_without_a_count(
    submit, login, people, seen, monkeypatch
):
    mine = [submit("l3") for _ in range(3)]
    theirs = submit("l3")
    client = login(people["rev"])
    for run in mine:
        _decide(client, run, seen, verdict="approve")
    _decide(login(people["rev2"]), theirs, seen, verdict="approve")
    client = login(people["rev"])
    monkeypatch.setattr(views, "MY_DECISIONS_PAGE", 2)
    page = client.get("/my-decisions/").content.decode()
    links = re.findall(r'href="/runs/([0-9a-f-]+)/"', page)
    assert links == [str(mine[2].id), str(mine[1].id)]
    assert str(theirs.id) not in page
    assert 'class="count"' not in re.search(r'id="my-decisions".*?</section>', page, re.S)[0]
    older = re.search(r'href="(\?after=[^"]+)" rel="next"', page)[1].replace("&amp;", "&")
    page = client.get("/my-decisions/" + older).content.decode()
    assert re.findall(r'href="/runs/([0-9a-f-]+)/"', page) == [str(mine[0].id)]
    assert "Approved — the agent carries it out" in page


@pytest.mark.django_db
def test_demo_logins_land_where_their_work_is(client, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        call_command("seed_demo", stdout=None)
    from django.contrib.auth.models import User

    landing = {}
    for name in ("reviewer", "owner", "compliance", "admin"):
        client.force_login(User.objects.get(username=name))
        response = client.get("/", follow=True)
        assert response.status_code == 200
        landing[name] = response.request["PATH_INFO"]
        if name in ("reviewer", "admin"):
            assert b"Waiting for you" in response.content
    assert landing["reviewer"] == landing["admin"] == "/"
    assert landing["owner"] == "/workflows/"
    assert landing["compliance"] in ("/promotions/", "/history/")


# -- no surveillance -----------------------------------------------------------------------


@pytest.mark.django_db
def test_no_page_a_compliance_user_reaches_counts_or_ranks_reviewers(
    client, django_capture_on_commit_callbacks
):
    """Reviewers are recorded on their decisions, but nothing counts, rates or ranks
    them (docs/DESIGN.md, privacy): walk every page compliance reaches on the demo with
    two reviewers' decisions in it, and look for a person next to a bare number."""
    from django.contrib.auth.models import User

    from approvals import services
    from approvals.review import snapshot_hash

    with django_capture_on_commit_callbacks(execute=True):
        call_command("seed_demo", stdout=None)
    reviewer = User.objects.get(username="reviewer")
    second = User.objects.create_user(username="second-reviewer")
    from approvals.roles import role_grant
    from ladder.models import Workflow

    for wf in Workflow.objects.all():
        role_grant(workflow=wf, user=second, role="reviewer", by=None)
    waiting = list(Run.objects.filter(status=RunStatus.PENDING_REVIEW, queue="l3"))
    for i, run in enumerate(waiting):
        fresh = Run.objects.select_related("workflow").get(pk=run.pk)
        with django_capture_on_commit_callbacks(execute=True):
            services.review_decide(
                run=fresh,
                reviewer=reviewer if i % 2 else second,
                seen_hash=snapshot_hash(services.run_snapshot(run=fresh)),
                seen_version=fresh.version,
                decision=services.Approval(approve=True, reason=""),
            )
    people = [u.username for u in User.objects.all()]

    client.force_login(User.objects.get(username="compliance"))
    to_visit, seen_urls = ["/", "/my-decisions/"], set()
    while to_visit:
        url = to_visit.pop()
        if url in seen_urls or len(seen_urls) > 120:
            continue
        seen_urls.add(url)
        response = client.get(url)
        if response.status_code != 200 or "text/html" not in response["Content-Type"]:
            continue
        page = response.content.decode()
        for href in re.findall(r'href="(/[^"#?]*)"', page):
            if not href.startswith(("/static/", "/api/", "/admin/", "/accounts/")) and not (
                href.endswith(".json")
            ):
                to_visit.append(href)
        for row in re.findall(r"<tr[^>]*>(.*?)</tr>", page, re.S):
            cells = [
                re.sub(r"<[^>]+>", "", c).strip()
                for c in re.findall(r"<t[dh][^>]*>(.*?)</t[dh]>", row, re.S)
            ]
            named = [c for c in cells if c in people]
            counts = [c for c in cells if re.fullmatch(r"\d+(\.\d+)?\s*%?", c)]
            assert not (named and counts), f"{url} counts a person: {cells}"
        text = re.sub(r"<[^>]+>", " ", page).lower()
        for word in ("leaderboard", "per reviewer", "top reviewers", "decisions per person"):
            assert word not in text, f"{url}: {word}"
    assert len(seen_urls) > 10  # the walk reached the workflow, promotion and run pages
