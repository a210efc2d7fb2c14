"""Promotion requests through their services: an owner asks for the next rung, a
compliance user who is not the requester decides it once, and every refusal says why."""

import hashlib
import json

import pytest

from approvals.models import PromotionRequest
from approvals.roles import role_grant
from approvals.services import promotion_decide, promotion_request, promotion_withdraw
from ladder.errors import Conflict, Forbidden, Unprocessable
from ladder.models import ActionType, GateSnapshot, RungChange, Workflow
from ladder.services import rung_change
from tests.factories import UserFactory, WorkflowFactory
from traces.chain import canonical_json

pytestmark = pytest.mark.django_db


@pytest.fixture
def l0(people):
    """An L0 workflow with an action type and a named owner: eligible for L1 with no
    history at all (the only gates of L0 -> L1)."""
    wf = WorkflowFactory(slug="assist", rung=0, owner=people["owner"])
    ActionType.objects.create(workflow=wf, name="reply.send")
    for name, role in (("owner", "owner"), ("compliance", "compliance"), ("admin", "admin")):
        role_grant(workflow=wf, user=people[name], role=role, by=None)
    role_grant(workflow=wf, user=people["rev"], role="reviewer", by=None)
    return wf


def ask(wf, people, who="owner", **kwargs):
    return promotion_request(workflow=wf, by=people[who], note="ready", **kwargs)


def test_an_owner_asks_for_the_next_rung_and_the_evidence_is_frozen_with_its_hash(l0, people):
    request = ask(l0, people)
    assert (request.from_rung, request.to_rung, request.state) == (0, 1, "open")
    assert request.snapshot.trigger == GateSnapshot.Trigger.ON_DEMAND
    assert request.snapshot.requested_by == people["owner"]
    assert request.evidence["gates"] == request.snapshot.as_json()["gates"]
    assert request.evidence["snapshot_id"] == request.snapshot.pk
    stored = PromotionRequest.objects.get(pk=request.pk)
    assert stored.evidence_canonical == canonical_json(stored.evidence)
    digest = hashlib.sha256(stored.evidence_canonical.encode()).hexdigest()
    assert stored.evidence_hash == digest


def test_approval_moves_the_workflow_one_rung_once_and_records_the_change(l0, people):
    request = ask(l0, people)
    promotion_decide(request=request, by=people["compliance"], approve=True, reason="gates pass")
    l0.refresh_from_db()
    assert l0.rung == 1
    change = RungChange.objects.get(workflow=l0, kind=RungChange.Kind.PROMOTION)
    assert (change.from_rung, change.to_rung, change.actor) == (0, 1, people["compliance"])
    assert change.evidence["promotion_request"] == request.pk
    assert change.evidence["evidence_hash"] == request.evidence_hash
    assert "gates pass" in change.reason
    request.refresh_from_db()
    assert (request.state, request.decided_by) == ("approved", people["compliance"])


def test_a_second_decision_is_told_who_decided_and_changes_nothing(l0, people):
    request = ask(l0, people)
    promotion_decide(request=request, by=people["compliance"], approve=True, reason="ok")
    twice = PromotionRequest.objects.get(pk=request.pk)
    twice.state = "open"  # a stale copy, as a double click holds it
    with pytest.raises(Conflict, match="Already approved by compliance"):
        promotion_decide(request=twice, by=people["admin"], approve=False, reason="no")
    l0.refresh_from_db()
    assert l0.rung == 1
    assert RungChange.objects.filter(workflow=l0, kind="promotion").count() == 1


def test_a_decline_keeps_the_rung_and_records_no_change(l0, people):
    request = ask(l0, people)
    promotion_decide(request=request, by=people["compliance"], approve=False, reason="not yet")
    l0.refresh_from_db()
    assert l0.rung == 0
    assert not RungChange.objects.filter(workflow=l0).exists()
    request.refresh_from_db()
    assert (request.state, request.decision_reason) == ("declined", "not yet")


def test_deciding_ones_own_request_is_refused_even_for_an_admin(l0, people):
    request = ask(l0, people, who="admin")
    with pytest.raises(Forbidden, match="their own") as exc:
        promotion_decide(request=request, by=people["admin"], approve=True, reason="mine")
    assert exc.value.code == "self_decide"
    l0.refresh_from_db()
    assert l0.rung == 0


def test_only_compliance_of_the_workflow_decides(l0, people):
    request = ask(l0, people)
    elsewhere = UserFactory(username="compliance_elsewhere")
    role_grant(workflow=WorkflowFactory(slug="other"), user=elsewhere, role="compliance", by=None)
    for person in (people["rev"], elsewhere):
        with pytest.raises(Forbidden) as exc:
            promotion_decide(request=request, by=person, approve=True, reason="looks fine")
        assert exc.value.code == "not_compliance"
    assert PromotionRequest.objects.get(pk=request.pk).state == "open"


def test_a_decision_needs_a_reason(l0, people):
    request = ask(l0, people)
    with pytest.raises(Unprocessable, match="reason"):
        promotion_decide(request=request, by=people["compliance"], approve=True, reason="  ")
    assert PromotionRequest.objects.get(pk=request.pk).state == "open"


def test_skipping_a_rung_is_refused_with_the_reason_and_nothing_is_stored(l0, people):
    with pytest.raises(Unprocessable, match=r"one rung at a time.*L1, not L2") as exc:
        ask(l0, people, to_rung=2)
    assert exc.value.code == "rung_skip"
    assert not PromotionRequest.objects.exists()


def test_a_reviewer_cannot_ask_for_promotion(l0, people):
    with pytest.raises(Forbidden) as exc:
        ask(l0, people, who="rev")
    assert exc.value.code == "not_owner"


def test_going_past_the_max_rung_is_refused(people):
    wf = WorkflowFactory(slug="capped", rung=2, max_rung=2)
    role_grant(workflow=wf, user=people["owner"], role="owner", by=None)
    with pytest.raises(Unprocessable, match="past this workflow's max rung") as exc:
        ask(wf, people)
    assert exc.value.code == "past_max_rung"
    assert not PromotionRequest.objects.exists()


def test_a_gate_that_lacks_volume_refuses_the_request_and_says_which(flows, people):
    with pytest.raises(Unprocessable, match="Not eligible for L2") as exc:
        ask(flows["l1"], people)
    assert exc.value.code == "gates_not_met"
    assert any(reason.startswith("Volume: insufficient") for reason in exc.value.details["reasons"])
    assert not PromotionRequest.objects.exists()
    # The recomputed numbers behind the refusal are kept, for the page and the history.
    assert GateSnapshot.objects.filter(workflow=flows["l1"]).exists()


def test_l4_without_a_policy_envelope_is_refused_for_that_reason(flows, people):
    with pytest.raises(Unprocessable, match="L4 needs a written policy envelope") as exc:
        ask(flows["l3"], people)
    assert exc.value.code == "no_policy"
    assert not PromotionRequest.objects.exists()


def test_only_one_request_is_open_per_workflow(l0, people):
    ask(l0, people)
    with pytest.raises(Conflict, match="already open"):
        ask(l0, people, who="admin")
    assert PromotionRequest.objects.filter(workflow=l0).count() == 1


def test_the_database_itself_refuses_a_second_open_request(l0, people):
    from django.db import IntegrityError, transaction

    first = ask(l0, people)
    with pytest.raises(IntegrityError), transaction.atomic():
        PromotionRequest.objects.create(
            workflow=l0,
            from_rung=0,
            to_rung=1,
            requested_by=people["admin"],
            snapshot=first.snapshot,
            evidence_canonical=first.evidence_canonical,
            evidence_hash=first.evidence_hash,
        )


def test_approval_is_refused_when_the_workflow_moved_meanwhile(l0, people):
    request = ask(l0, people)
    Workflow.objects.filter(pk=l0.pk).update(max_rung=5)
    l0.refresh_from_db()
    rung_change(workflow=l0, from_rung=0, to_rung=1, kind="promotion", reason="by hand")
    with pytest.raises(Conflict, match="at L1 now, not L0"):
        promotion_decide(request=request, by=people["compliance"], approve=True, reason="ok")
    request.refresh_from_db()
    assert request.state == "open"  # the whole decision rolled back: decline it instead
    promotion_decide(request=request, by=people["compliance"], approve=False, reason="stale")
    assert PromotionRequest.objects.get(pk=request.pk).state == "declined"


def test_the_requester_withdraws_and_nobody_else_can(l0, people):
    request = ask(l0, people)
    with pytest.raises(Forbidden):
        promotion_withdraw(request=request, by=people["compliance"])
    promotion_withdraw(request=request, by=people["owner"])
    with pytest.raises(Conflict, match="withdrew"):
        promotion_decide(request=request, by=people["compliance"], approve=True, reason="late")
    l0.refresh_from_db()
    assert l0.rung == 0
    # A withdrawn request leaves room for a new one.
    assert ask(l0, people).state == "open"


def test_the_hash_can_be_checked_from_the_json_the_page_shows(l0, people):
    from approvals.templatetags.ladder_tags import pretty_json

    request = PromotionRequest.objects.get(pk=ask(l0, people).pk)
    shown = json.loads(pretty_json(request.evidence))
    text = json.dumps(
        shown, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )
    assert hashlib.sha256(text.encode()).hexdigest() == request.evidence_hash


def test_asking_from_an_out_of_date_page_is_told_the_workflow_moved(l0, people):
    with pytest.raises(Conflict, match="at L0 already") as exc:
        ask(l0, people, to_rung=0)
    assert exc.value.code == "rung_moved"


def test_approval_issues_a_signed_certificate_over_the_frozen_evidence(l0, people):
    from ladder import certificates
    from ladder.services import certificate_public_key_pem

    request = ask(l0, people)
    promotion_decide(request=request, by=people["compliance"], approve=True, reason="ok")
    stored = PromotionRequest.objects.select_related("certificate").get(pk=request.pk)
    cert = stored.certificate
    assert (cert.workflow_id, cert.rung, cert.approved_by) == (l0.pk, 1, people["compliance"])
    assert cert.evidence_hash == stored.evidence_hash
    assert cert.evidence_hash == certificates.evidence_hash(stored.evidence)
    assert cert.promotion_ref == f"promotion-request:{stored.pk}"
    public = certificates.public_key_from_pem(certificate_public_key_pem())
    verified = certificates.certificate_verify(json.dumps(cert.as_file()), public)
    assert verified.payload["evidence_hash"] == stored.evidence_hash


def test_a_decline_issues_no_certificate(l0, people):
    request = ask(l0, people)
    promotion_decide(request=request, by=people["compliance"], approve=False, reason="no")
    assert PromotionRequest.objects.get(pk=request.pk).certificate is None
