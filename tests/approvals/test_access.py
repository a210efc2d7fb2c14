"""Every role x every view and partial: the status code each pair must get."""

import pytest
from django.test import Client

from approvals import services
from approvals.review import snapshot_hash
from approvals.roles import role_grant
from tests.factories import UserFactory, WorkflowFactory
from traces.models import Run

pytestmark = pytest.mark.django_db

ROLES = ["anonymous", "rev", "owner", "compliance", "admin", "stranger", "other_reviewer"]

# view name → expected status per role, in ROLES order:
#                  anon  rev  owner compl admin stranger other_reviewer
# fmt: off
EXPECTED = {
    # Home: owners land on their workflows, compliance on the promotions (302).
    "queue":          (302, 200, 302, 302, 200, 200, 200),
    "queue_partial":  (302, 200, 302, 302, 200, 200, 200),
    "queue_page":     (302, 200, 200, 200, 200, 200, 200),
    "run":            (302, 200, 200, 200, 200, 404, 404),
    "run_partial":    (302, 200, 200, 200, 200, 404, 404),
    "replay":         (302, 200, 200, 200, 200, 404, 404),
    # The run waits: its trace downloads once it is decided (409 until then).
    "replay_json":    (302, 409, 409, 409, 409, 404, 404),
    "decide":         (302, 302, 403, 403, 302, 404, 404),
    "decide_partial": (302, 200, 403, 403, 200, 404, 404),
    "roles":          (302, 404, 200, 404, 200, 404, 404),
    "roles_post":     (302, 404, 302, 404, 302, 404, 404),
    "settings":       (302, 403, 200, 403, 200, 404, 404),
    "settings_post":  (302, 403, 302, 403, 302, 404, 404),
    "audit":          (302, 200, 200, 200, 200, 200, 200),
}
# fmt: on
MATRIX = {view: dict(zip(ROLES, codes, strict=True)) for view, codes in EXPECTED.items()}


@pytest.fixture
def other_reviewer(db):
    other = WorkflowFactory(slug="elsewhere", rung=3)
    user = UserFactory(username="other_reviewer")
    role_grant(workflow=other, user=user, role="reviewer", by=None)
    return user


def request_view(view, client, run, flows):
    htmx = {"HX-Request": "true"}
    if view == "queue":
        return client.get("/")
    if view == "queue_page":
        return client.get("/queue/")
    if view == "queue_partial":
        return client.get("/?queue=l3", headers=htmx)
    if view == "run":
        return client.get(f"/runs/{run.id}/")
    if view == "run_partial":
        return client.get(f"/runs/{run.id}/", headers=htmx)
    if view == "replay":
        return client.get(f"/runs/{run.id}/replay")
    if view == "replay_json":
        return client.get(f"/runs/{run.id}/replay.json")
    if view in ("decide", "decide_partial"):
        fresh = Run.objects.select_related("workflow").get(pk=run.pk)
        digest = snapshot_hash(services.run_snapshot(run=fresh))
        data = {"seen_hash": digest, "seen_version": fresh.version, "verdict": "approve"}
        return client.post(
            f"/runs/{run.id}/decide", data, headers=htmx if view == "decide_partial" else {}
        )
    if view == "roles":
        return client.get(f"/workflows/{flows['l3'].slug}/roles/")
    if view == "roles_post":
        return client.post(
            f"/workflows/{flows['l3'].slug}/roles/",
            {"username": "stranger", "role": "compliance", "action": "grant"},
        )
    if view == "settings":
        return client.get(f"/workflows/{flows['l3'].slug}/settings")
    if view == "settings_post":
        return client.post(
            f"/workflows/{flows['l3'].slug}/settings",
            {"amount": "2", "unit": "3600", "action": "escalate"},
        )
    if view == "audit":
        return client.get("/audit/")
    raise AssertionError(view)


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("view", list(MATRIX))
def test_each_role_gets_the_right_status_on_each_view(
    view, role, people, flows, submit, other_reviewer
):
    run = submit("l3")
    client = Client()
    if role != "anonymous":
        user = other_reviewer if role == "other_reviewer" else people[role]
        client.force_login(user)
    resp = request_view(view, client, run, flows)
    assert resp.status_code == MATRIX[view][role], (view, role, resp.status_code)
    if resp.status_code == 302 and role == "anonymous":
        assert resp["Location"].startswith("/accounts/login/")
    decided = Run.objects.get(pk=run.pk).status != "pending_review"
    assert decided == (view.startswith("decide") and role in ("rev", "admin"))


def test_nothing_of_another_workflow_shows_in_a_reviewers_queue(
    people, flows, submit, other_reviewer, client
):
    submit("l3")
    submit("l1")
    client.force_login(other_reviewer)
    page = client.get("/").content.decode()
    for slug in ("approvals", "drafts", "picks"):
        assert slug not in page
    assert "Nothing waits for you" in page
    filtered = client.get("/?workflow=approvals").content.decode()
    assert "Nothing waits for you" in filtered


def test_csrf_is_enforced_on_decisions(people, flows, submit):
    run = submit("l3")
    client = Client(enforce_csrf_checks=True)
    client.force_login(people["rev"])
    resp = client.post(
        f"/runs/{run.id}/decide", {"verdict": "approve", "seen_hash": "x", "seen_version": 1}
    )
    assert resp.status_code == 403
    assert Run.objects.get(pk=run.pk).status == "pending_review"


def test_pages_carry_a_content_security_policy_that_forbids_inline_script(people, login):
    resp = login(people["rev"]).get("/")
    policy = resp["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy.split("style-src")[0]
    assert "object-src 'none'" in policy


def test_static_files_are_served_by_the_app_itself(client):
    resp = client.get("/static/ladder.css")
    assert resp.status_code == 200
    assert b"--accent" in b"".join(resp.streaming_content)


def test_the_roles_page_lists_holders_in_a_constant_number_of_queries(
    people, flows, login, django_assert_max_num_queries
):
    client = login(people["owner"])
    with django_assert_max_num_queries(12) as few:
        page = client.get(f"/workflows/{flows['l3'].slug}/roles/").content.decode()
    for name in ("rev", "rev2", "compliance", "admin"):
        assert f"<td>{name}</td>" in page
    assert "<td>stranger</td>" not in page
    for i in range(10):
        role_grant(
            workflow=flows["l3"], user=UserFactory(username=f"extra{i}"), role="reviewer", by=None
        )
    with django_assert_max_num_queries(len(few.captured_queries)):
        client.get(f"/workflows/{flows['l3'].slug}/roles/")
