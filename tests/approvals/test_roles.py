"""Roles: nobody grants a role to themselves, and every grant and revoke is on record."""

import re

import pytest
from django.contrib.auth.models import Permission
from django.db import DatabaseError, transaction

from approvals import services
from approvals.models import RoleChange
from approvals.review import snapshot_hash
from approvals.roles import role_changes, role_grant, role_revoke, roles_of
from ladder.errors import Forbidden
from tests.factories import UserFactory
from traces.models import Run

pytestmark = pytest.mark.django_db


def roles_page(client, workflow, **post):
    url = f"/workflows/{workflow.slug}/roles/"
    if post:
        return client.post(url, post, follow=True).content.decode()
    return client.get(url).content.decode()


def change_rows(page: str) -> list[list[str]]:
    """The cells of the "Changes" table, top to bottom, without markup."""
    body = page.split('id="role-changes"', 1)[1].split("</table>", 1)[0]
    rows = re.findall(r"<tr><td>(.*?)</td></tr>", body.split("<tbody>", 1)[1])
    return [[re.sub(r"<[^>]+>", "", cell) for cell in row.split("</td><td>")] for row in rows]


@pytest.mark.parametrize("role", ["reviewer", "compliance", "owner"])
def test_an_owner_cannot_grant_themselves_a_role_on_the_roles_page(people, flows, login, role):
    owner, wf = people["owner"], flows["l3"]
    before = RoleChange.objects.count()
    page = roles_page(login(owner), wf, username="owner", role=role, action="grant")
    assert "Nobody may grant a role to themselves." in page
    assert roles_of(user=owner, workflow=wf) == {"owner"}
    assert RoleChange.objects.count() == before


def test_an_owner_who_tried_to_make_themselves_reviewer_still_cannot_decide(
    people, flows, submit, login
):
    run = submit("l3")
    client = login(people["owner"])
    roles_page(client, flows["l3"], username="owner", role="reviewer", action="grant")
    fresh = Run.objects.select_related("workflow").get(pk=run.pk)
    resp = client.post(
        f"/runs/{run.id}/decide",
        {
            "verdict": "approve",
            "seen_hash": snapshot_hash(services.run_snapshot(run=fresh)),
            "seen_version": fresh.version,
        },
    )
    assert resp.status_code == 403
    assert Run.objects.get(pk=run.pk).status == "pending_review"


def test_the_service_refuses_a_grant_to_oneself_even_to_a_superuser(people, flows):
    superuser = UserFactory(username="root", is_superuser=True, is_staff=True)
    with pytest.raises(Forbidden) as refused:
        role_grant(workflow=flows["l3"], user=superuser, role="admin", by=superuser)
    assert refused.value.code == "self_grant"
    with pytest.raises(Forbidden, match="themselves"):
        role_grant(workflow=flows["l3"], user=people["owner"], role="reviewer", by=people["owner"])
    assert not RoleChange.objects.filter(by__in=[superuser, people["owner"]]).exists()


def test_someone_without_the_owner_role_cannot_change_roles_through_the_service(people, flows):
    with pytest.raises(Forbidden) as refused:
        role_grant(workflow=flows["l3"], user=people["stranger"], role="reviewer", by=people["rev"])
    assert refused.value.code == "not_owner"
    assert roles_of(user=people["stranger"], workflow=flows["l3"]) == set()


def test_only_a_superuser_hands_out_the_admin_role(people, flows):
    with pytest.raises(Forbidden) as refused:
        role_grant(workflow=flows["l3"], user=people["rev"], role="admin", by=people["owner"])
    assert refused.value.code == "admin_only"
    root = UserFactory(username="root", is_superuser=True, is_staff=True)
    assert role_grant(workflow=flows["l3"], user=people["rev"], role="admin", by=root)
    assert "admin" in roles_of(user=people["rev"], workflow=flows["l3"])


def test_an_owner_may_hold_compliance_granted_by_someone_else(people, flows, login):
    wf = flows["l3"]
    page = roles_page(login(people["admin"]), wf, username="owner", role="compliance")
    assert "owner is now compliance of approvals." in page
    assert roles_of(user=people["owner"], workflow=wf) == {"owner", "compliance"}
    change = RoleChange.objects.filter(person=people["owner"], workflow=wf).first()
    assert (change.by, change.role, change.change) == (people["admin"], "compliance", "grant")


def test_every_grant_and_revoke_is_recorded_and_shown_newest_first(people, flows, login):
    wf = flows["l3"]
    client = login(people["owner"])
    roles_page(client, wf, username="stranger", role="reviewer", action="grant")
    page = roles_page(client, wf, username="rev2", role="reviewer", action="revoke")
    assert "rev2 is no longer reviewer of approvals." in page
    assert roles_of(user=people["rev2"], workflow=wf) == set()

    latest = list(role_changes(workflow=wf)[:2])
    assert [(c.by, c.change, c.role, c.person) for c in latest] == [
        (people["owner"], "revoke", "reviewer", people["rev2"]),
        (people["owner"], "grant", "reviewer", people["stranger"]),
    ]
    assert latest[0].at >= latest[1].at
    rows = change_rows(roles_page(client, wf))
    assert [row[1:] for row in rows[:2]] == [
        ["owner", "revoked", "reviewer", "rev2"],
        ["owner", "granted", "reviewer", "stranger"],
    ]
    # The fixture's grants were made by the system, and are on record as such.
    assert ["system", "granted", "admin", "admin"] in [row[1:] for row in rows]


def test_a_grant_or_revoke_that_changes_nothing_is_not_recorded(people, flows):
    wf = flows["l3"]
    before = RoleChange.objects.count()
    assert role_grant(workflow=wf, user=people["rev"], role="reviewer", by=people["owner"]) is False
    assert (
        role_revoke(workflow=wf, user=people["stranger"], role="reviewer", by=people["owner"])
        is False
    )
    assert RoleChange.objects.count() == before


def test_anyone_may_give_up_their_own_role_on_record(people, flows):
    wf = flows["l3"]
    assert role_revoke(workflow=wf, user=people["owner"], role="owner", by=people["owner"])
    change = RoleChange.objects.filter(workflow=wf).first()
    assert (change.by, change.person, change.change) == (people["owner"], people["owner"], "revoke")


@pytest.mark.parametrize("statement", ["update", "delete"])
def test_role_changes_cannot_be_rewritten(people, flows, statement):
    changes = RoleChange.objects.filter(workflow=flows["l3"])
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        if statement == "update":
            changes.update(by=people["stranger"])
        else:
            changes.delete()


def test_the_history_on_the_roles_page_is_bounded_and_costs_a_fixed_number_of_queries(
    people, flows, login, django_assert_max_num_queries
):
    wf = flows["l3"]
    client = login(people["owner"])
    with django_assert_max_num_queries(14) as few:
        roles_page(client, wf)
    for i in range(30):
        extra = UserFactory(username=f"extra{i}")
        role_grant(workflow=wf, user=extra, role="reviewer", by=people["owner"])
        role_revoke(workflow=wf, user=extra, role="reviewer", by=people["owner"])
    with django_assert_max_num_queries(len(few.captured_queries)):
        rows = change_rows(roles_page(client, wf))
    assert len(rows) == 50
    assert rows[0][1:] == ["owner", "revoked", "reviewer", "extra29"]


def test_the_django_admin_is_for_superusers_only(people, client):
    # A staff account that may edit users could otherwise give itself any permission.
    staff = UserFactory(username="staff", is_staff=True)
    staff.user_permissions.add(
        *Permission.objects.filter(codename__in=["view_user", "change_user"])
    )
    client.force_login(staff)
    assert client.get("/admin/").status_code == 302
    assert client.get("/admin/auth/user/").status_code == 302
    resp = client.post(
        f"/admin/auth/user/{staff.pk}/change/",
        {"username": "staff", "is_superuser": "on", "is_staff": "on", "is_active": "on"},
    )
    assert resp.status_code == 302 and "/admin/login/" in resp["Location"]
    staff.refresh_from_db()
    assert not staff.is_superuser
    client.force_login(UserFactory(username="root", is_superuser=True, is_staff=True))
    assert client.get("/admin/auth/user/").status_code == 200
