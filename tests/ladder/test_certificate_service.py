"""Issuing certificates and letting them expire (ladder.services; docs/certificates.md)."""

import json
from datetime import timedelta

import pytest
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from ladder import certificates
from ladder.errors import Unprocessable
from ladder.models import Certificate, RungChange, Workflow
from ladder.services import (
    certificate_current,
    certificate_issue,
    certificate_key_id,
    certificate_public_key_pem,
    certificates_expire,
)
from ladder.tasks import expire_certificates
from tests.factories import UserFactory, WorkflowFactory

pytestmark = pytest.mark.django_db
EVIDENCE = certificates.evidence_hash({"snapshot": 1})


def issue(workflow, *, rung=None, by=None, **kwargs) -> Certificate:
    return certificate_issue(
        workflow=workflow,
        rung=workflow.rung if rung is None else rung,
        policy_version=kwargs.pop("policy_version", 2),
        evidence_hash=kwargs.pop("evidence_hash", EVIDENCE),
        approved_by=by,
        **kwargs,
    )


def test_an_issued_certificate_is_signed_by_the_published_key_and_names_its_approver():
    wf = WorkflowFactory(rung=4, certified=False, certificate_valid_days=30)
    approver = UserFactory(username="compliance")
    cert = issue(wf, by=approver, promotion_ref="promotion:9")
    public = certificates.public_key_from_pem(certificate_public_key_pem())
    verified = certificates.certificate_verify(json.dumps(cert.as_file()), public)
    assert verified.payload["approved_by"] == {"id": approver.pk, "name": "compliance"}
    assert verified.payload["workflow"] == {"id": wf.pk, "slug": wf.slug, "name": wf.name}
    assert verified.payload["policy_version"] == 2 and verified.payload["evidence_hash"] == EVIDENCE
    assert verified.payload["promotion"] == "promotion:9"
    assert cert.key_id == certificate_key_id() == verified.payload["key_id"]
    assert cert.valid_until - cert.issued_at == timedelta(days=30)
    assert verified.valid_until == cert.valid_until and verified.issued_at == cert.issued_at


def test_below_l4_a_certificate_does_not_expire_and_the_system_may_issue_one():
    wf = WorkflowFactory(rung=2)
    cert = issue(wf, policy_version=None)
    assert cert.valid_until is None and cert.approved_by is None
    assert json.loads(cert.document)["approved_by"] is None


@pytest.mark.parametrize(
    ("kwargs", "code"),
    [
        ({"rung": 0}, "invalid_rung"),
        ({"rung": 6}, "invalid_rung"),
        ({"evidence_hash": "abc"}, "invalid_evidence_hash"),
        ({"evidence_hash": "A" * 64}, "invalid_evidence_hash"),
        ({"policy_version": 0}, "invalid_policy"),
    ],
)
def test_a_certificate_with_a_bad_field_is_refused_and_nothing_is_stored(kwargs, code):
    wf = WorkflowFactory(rung=3)
    with pytest.raises(Unprocessable) as refused:
        issue(wf, **kwargs)
    assert refused.value.code == code
    assert not Certificate.objects.filter(workflow=wf).exists()


def test_issuing_bumps_the_rules_version_so_the_gateway_sees_it_at_once():
    wf = WorkflowFactory(rung=4, certified=False)
    before = Workflow.objects.get(pk=wf.pk).rules_version
    issue(wf)
    assert Workflow.objects.get(pk=wf.pk).rules_version == before + 1


@pytest.mark.parametrize(
    "statement",
    ["UPDATE ladder_certificate SET rung = 5", "DELETE FROM ladder_certificate"],
)
def test_certificates_cannot_be_rewritten_or_deleted(statement):
    issue(WorkflowFactory(rung=4, certified=False))
    with (
        pytest.raises(IntegrityError, match="append-only"),
        transaction.atomic(),
        connection.cursor() as cur,
    ):
        cur.execute(statement)


def test_the_current_certificate_prefers_a_valid_one_over_a_newer_expired_one(clock):
    wf = WorkflowFactory(rung=3)
    l3 = issue(wf)
    Workflow.objects.filter(pk=wf.pk).update(rung=4, certificate_valid_days=1)
    wf.refresh_from_db()
    l4 = issue(wf)
    assert certificate_current(workflow=wf) == l4
    clock.advance(2 * 86400)
    assert certificate_current(workflow=wf) == l4  # expired, but the one for its rung
    Workflow.objects.filter(pk=wf.pk).update(rung=3)
    wf.refresh_from_db()
    assert certificate_current(workflow=wf) == l3


def test_the_expiry_sweep_demotes_a_lapsed_workflow_once_and_records_why(clock):
    lapsing = WorkflowFactory(rung=4, certified=False, certificate_valid_days=1)
    cert = issue(lapsing)
    fresh = WorkflowFactory(rung=5, max_rung=5)  # certified by the factory for 90 days
    never = WorkflowFactory(rung=4, certified=False)  # never certified: not an expiry
    assert certificates_expire() == []
    clock.advance(86400)
    changes = certificates_expire()
    assert [c.workflow_id for c in changes] == [lapsing.pk]
    change = RungChange.objects.get(workflow=lapsing)
    assert (change.kind, change.from_rung, change.to_rung) == ("demotion", 4, 3)
    assert change.reason.startswith("autonomy certificate expired at ")
    assert certificates.timestamp(cert.valid_until) in change.reason
    assert change.evidence["certificate"] == str(cert.id) and change.actor is None
    assert expire_certificates() == 0  # the second sweep finds nothing
    assert RungChange.objects.filter(workflow=lapsing).count() == 1
    rungs = dict(Workflow.objects.values_list("slug", "rung"))
    assert (rungs[lapsing.slug], rungs[fresh.slug], rungs[never.slug]) == (3, 5, 4)


def test_a_fresh_certificate_before_the_sweep_keeps_the_workflow_on_its_rung(clock):
    wf = WorkflowFactory(rung=4, certified=False, certificate_valid_days=1)
    issue(wf)
    clock.advance(86400 + 60)
    issue(wf)  # a promotion approved again
    assert certificates_expire() == []
    assert Workflow.objects.get(pk=wf.pk).rung == 4


def test_the_sweep_is_scheduled_hourly():
    from django.conf import settings

    job = settings.CELERY_BEAT_SCHEDULE["expire-certificates"]
    assert job["task"] == "ladder.tasks.expire_certificates" and job["schedule"] == 3600


def test_certificate_times_are_whole_seconds_so_row_and_document_agree():
    cert = issue(WorkflowFactory(rung=4, certified=False))
    assert cert.issued_at.microsecond == 0
    assert json.loads(cert.document)["issued_at"] == certificates.timestamp(cert.issued_at)
    assert cert.issued_at <= timezone.now()
