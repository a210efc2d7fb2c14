"""No page may apply inline styles or scripts: the policy allows neither (security
review, finding 10; tests/browser/test_csp.py shows the pages still work under it)."""

import pytest

from approvals.roles import role_grant
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


def directives(response) -> dict[str, list[str]]:
    policy = response["Content-Security-Policy"]
    parsed = {}
    for part in policy.split(";"):
        name, *sources = part.split()
        parsed[name] = sources
    return parsed


def test_no_page_allows_inline_styles_or_scripts(make_workflow, client):
    wf = make_workflow(rung=3)
    person = UserFactory(username="rev")
    role_grant(workflow=wf, user=person, role="owner", by=None)
    pages = ["/accounts/login/", "/api/v1/docs"]
    for path in pages:
        policy = directives(client.get(path))
        assert policy["style-src"] == ["'self'"], path
        assert policy["script-src"] == ["'self'"], path
    client.force_login(person)
    for path in (
        "/queue/",
        "/workflows/",
        f"/workflows/{wf.slug}/",
        f"/workflows/{wf.slug}/roles/",
        "/promotions/",
    ):
        resp = client.get(path)
        assert resp.status_code == 200
        assert directives(resp)["style-src"] == ["'self'"], path
