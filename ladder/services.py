"""Writes of the ladder itself: a workflow's rung moves, and every move is kept; the
autonomy certificates that let it stand on L4/L5."""

import uuid
from datetime import datetime
from functools import cache

from django.conf import settings
from django.db import transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone

from ladder import certificates
from ladder.errors import Conflict, Unprocessable
from ladder.models import Alert, Certificate, RungChange, Workflow
from ladder.notify import notify
from ladder.rungs import Rung


@transaction.atomic
def rung_change(
    *,
    workflow: Workflow,
    from_rung: int,
    to_rung: int,
    kind: str,
    reason: str,
    evidence: dict | None = None,
    actor=None,
) -> RungChange:
    """Move `workflow` from `from_rung` to `to_rung` and record the change, forever.

    A guarded UPDATE: it moves the workflow only while it still stands on `from_rung`, so
    of a promotion and a demotion racing, or a double click, exactly one lands and the
    other is told the rung moved under it. The workflow's rules_version is bumped by the
    database trigger, so the gateway's very next run is handled at the new rung.
    """
    if to_rung not in Rung.values:
        raise Unprocessable(f"L{to_rung} is not a rung", code="invalid_rung")
    if kind == RungChange.Kind.PROMOTION and to_rung != from_rung + 1:
        raise Unprocessable("a promotion climbs exactly one rung", code="rung_skip")
    if kind == RungChange.Kind.PROMOTION and to_rung > workflow.max_rung:
        raise Unprocessable(
            f"L{to_rung} is past the workflow's max rung (L{workflow.max_rung})",
            code="past_max_rung",
        )
    if kind == RungChange.Kind.DEMOTION and to_rung >= from_rung:
        raise Unprocessable("a demotion goes down", code="invalid_rung")
    if not reason.strip():
        raise Unprocessable("a rung change needs a reason", code="reason_required")
    moved = Workflow.objects.filter(pk=workflow.pk, rung=from_rung).update(rung=to_rung)
    if moved != 1:
        current = Workflow.objects.values_list("rung", flat=True).get(pk=workflow.pk)
        raise Conflict(f"the workflow is at L{current} now, not L{from_rung}", code="rung_moved")
    workflow.rung = to_rung
    return RungChange.objects.create(
        workflow=workflow,
        kind=kind,
        from_rung=from_rung,
        to_rung=to_rung,
        reason=reason.strip(),
        evidence=evidence or {},
        actor=actor,
    )


def rung_demote(*, workflow: Workflow, to_rung: int, reason: str, actor) -> RungChange:
    """An owner or compliance user moves the workflow down by hand: no evidence needed, a
    reason required (the caller checks the role). Any lower rung; the very next run is
    handled there. The workflow's people are told."""
    if not isinstance(to_rung, int) or to_rung not in Rung.values:
        raise Unprocessable("choose the rung to move down to", code="invalid_rung")
    if to_rung >= workflow.rung:
        raise Unprocessable(
            f"the workflow is at L{workflow.rung}: a demotion goes to a lower rung",
            code="invalid_rung",
        )
    who = actor.get_username() if actor is not None else "the system"
    with transaction.atomic():
        change = rung_change(
            workflow=workflow,
            from_rung=workflow.rung,
            to_rung=to_rung,
            kind=RungChange.Kind.DEMOTION,
            reason=reason,
            evidence={"cause": "by_hand"},
            actor=actor,
        )
        notify(
            workflow=workflow,
            kind=Alert.Kind.DEMOTION,
            subject=f"{workflow.name} moved down to L{to_rung} by {who}",
            body=(
                f"{who} moved {workflow.name} from L{change.from_rung} to L{to_rung}: "
                f"{change.reason}"
            ),
            evidence={"cause": "by_hand", "from_rung": change.from_rung, "to_rung": to_rung},
        )
    return change


# Why a rung changed, for the history: stored in the change's evidence as "cause" (older
# changes are told apart by what their evidence holds).
CAUSE_WORDS = {
    "promotion": "Promotion",
    "breaker": "Demotion: the breaker tripped",
    "by_hand": "Demotion by hand",
    "certificate_expired": "Demotion: certificate expired",
    "demotion": "Demotion",
    "stop": "Stopped",
    "resume": "Resumed",
    "initial": "Initial rung",
}


def rung_change_cause(change: RungChange) -> str:
    evidence = change.evidence if isinstance(change.evidence, dict) else {}
    if change.kind != RungChange.Kind.DEMOTION:
        return change.kind
    if evidence.get("cause"):
        return str(evidence["cause"])
    if "breaker" in evidence:
        return "breaker"
    if "certificate" in evidence:
        return "certificate_expired"
    return "by_hand" if change.actor_id else "demotion"


# -- the stop button (docs/stop.md) ------------------------------------------------------

_STOP_REASON_MAX = Workflow._meta.get_field("stop_reason").max_length


def _stop_reason(reason: str) -> str:
    reason = " ".join((reason or "").split())
    if not reason:
        raise Unprocessable("say why the workflow stops or resumes", code="reason_required")
    if len(reason) > _STOP_REASON_MAX:
        raise Unprocessable(
            f"the reason may be at most {_STOP_REASON_MAX} characters", code="reason_too_long"
        )
    return reason


def _stop_recorded(*, workflow: Workflow, kind: str, reason: str, actor) -> RungChange:
    """A stop or resume as a rung change: the workflow stays on its rung."""
    workflow.refresh_from_db(fields=["rung", "stopped_at", "stopped_by", "stop_reason"])
    return RungChange.objects.create(
        workflow=workflow,
        kind=kind,
        from_rung=workflow.rung,
        to_rung=workflow.rung,
        reason=reason,
        evidence={},
        actor=actor,
    )


@transaction.atomic
def workflow_stop(*, workflow: Workflow, actor, reason: str) -> RungChange:
    """Stop the workflow: from the commit on, no proposal of it executes, whatever its
    rung, until someone resumes it (EU AI Act Art. 14(4)(e)).

    A guarded UPDATE (only a running workflow stops), so a double click or two people
    at once get one stop and one `already_stopped`. The row change bumps rules_version
    (trigger): every gateway process handles its next run as stopped. The rung stays;
    the stop is kept as a rung change (from_rung == to_rung) and mailed to owners and
    compliance. Permission (owners, compliance, admins) is the caller's to check.
    """
    reason = _stop_reason(reason)
    now = timezone.now()
    stopped = Workflow.objects.filter(pk=workflow.pk, stopped_at__isnull=True).update(
        stopped_at=now, stopped_by=actor, stop_reason=reason
    )
    if stopped != 1:
        raise Conflict("the workflow is already stopped", code="already_stopped")
    change = _stop_recorded(
        workflow=workflow, kind=RungChange.Kind.STOP, reason=reason, actor=actor
    )
    who = change.actor.get_username() if actor is not None else "the system"
    notify(
        workflow=workflow,
        kind=Alert.Kind.STOP,
        subject=f"Stopped by {who}: nothing executes until it is resumed",
        body=(
            f"{who} stopped workflow {workflow.slug} (L{workflow.rung}) at "
            f"{now:%Y-%m-%d %H:%M} UTC: {reason}\n\nNo proposal executes while it is stopped. New "
            "runs wait; approved actions wait. Someone with the owner or compliance role "
            "resumes it on the workflow page."
        ),
    )
    return change


@transaction.atomic
def workflow_resume(*, workflow: Workflow, actor, reason: str) -> RungChange:
    """Resume a stopped workflow; the same guarded UPDATE the other way round (only a
    stopped workflow resumes: `not_stopped` otherwise). What waited is released by the
    caller in the same transaction (traces.services.stop.workflow_resume_release)."""
    reason = _stop_reason(reason)
    resumed = Workflow.objects.filter(pk=workflow.pk, stopped_at__isnull=False).update(
        stopped_at=None, stopped_by=None, stop_reason=""
    )
    if resumed != 1:
        raise Conflict("the workflow is not stopped", code="not_stopped")
    change = _stop_recorded(
        workflow=workflow, kind=RungChange.Kind.RESUME, reason=reason, actor=actor
    )
    who = change.actor.get_username() if actor is not None else "the system"
    notify(
        workflow=workflow,
        kind=Alert.Kind.RESUME,
        subject=f"Resumed by {who}",
        body=(
            f"{who} resumed workflow {workflow.slug} (L{workflow.rung}): {reason}\n\n"
            "Approved actions execute again; runs that arrived while it was stopped are "
            "handled at its current rung."
        ),
    )
    return change


def rung_since_many(*, workflows: list[Workflow]) -> dict[int, datetime]:
    """When each workflow stepped onto its current rung: its newest promotion or demotion
    to that rung, or its creation when none is recorded (a stop and a resume do not
    count: the workflow stayed on its rung). One query for all of them."""
    since = {w.pk: w.created_at for w in workflows}
    rungs = {w.pk: w.rung for w in workflows}
    changes = (
        RungChange.objects.filter(workflow_id__in=list(rungs))
        # A stop or resume keeps the rung (from_rung == to_rung): not a step onto it.
        .exclude(kind__in=[RungChange.Kind.STOP, RungChange.Kind.RESUME])
        .order_by("workflow_id", "-created_at", "-id")
        .values_list("workflow_id", "to_rung", "created_at")
    )
    seen: set[int] = set()
    for workflow_id, to_rung, at in changes:
        if workflow_id not in seen and to_rung == rungs[workflow_id]:
            since[workflow_id] = at
            seen.add(workflow_id)
    return since


def rung_history(*, workflow: Workflow, people: bool = True) -> list[dict]:
    """Every rung change, newest first (the API's `rung_history`). `people=False` for
    agents: they are told what changed and why, not who decided it."""
    history = [
        {
            "at": change.created_at.isoformat(),
            "kind": change.kind,
            "from_rung": change.from_rung,
            "to_rung": change.to_rung,
            "cause": rung_change_cause(change),
            "reason": change.reason,
            # The numbers it rests on; a promotion's frozen snapshot stays with its request.
            "evidence": {k: v for k, v in (change.evidence or {}).items() if k != "evidence"},
            "by": change.actor.get_username() if change.actor else None,
        }
        for change in RungChange.objects.filter(workflow=workflow)
        .select_related("actor")
        .order_by("-created_at", "-id")
    ]
    if not people:
        for entry in history:
            del entry["by"]
    return history


# -- autonomy certificates (docs/certificates.md) -----------------------------------------


@cache
def _keys(pem: str):
    key = certificates.private_key_from_pem(pem)
    public = key.public_key()
    return key, certificates.public_key_pem(public), certificates.key_id(public)


def certificate_signing_key():
    """The key certificates are signed with (settings.LADDER_CERTIFICATE_KEY)."""
    return _keys(settings.LADDER_CERTIFICATE_KEY)[0]


def certificate_public_key_pem() -> str:
    """The published public key, PEM: what examiners verify certificates with."""
    return _keys(settings.LADDER_CERTIFICATE_KEY)[1]


def certificate_key_id() -> str:
    return _keys(settings.LADDER_CERTIFICATE_KEY)[2]


@transaction.atomic
def certificate_issue(
    *,
    workflow: Workflow,
    rung: int,
    policy_version: int | None,
    evidence_hash: str,
    approved_by,
    promotion_ref: str = "",
) -> Certificate:
    """Sign and store a certificate that `workflow` may stand on `rung`.

    Issued when a promotion is approved (`approved_by` the person who decided it; None
    for the system). At L4/L5 it holds for `workflow.certificate_valid_days` from now;
    below, it does not expire. The insert bumps the workflow's rules_version (trigger),
    so the gateway's next run sees it. The workflow row is locked first: an expiry sweep
    deciding to demote it waits for this certificate, then sees it.
    """
    if rung not in Rung.values or rung == Rung.L0:
        raise Unprocessable(
            f"L{rung} is not a rung a certificate can be issued for", code="invalid_rung"
        )
    if not certificates.is_sha256_hex(evidence_hash):
        raise Unprocessable(
            "evidence_hash must be the sha256 of the evidence as 64 lowercase hex digits",
            code="invalid_evidence_hash",
        )
    if policy_version is not None and (not isinstance(policy_version, int) or policy_version < 1):
        raise Unprocessable(
            "policy_version must be a version number or None", code="invalid_policy"
        )
    if len(promotion_ref) > Certificate._meta.get_field("promotion_ref").max_length:
        raise Unprocessable("promotion_ref is too long", code="invalid_promotion_ref")
    locked = Workflow.objects.select_for_update(no_key=True).get(pk=workflow.pk)
    key, _pem, key_id = _keys(settings.LADDER_CERTIFICATE_KEY)
    # Whole seconds: the signed document and the stored row say exactly the same time.
    issued_at = timezone.now().replace(microsecond=0)
    valid_until = certificates.valid_until_for(
        rung=rung, issued_at=issued_at, valid_days=locked.certificate_valid_days
    )
    serial = uuid.uuid4()
    who = {"id": approved_by.pk, "name": approved_by.get_username()} if approved_by else None
    payload = certificates.certificate_payload(
        serial=str(serial),
        workflow={"id": locked.pk, "slug": locked.slug, "name": locked.name},
        rung=rung,
        policy_version=policy_version,
        evidence_hash=evidence_hash,
        approved_by=who,
        issued_at=issued_at,
        valid_until=valid_until,
        key_id=key_id,
        promotion=promotion_ref,
    )
    return Certificate.objects.create(
        id=serial,
        workflow=locked,
        rung=rung,
        policy_version=policy_version,
        evidence_hash=evidence_hash,
        approved_by=approved_by,
        approved_by_name=who["name"] if who else "",
        promotion_ref=promotion_ref,
        issued_at=issued_at,
        valid_until=valid_until,
        key_id=key_id,
        document=certificates.canonical_json(payload),
        signature=certificates.certificate_sign(payload, key),
    )


def certificate_current(*, workflow: Workflow, at: datetime | None = None) -> Certificate | None:
    """The certificate the workflow stands on: of those for its rung or above, the newest
    valid at `at`, else the newest (expired); None when it has none."""
    at = at or timezone.now()
    covering = list(
        Certificate.objects.filter(workflow=workflow, rung__gte=workflow.rung)
        .select_related("approved_by")
        .order_by("-issued_at", "-id")
    )
    return next((c for c in covering if c.valid_at(at)), covering[0] if covering else None)


def _lapsed(at: datetime):
    """Workflows at L4/L5 with no certificate for their rung valid at `at`, whose last
    such certificate expired (never having had one is not an expiry: the gateway still
    handles their runs at L3)."""
    cover = Certificate.objects.filter(workflow=OuterRef("pk"), rung__gte=OuterRef("rung"))
    return Workflow.objects.filter(rung__gte=certificates.EXPIRING_FROM_RUNG).filter(
        ~Exists(cover.filter(issued_at__lte=at, valid_until__gt=at)),
        Exists(cover.filter(valid_until__lte=at)),
    )


def certificates_expire(*, at: datetime | None = None) -> list[RungChange]:
    """Drop every L4/L5 workflow whose autonomy certificate expired (and no fresh one was
    issued) to L3, each as a recorded demotion. Safe to run twice or at once: each
    workflow is re-checked under its row lock, and a demoted one is no longer at L4/L5."""
    at = at or timezone.now()
    changes = []
    for workflow_id in _lapsed(at).values_list("pk", flat=True):
        with transaction.atomic():
            workflow = _lapsed(at).select_for_update(no_key=True).filter(pk=workflow_id).first()
            if workflow is None:  # demoted, or certified afresh, meanwhile
                continue
            last = (
                Certificate.objects.filter(
                    workflow=workflow, rung__gte=workflow.rung, valid_until__isnull=False
                )
                .order_by("-valid_until", "-issued_at")
                .first()
            )
            until = certificates.timestamp(last.valid_until)
            changes.append(
                rung_change(
                    workflow=workflow,
                    from_rung=workflow.rung,
                    to_rung=Rung.L3,
                    kind=RungChange.Kind.DEMOTION,
                    reason=(
                        f"autonomy certificate expired at {until} and no fresh promotion to "
                        f"L{workflow.rung} was approved"
                    ),
                    evidence={
                        "cause": "certificate_expired",
                        "certificate": str(last.id),
                        "rung": last.rung,
                        "valid_until": until,
                        "key_id": last.key_id,
                    },
                    actor=None,
                )
            )
            notify(
                workflow=workflow,
                kind=Alert.Kind.DEMOTION,
                subject=f"{workflow.name} dropped to L3: its autonomy certificate expired",
                body=(
                    f"The autonomy certificate of {workflow.name} expired at {until} and no "
                    "fresh promotion was approved: it is at L3 now, a person approves each "
                    "action. Request promotion again to climb back."
                ),
                evidence=changes[-1].evidence,
            )
    return changes
