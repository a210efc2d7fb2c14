"""The evidence dossier (docs/dossier.md): everything an examiner asks about one promotion
request, or about one workflow as of now, on one printable page and in a PDF.

Both renderings (approvals/templates/approvals/dossier.html and approvals/dossier_pdf.py)
print the same plain data built here, so the PDF never says something the page does not.
A promotion request's gates are the ones frozen into it: read from its stored canonical
JSON, never recomputed, with the hash checked again each time the dossier is made.
"""

from datetime import UTC

from django.utils import timezone

from approvals.gate_display import change_figures, gate_rows
from approvals.models import PromotionRequest
from approvals.policies import rule_rows
from approvals.services import evidence_freeze, evidence_hash
from ladder.models import Certificate, GateSnapshot, PolicyVersion, Workflow
from ladder.policies import policy_latest, version_policy
from ladder.policy import audit_text
from ladder.rungs import Rung
from ladder.services import CAUSE_WORDS, certificate_current, rung_history
from traces.models import RollbackDrill


def _when(value) -> str:
    """A datetime (or its ISO text) as the dossier writes it, in UTC to the minute."""
    if value is None:
        return "—"
    if isinstance(value, str):
        return value[:16].replace("T", " ") + " UTC"
    return f"{value.astimezone(UTC):%Y-%m-%d %H:%M} UTC"


def _evidence(evidence: dict, *, frozen: bool) -> dict:
    target = evidence.get("target_rung")
    window = evidence.get("window") or {}
    if target is None:
        verdict = "L5 is the top of the ladder: no rung to climb to."
    elif evidence.get("eligible"):
        verdict = f"Eligible for L{target}: every required gate passes."
    else:
        verdict = f"Not eligible for L{target}."
    return {
        "frozen": frozen,
        "snapshot_id": evidence.get("snapshot_id"),
        "computed_at": _when(evidence.get("computed_at")),
        "window_days": window.get("days"),
        "rung": evidence.get("rung"),
        "target_rung": target,
        "eligible": bool(evidence.get("eligible")),
        "verdict": verdict,
        "gate_rows": gate_rows(evidence.get("gates", [])),
    }


def _drill(drill: RollbackDrill | None) -> dict | None:
    if drill is None:
        return None
    if not drill.finished:
        result = "running"
    elif drill.passed:
        result = "passed"
    else:
        result = "failed"
    duration = f"{drill.duration_seconds:.2f} s" if drill.duration_seconds is not None else "—"
    load = "—"
    if drill.finished:
        load = "yes" if drill.under_load else "no"
        if drill.load_rps is not None:
            load += f" ({drill.load_rps:.1f} runs/s)"
    return {
        "id": drill.pk,
        "started_at": _when(drill.started_at),
        "by": drill.started_by.get_username() if drill.started_by else "a management command",
        "batch": drill.batch,
        "picked": drill.picked,
        "succeeded": drill.succeeded,
        "failed": drill.failed,
        "duration": duration,
        "under_load": load,
        "result": result,
        "sentence": (
            f"Drill #{drill.pk} ({result}): {drill.succeeded} of {drill.picked} runs reverted "
            f"through their compensating actions, {drill.failed} failed, in {duration}."
        ),
    }


def _policy(version: PolicyVersion | None) -> dict | None:
    if version is None:
        return None
    policy = version_policy(version)
    return {
        "number": version.number,
        "saved_at": _when(version.created_at),
        "by": version.created_by.get_username() if version.created_by else "the system",
        "valid": policy is not None,
        "rules": rule_rows(policy) if policy is not None else [],
        "audit": audit_text(policy.audit_sample_rate) if policy is not None else "",
    }


def _history(workflow: Workflow) -> list[dict]:
    return [
        {
            "when": _when(change["at"]),
            "move": (
                f"L{change['from_rung']} → L{change['to_rung']}"
                if change["from_rung"] is not None
                else f"L{change['to_rung']}"  # the rung it was created on
            ),
            "what": CAUSE_WORDS.get(change["cause"], change["kind"]),
            "by": change["by"] or "the system",
            "reason": change["reason"],
            "figures": change_figures(change["evidence"]),
        }
        for change in rung_history(workflow=workflow, people=True)
    ]


def _certificate(certificate: Certificate | None, *, expected_hash: str = "") -> dict | None:
    if certificate is None:
        return None
    now = timezone.now()
    if certificate.valid_until is None:
        state = "valid, no expiry below L4"
    elif certificate.valid_at(now):
        state = f"valid until {_when(certificate.valid_until)}"
    else:
        state = f"expired {_when(certificate.valid_until)}"
    return {
        "id": str(certificate.pk),
        "rung": certificate.rung,
        "issued_at": _when(certificate.issued_at),
        "state": state,
        "approved_by": certificate.approved_by_name or "the system",
        "policy_version": certificate.policy_version,
        "key_id": certificate.key_id,
        "evidence_hash": certificate.evidence_hash,
        "hash_matches": (certificate.evidence_hash == expected_hash) if expected_hash else None,
    }


def _workflow(workflow: Workflow) -> dict:
    return {
        "slug": workflow.slug,
        "name": workflow.name,
        "rung": workflow.rung,
        "max_rung": workflow.max_rung,
        "risk_class": workflow.get_risk_class_display(),
    }


def dossier_for_promotion(promotion: PromotionRequest) -> dict:
    """A promotion request's dossier: its frozen gates and hash, the drill and policy
    version it rested on (the newest drill started before it was asked; the policy
    version its evidence names), the rung history and the certificate it issued."""
    workflow = promotion.workflow
    evidence = promotion.evidence
    matches = evidence_hash(promotion.evidence_canonical) == promotion.evidence_hash
    drill = (
        RollbackDrill.objects.filter(workflow=workflow, started_at__lte=promotion.requested_at)
        .select_related("started_by")
        .order_by("-started_at", "-pk")
        .first()
    )
    number = (evidence.get("tallies") or {}).get("policy_version")
    version = None
    if number is not None:
        version = (
            PolicyVersion.objects.filter(workflow=workflow, number=number)
            .select_related("workflow", "created_by")
            .first()
        )
    subject = [
        ("Asked by", f"{promotion.requested_by.get_username()} on {_when(promotion.requested_at)}"),
        ("State", promotion.get_state_display()),
    ]
    if promotion.decided_at:
        by = promotion.decided_by.get_username() if promotion.decided_by else "the system"
        subject.append(("Decided", f"by {by} on {_when(promotion.decided_at)}"))
    if promotion.decision_reason:
        subject.append(("Reason", promotion.decision_reason))
    if promotion.note:
        subject.append(("Note", promotion.note))
    return {
        "kind": "promotion",
        "title": (
            f"Promotion #{promotion.pk} of {workflow.slug}: "
            f"L{promotion.from_rung} → L{promotion.to_rung}"
        ),
        "filename": f"dossier-{workflow.slug}-promotion-{promotion.pk}.pdf",
        "made_at": _when(timezone.now()),
        "workflow": _workflow(workflow),
        "subject": subject,
        "evidence": _evidence(evidence, frozen=True),
        "hash": {
            "value": promotion.evidence_hash,
            "matches": matches,
            "words": (
                "matches the stored evidence (recomputed now)"
                if matches
                else "does NOT match the stored evidence"
            ),
        },
        "drill": _drill(drill),
        "policy": _policy(version),
        "history": _history(workflow),
        "certificate": _certificate(promotion.certificate, expected_hash=promotion.evidence_hash),
    }


def dossier_for_workflow(workflow: Workflow) -> dict:
    """A workflow's dossier as of now: its latest gate snapshot (with the hash of its
    evidence as a promotion request would freeze it), latest drill, the policy version it
    has now, the rung history and the certificate it stands on."""
    snapshot = (
        GateSnapshot.objects.filter(workflow=workflow)
        .select_related("workflow")
        .order_by("-computed_at", "-id")
        .first()
    )
    hashed = None
    evidence = None
    if snapshot is not None:
        _, digest = evidence_freeze(snapshot)
        evidence = _evidence(snapshot.as_json() | {"snapshot_id": snapshot.pk}, frozen=False)
        hashed = {
            "value": digest,
            "matches": None,
            "words": f"sha256 of snapshot #{snapshot.pk}'s evidence as canonical JSON",
        }
    drill = (
        RollbackDrill.objects.filter(workflow=workflow)
        .select_related("started_by")
        .order_by("-started_at", "-pk")
        .first()
    )
    version = policy_latest(workflow)
    certificate = certificate_current(workflow=workflow)
    return {
        "kind": "workflow",
        "title": f"Workflow {workflow.slug} at L{workflow.rung}",
        "filename": f"dossier-{workflow.slug}-{timezone.now():%Y%m%d}.pdf",
        "made_at": _when(timezone.now()),
        "workflow": _workflow(workflow),
        "subject": [
            ("Rung", f"{Rung(workflow.rung).label}, max L{workflow.max_rung}"),
            ("Policy", "in force" if workflow.rung >= Rung.L4 else "draft, evaluated in shadow"),
        ],
        "evidence": evidence,
        "hash": hashed,
        "drill": _drill(drill),
        "policy": _policy(version),
        "history": _history(workflow),
        "certificate": _certificate(certificate),
    }
