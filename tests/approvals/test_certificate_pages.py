"""The workflow page shows the autonomy certificate and its history; anyone with a role on
the workflow downloads a certificate, which then verifies offline."""

import json
from io import StringIO

import pytest
from django.core.management import call_command

from ladder.services import certificate_issue, rung_change
from tests.factories import WorkflowFactory

pytestmark = pytest.mark.django_db


def promote(wf, by):
    """L3→L4 as an approved promotion leaves it: the rung change, then its certificate."""
    rung_change(
        workflow=wf, from_rung=3, to_rung=4, kind="promotion", reason="gates passed", actor=by
    )
    return certificate_issue(
        workflow=wf, rung=4, policy_version=None, evidence_hash="b" * 64, approved_by=by
    )


def test_the_page_shows_the_current_certificate_with_a_download_and_the_earlier_ones(
    login, people, flows
):
    wf = flows["l3"]
    first = certificate_issue(
        workflow=wf, rung=3, policy_version=None, evidence_hash="c" * 64, approved_by=None
    )
    current = promote(wf, people["compliance"])
    page = login(people["rev"]).get(f"/workflows/{wf.slug}/").content.decode()
    assert "Autonomy certificate" in page
    assert f'href="/workflows/{wf.slug}/certificates/{current.pk}.json" download' in page
    assert "Approved by</dt><dd>compliance" in page
    assert f"{current.valid_until:%Y-%m-%d %H:%M} UTC" in page
    assert "Earlier certificates" in page
    assert f"/workflows/{wf.slug}/certificates/{first.pk}.json" in page
    assert "Runs are handled at L3" not in page


def test_an_l4_workflow_without_a_valid_certificate_says_its_runs_are_handled_at_l3(login, people):
    wf = WorkflowFactory(rung=4, certified=False)
    from approvals.roles import role_grant

    role_grant(workflow=wf, user=people["rev"], role="reviewer", by=None)
    page = login(people["rev"]).get(f"/workflows/{wf.slug}/").content.decode()
    assert "Runs are handled at L3:" in page
    assert "has no certificate for L4" in page


@pytest.mark.parametrize("who", ["rev", "owner", "compliance", "admin"])
def test_anyone_with_a_role_downloads_a_certificate_that_verifies_offline(
    login, people, flows, who, tmp_path
):
    wf = flows["l3"]
    cert = promote(wf, people["compliance"])
    response = login(people[who]).get(f"/workflows/{wf.slug}/certificates/{cert.pk}.json")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/json")
    assert response["Content-Disposition"].startswith(f'attachment; filename="{wf.slug}-L4-')
    document = json.loads(response.content)
    assert document["certificate"]["rung"] == 4 and document["algorithm"] == "Ed25519"
    path = tmp_path / "cert.json"
    path.write_bytes(response.content)
    out = StringIO()
    call_command("verify_certificate", str(path), stdout=out)
    assert "Signature valid" in out.getvalue() and "approved by:    compliance" in out.getvalue()


def test_without_a_role_a_certificate_does_not_exist(login, people, flows, client):
    wf = flows["l3"]
    cert = promote(wf, people["compliance"])
    url = f"/workflows/{wf.slug}/certificates/{cert.pk}.json"
    assert login(people["stranger"]).get(url).status_code == 404
    client.logout()
    assert client.get(url).status_code == 302  # to sign in


def test_a_certificate_is_found_only_under_its_own_workflow(login, people, flows):
    cert = promote(flows["l3"], people["compliance"])
    other = flows["l2"]  # the reviewer has a role here too
    url = f"/workflows/{other.slug}/certificates/{cert.pk}.json"
    assert login(people["rev"]).get(url).status_code == 404
    bad = f"/workflows/{other.slug}/certificates/not-a-uuid.json"
    assert login(people["rev"]).get(bad).status_code == 404
