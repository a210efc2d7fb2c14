"""The gateway never handles a run above the workflow's valid autonomy certificate
(docs/certificates.md), and agents can read the certificate and the public key."""

import pytest

from ladder import certificates
from ladder.services import certificate_issue, certificate_key_id, certificate_public_key_pem
from tests.traces.test_policy_gateway import envelope, run
from traces import fastpath
from traces.models import Run
from traces.services.policy import policy_set

pytestmark = pytest.mark.django_db


def l4(make_workflow, **kwargs):
    wf = make_workflow(rung=4, **kwargs)
    policy_set(workflow=wf, document=envelope(), by=None)
    return wf


def issue(wf):
    return certificate_issue(
        workflow=wf,
        rung=wf.rung,
        policy_version=1,
        evidence_hash=certificates.evidence_hash({"gates": "passed"}),
        approved_by=None,
    )


def test_without_a_certificate_an_l4_run_is_handled_at_l3_and_waits_for_a_person(
    make_workflow, agent
):
    wf = l4(make_workflow, certified=False)
    client = agent(wf)
    answer = client.post("/runs", run("a", 10, wf=wf)).json()
    assert answer["status"] == "pending_review" and answer["queue"] == "l3"
    assert answer["rung"] == 3  # the rung it was handled at, not the workflow's
    assert "no autonomy certificate" in answer["escalation_reason"]
    assert answer["policy"] is None  # the policy decided nothing...
    # ...it was evaluated beside the person, as at L3.
    assert Run.objects.get(pk=answer["id"]).shadow["outcome"] == "allow"
    # The trace says the same rung, so the replay agrees with the run row.
    replay = client.get(f"/runs/{answer['id']}/replay").json()
    assert replay["verified"] and replay["run"]["rung"] == 3


def test_with_a_valid_certificate_the_policy_decides(make_workflow, agent):
    wf = l4(make_workflow, certified=False)
    issue(wf)
    client = agent(wf)
    allowed = client.post("/runs", run("a", 10, wf=wf)).json()
    assert allowed["status"] == "approved" and allowed["rung"] == 4
    assert allowed["policy"]["outcome"] == "allow"
    over = client.post("/runs", run("b", 500, wf=wf)).json()
    assert over["queue"] == "escalated" and over["policy"]["rules_fired"] == ["cap"]


def test_once_the_certificate_expires_the_very_next_run_is_handled_at_l3(
    make_workflow, agent, clock
):
    wf = l4(make_workflow, certified=False, certificate_valid_days=1)
    issue(wf)
    client = agent(wf)
    assert client.post("/runs", run("a", 10, wf=wf)).json()["status"] == "approved"
    # The workflow's rules stay memoised (nothing changed in the database): the expiry is
    # compared with each run's own time.
    assert fastpath.memo_enabled() and fastpath.WORKFLOWS.get(wf.slug) is not None
    clock.advance(86400)
    late = client.post("/runs", run("b", 10, wf=wf)).json()
    assert late["status"] == "pending_review" and late["queue"] == "l3" and late["rung"] == 3
    assert "autonomy certificate expired at " in late["escalation_reason"]
    # A fresh promotion's certificate applies to the next run at once.
    issue(wf)
    assert client.post("/runs", run("c", 10, wf=wf)).json()["status"] == "approved"


def test_an_l5_workflow_needs_a_certificate_for_l5_not_l4(make_workflow, agent):
    wf = make_workflow(rung=4, max_rung=5, certified=False)
    policy_set(workflow=wf, document=envelope(), by=None)
    issue(wf)  # L4
    wf.rung = 5
    wf.save(update_fields=["rung"])
    client = agent(wf)
    assert client.post("/runs", run("a", 10, wf=wf)).json()["rung"] == 3
    issue(wf)  # L5
    assert client.post("/runs", run("b", 10, wf=wf)).json()["rung"] == 5


def test_below_l4_no_certificate_is_needed(make_workflow, agent):
    wf = make_workflow(rung=3)
    answer = agent(wf).post("/runs", run("a", 10, wf=wf)).json()
    assert answer["rung"] == 3 and answer["escalation_reason"] is None


def test_the_reviewer_sees_why_an_l4_run_waits_for_them(make_workflow, agent, client):
    from approvals.roles import role_grant
    from tests.factories import UserFactory

    wf = l4(make_workflow, certified=False)
    answer = agent(wf).post("/runs", run("a", 10, wf=wf)).json()
    reviewer = UserFactory(username="rev")
    role_grant(workflow=wf, user=reviewer, role="reviewer", by=None)
    client.force_login(reviewer)
    page = client.get(f"/runs/{answer['id']}/").content.decode()
    assert "Handled at L3:" in page and "no autonomy certificate" in page


def test_the_workflow_api_names_the_certificate_but_nobody(make_workflow, agent):
    from tests.factories import UserFactory

    wf = l4(make_workflow, certified=False)
    client = agent(wf)
    assert client.get(f"/workflows/{wf.slug}").json()["certificate"] is None
    cert = certificate_issue(
        workflow=wf,
        rung=4,
        policy_version=1,
        evidence_hash="a" * 64,
        approved_by=UserFactory(username="compliance-person"),
    )
    data = client.get(f"/workflows/{wf.slug}").json()["certificate"]
    assert data == {
        "id": str(cert.id),
        "rung": 4,
        "policy_version": 1,
        "issued_at": cert.issued_at.isoformat(),
        "valid_until": cert.valid_until.isoformat(),
        "valid": True,
        "key_id": certificate_key_id(),
        "evidence_hash": "a" * 64,
    }
    assert "compliance-person" not in client.get(f"/workflows/{wf.slug}").content.decode()


def test_the_public_key_is_published_without_a_token(client):
    response = client.get("/api/v1/certificates/public-key")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    assert response.content.decode() == certificate_public_key_pem()
    public = certificates.public_key_from_pem(response.content.decode())
    assert certificates.key_id(public) == certificate_key_id()
