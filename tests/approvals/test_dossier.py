"""The evidence dossier: a promotion request's shows the numbers frozen into it, however
many snapshots come after; a workflow's shows its latest; the PDF holds the same text;
and each is shown only to those who may see it."""

import io

import pytest
from pypdf import PdfReader

from approvals import dossier_pdf
from approvals.dossier import dossier_for_promotion
from approvals.models import PromotionRequest
from approvals.roles import role_grant
from approvals.services import evidence_freeze
from ladder import gates
from ladder.models import ActionType, GateSnapshot
from tests.approvals.test_promotion_pages import snapshot_of
from tests.factories import UserFactory, WorkflowFactory
from traces.models import RollbackDrill

pytestmark = pytest.mark.django_db


def pdf_text(body: bytes) -> str:
    assert body.startswith(b"%PDF-")
    return "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(body)).pages)


@pytest.fixture
def frozen(people, flows):
    """A request of the L3 workflow frozen on 98.1% approval, then a newer, worse
    snapshot (71.4%)."""
    wf = flows["l3"]
    wf.name = "Support refund"
    wf.save(update_fields=["name"])
    snapshot = snapshot_of(
        wf, volume=4200, approval=gates.Count(4120, 4200), failure=gates.Count(12, 4000)
    )
    canonical, digest = evidence_freeze(
        GateSnapshot.objects.select_related("workflow").get(pk=snapshot.pk)
    )
    request = PromotionRequest.objects.create(
        workflow=wf,
        from_rung=3,
        to_rung=4,
        requested_by=people["owner"],
        note="Ready for L4.",
        snapshot=snapshot,
        evidence_canonical=canonical,
        evidence_hash=digest,
    )
    snapshot_of(wf, volume=4200, approval=gates.Count(3000, 4200))
    return request


def test_the_promotion_dossier_shows_the_frozen_numbers_not_the_newer_ones(client, people, frozen):
    client.force_login(people["compliance"])
    page = client.get(f"/promotions/{frozen.pk}/dossier").content.decode()
    assert "The evidence, as frozen into the request" in page
    assert "98.1%" in page
    assert "97.6\N{EN DASH}98.5%" in page
    assert "71.4%" not in page
    assert frozen.evidence_hash in page
    assert "matches the stored evidence (recomputed now)" in page
    # The workflow's dossier, as of now, has the newer snapshot.
    workflow_page = client.get(f"/workflows/{frozen.workflow.slug}/dossier").content.decode()
    assert "71.4%" in workflow_page
    assert "98.1%" not in workflow_page


def test_the_promotion_pdf_holds_the_workflow_name_and_the_frozen_numbers(client, people, frozen):
    client.force_login(people["compliance"])
    response = client.get(f"/promotions/{frozen.pk}/dossier.pdf")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/pdf"
    assert (
        f'filename="dossier-approvals-promotion-{frozen.pk}.pdf"' in response["Content-Disposition"]
    )
    text = pdf_text(response.content)
    assert "Support refund" in text
    assert "98.1%" in text
    assert "71.4%" not in text
    assert frozen.evidence_hash in text.replace("\n", "")


def test_a_tampered_evidence_copy_is_called_out(people, frozen):
    frozen.evidence_canonical = frozen.evidence_canonical.replace("4200", "4201")
    dossier = dossier_for_promotion(frozen)
    assert dossier["hash"]["matches"] is False
    assert dossier["hash"]["words"] == "does NOT match the stored evidence"


def test_the_dossier_names_the_latest_drill_before_the_request_and_the_history(people, frozen):
    from django.utils import timezone

    before = frozen.requested_at - timezone.timedelta(days=2)
    RollbackDrill.objects.create(
        workflow=frozen.workflow,
        batch=20,
        picked=20,
        succeeded=20,
        status=RollbackDrill.Status.FINISHED,
        started_at=before,
        finished_at=before,
        duration_seconds=3.5,
        trigger=RollbackDrill.Trigger.COMMAND,
    )
    RollbackDrill.objects.create(
        workflow=frozen.workflow,
        batch=5,
        picked=5,
        failed=5,
        status=RollbackDrill.Status.FINISHED,
        started_at=timezone.now() + timezone.timedelta(minutes=1),
        trigger=RollbackDrill.Trigger.COMMAND,
    )
    dossier = dossier_for_promotion(frozen)
    assert dossier["drill"]["sentence"].startswith("Drill #")
    assert "(passed): 20 of 20 runs reverted" in dossier["drill"]["sentence"]
    assert "in 3.50 s" in dossier["drill"]["sentence"]


def test_the_pdf_without_a_unicode_font_folds_text_to_latin1(client, people, frozen, monkeypatch):
    monkeypatch.setattr(dossier_pdf, "REGULAR", dossier_pdf.FONT_DIR / "missing.ttf")
    frozen.workflow.name = "Remboursement → client ✓"
    frozen.workflow.save(update_fields=["name"])
    client.force_login(people["compliance"])
    text = pdf_text(client.get(f"/promotions/{frozen.pk}/dossier.pdf").content)
    assert "Remboursement -> client ?" in text
    assert "98.1%" in text


def test_the_workflow_dossier_of_a_workflow_with_nothing_yet_says_so(client, people, flows):
    client.force_login(people["owner"])
    page = client.get(f"/workflows/{flows['l1'].slug}/dossier").content.decode()
    assert "No gates have been computed for this workflow yet." in page
    assert "No rollback drill had been run." in page
    text = pdf_text(client.get(f"/workflows/{flows['l1'].slug}/dossier.pdf").content)
    assert "No gates have been computed for this workflow yet." in text


# -- who may see it -----------------------------------------------------------------------

ROLES = ["anonymous", "rev", "owner", "compliance", "admin", "stranger", "other_compliance"]
# fmt: off
EXPECTED = {
    #                   anon rev  owner compl admin stranger other_compliance
    "promotion":       (302, 200, 200, 200, 200, 404, 404),
    "promotion_pdf":   (302, 200, 200, 200, 200, 404, 404),
    "workflow":        (302, 403, 200, 200, 200, 404, 404),
    "workflow_pdf":    (302, 403, 200, 200, 200, 404, 404),
}
# fmt: on


@pytest.mark.parametrize("view", list(EXPECTED))
@pytest.mark.parametrize("role", ROLES)
def test_each_role_gets_the_status_it_must_on_the_dossiers(client, people, frozen, view, role):
    if role == "other_compliance":
        other = UserFactory(username="other_compliance")
        role_grant(
            workflow=WorkflowFactory(slug="elsewhere"), user=other, role="compliance", by=None
        )
        client.force_login(other)
    elif role != "anonymous":
        client.force_login(people[role])
    slug = frozen.workflow.slug
    paths = {
        "promotion": f"/promotions/{frozen.pk}/dossier",
        "promotion_pdf": f"/promotions/{frozen.pk}/dossier.pdf",
        "workflow": f"/workflows/{slug}/dossier",
        "workflow_pdf": f"/workflows/{slug}/dossier.pdf",
    }
    expected = dict(zip(ROLES, EXPECTED[view], strict=True))[role]
    assert client.get(paths[view]).status_code == expected


def test_an_approved_request_shows_its_certificate_and_the_promotion_in_the_history(
    client, people, flows
):
    from approvals.services import promotion_decide, promotion_request

    wf = WorkflowFactory(slug="assist", rung=0, owner=people["owner"])
    ActionType.objects.create(workflow=wf, name="reply.send")
    for name in ("owner", "compliance"):
        role_grant(workflow=wf, user=people[name], role=name, by=None)
    request = promotion_request(workflow=wf, by=people["owner"], note="first climb")
    promotion_decide(request=request, by=people["compliance"], approve=True, reason="fine")
    request.refresh_from_db()
    client.force_login(people["compliance"])
    page = client.get(f"/promotions/{request.pk}/dossier").content.decode()
    certificate = request.certificate
    assert str(certificate.pk) in page
    assert certificate.key_id in page
    assert "the request's hash</span>" in page
    history = page.split('id="dossier-history"')[1]
    assert "L0 → L1" in history and "Promotion" in history and "fine" in history
    text = pdf_text(client.get(f"/promotions/{request.pk}/dossier.pdf").content)
    assert str(certificate.pk) in text.replace("\n", "")
    assert "yes: the request's hash" in text
