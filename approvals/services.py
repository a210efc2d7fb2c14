"""Writes by people: opening a run for review and deciding it, workflow settings, and
promotion requests (asked by an owner, decided by compliance)."""

import hashlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.core.cache import cache
from django.db import IntegrityError, transaction
from django.utils import timezone
from redis import RedisError

from approvals import review as rules
from approvals.models import PromotionRequest, Review
from approvals.roles import access_for
from ladder import breaker, gates
from ladder.decide import validate_params
from ladder.durations import duration_text
from ladder.errors import Conflict, Forbidden, Unprocessable
from ladder.models import GateSnapshot, RungChange, Workflow
from ladder.rungs import (
    REVIEW_DEADLINE_MAX_SECONDS,
    REVIEW_DEADLINE_MIN_SECONDS,
    DeadlineAction,
    Rung,
)
from ladder.services import certificate_issue, rung_change
from traces.chain import canonical_json
from traces.models import Run, RunStatus, TraceEvent
from traces.replay import shown_payload
from traces.selectors import DecisionContext, decision_context
from traces.services.deadlines import DEADLINE_PASSED, deadline_due, run_after_deadline, too_late
from traces.services.decisions import DecisionInput, already_decided, run_decide
from traces.services.gates import gates_recompute
from traces.services.probes import PROBE_RATE_MAX, probes_seed
from traces.services.redactors import redactor_for
from traces.services.trace import EventSpec, trace_append

# -- what the reviewer saw ----------------------------------------------------------------


def run_snapshot(*, run: Run, ctx: DecisionContext | None = None) -> dict:
    ctx = ctx or decision_context(run_id=run.id)
    return rules.snapshot(
        run_id=str(run.id),
        version=run.version,
        workflow=run.workflow.slug,
        rung=run.rung,
        queue=run.queue,
        context=ctx.context,
        proposal=run.proposal,
        escalation_reason=run.escalation_reason,
    )


@dataclass(frozen=True)
class OpenedReview:
    snapshot: dict
    hash: str
    held_by: str | None  # someone else's name when they hold the reservation
    reserved: bool = True  # False: the reservation service (the cache) is down


def review_open(*, run: Run, user: User) -> OpenedReview:
    """Build what is shown, record it in the trace the first time this person is shown
    this screen, and take the "open by NAME" reservation if nobody else holds it.

    The first showing freezes the agent's context: from then on the gateway refuses new
    input, tool calls and output for the run (traces.services.agent.run_append_events)."""
    ctx = decision_context(run_id=run.id)
    snap = run_snapshot(run=run, ctx=ctx)
    digest = rules.snapshot_hash(snap)
    held_by, reserved = None, True
    if run.status == RunStatus.PENDING_REVIEW and run.workflow_id in access_for(user).review:
        reserved, held_by = _cached(lambda: reservation_take(run=run, user=user), None)
        review_shown_record(run=run, user=user, snap=snap, digest=digest, refs=ctx.refs)
    return OpenedReview(snapshot=snap, hash=digest, held_by=held_by, reserved=reserved)


def _hashes_shown_to(*, run_id, user: User) -> set[str]:
    documents = TraceEvent.objects.filter(
        run_id=run_id, type=TraceEvent.Type.REVIEW_SHOWN, actor=f"user:{user.pk}"
    ).values_list("document", flat=True)
    return {json.loads(doc)["payload"].get("hash") for doc in documents}


def review_shown_record(*, run: Run, user: User, snap: dict, digest: str, refs: list[dict]) -> bool:
    """Put "this person was shown this screen" into the trace once per (person, screen):
    the screen's hash and references to the chain events it was built from, not a copy.
    Returns whether an event was written. Reloading a page writes nothing."""
    if digest in _hashes_shown_to(run_id=run.id, user=user):
        return False
    with transaction.atomic():
        locked = Run.objects.select_for_update(of=("self",)).get(pk=run.pk)
        # Re-checked under the lock: a second tab racing this one writes nothing, and a
        # screen built before the run changed is not recorded (deciding on it is refused).
        if locked.version != snap["version"] or locked.status != RunStatus.PENDING_REVIEW:
            return False
        if digest in _hashes_shown_to(run_id=run.id, user=user):
            return False
        trace_append(
            run=locked,
            specs=[
                EventSpec(
                    TraceEvent.Type.REVIEW_SHOWN,
                    shown_payload(by=user.get_username(), snap=snap, digest=digest, refs=refs),
                    f"user:{user.pk}",
                )
            ],
        )
    return True


log = logging.getLogger(__name__)


class _Cache:
    """When a reservation call last failed. Reservations are a courtesy ("open by NAME"),
    kept in the cache (Redis): with Redis down or hung, pages show none rather than fail,
    and for LADDER_CACHE_BACKOFF_SECONDS after a failure the cache is not tried, so a hung
    Redis costs one LADDER_CACHE_TIMEOUT_SECONDS wait per process, not one per page.
    Deciding never depends on them: a decision is checked against the run's version."""

    down_until = 0.0


def _cached[T](call: Callable[[], T], default: T) -> tuple[bool, T]:
    """(True, call()) or, with the cache down, (False, default) and a warning."""
    if time.monotonic() < _Cache.down_until:
        return False, default
    try:
        return True, call()
    except (RedisError, OSError) as exc:
        _Cache.down_until = time.monotonic() + settings.LADDER_CACHE_BACKOFF_SECONDS
        log.warning("reservations unavailable (cache: %s); pages show none", exc)
        return False, default


def _reservation_key(run_id) -> str:
    return f"reservation:{run_id}"


def reservation_take(*, run: Run, user: User) -> str | None:
    """Returns the holder's name if someone else holds the run, else takes/renews it."""
    key = _reservation_key(run.id)
    mine = json.dumps([user.pk, user.get_username()])
    ttl = settings.LADDER_RESERVATION_SECONDS
    if cache.add(key, mine, timeout=ttl):
        return None
    current = cache.get(key)
    if current is None or json.loads(current)[0] == user.pk:
        cache.set(key, mine, timeout=ttl)
        return None
    return json.loads(current)[1]


def reservation_release(*, run_id, user: User) -> None:
    """Let go of the run after a decision; with the cache down, it expires on its own."""

    def release() -> None:
        key = _reservation_key(run_id)
        current = cache.get(key)
        if current and json.loads(current)[0] == user.pk:
            cache.delete(key)

    _cached(release, None)


def reservations(run_ids: list) -> tuple[bool, dict[str, str]]:
    """(whether reservations could be read, run id → holder name) for a page of runs, in
    one cache round trip; (False, {}) with the cache down."""

    def read() -> dict[str, str]:
        keys = {_reservation_key(rid): str(rid) for rid in run_ids}
        found = cache.get_many(list(keys))
        return {keys[k]: json.loads(v)[1] for k, v in found.items()}

    return _cached(read, {})


# -- deciding -----------------------------------------------------------------------------


@dataclass(frozen=True)
class DraftSubmission:
    params: dict
    artifact: Any = None
    discard: bool = False
    reason: str = ""


@dataclass(frozen=True)
class Pick:
    option: int | None  # index into review.options(); None with own_action
    own_action: str = ""
    own_params: dict | None = None
    reject: bool = False
    reason: str = ""


@dataclass(frozen=True)
class Approval:
    approve: bool
    reason: str = ""


def _check_can_decide(*, run: Run, reviewer: User) -> None:
    if run.workflow_id not in access_for(reviewer).review:
        raise Forbidden("you do not review this workflow")


def review_decide(
    *,
    run: Run,
    reviewer: User,
    seen_hash: str,
    seen_version: int,
    decision: DraftSubmission | Pick | Approval,
) -> Review:
    """Decide a waiting run exactly once, on the content the reviewer saw, before its
    deadline.

    A decision that arrives after the deadline is refused (409 `deadline_passed`) and the
    deadline is applied instead, in a transaction of its own so that it stands while the
    decision is rolled back (traces.services.deadlines).
    """
    _check_can_decide(run=run, reviewer=reviewer)
    if deadline_due(run):
        raise too_late(run_after_deadline(run))
    try:
        return _review_decide(
            run=run,
            reviewer=reviewer,
            seen_hash=seen_hash,
            seen_version=seen_version,
            decision=decision,
        )
    except Conflict as exc:
        if exc.code != DEADLINE_PASSED or run.status != RunStatus.PENDING_REVIEW:
            raise
        # The deadline passed between the page's read and the guarded UPDATE.
        raise too_late(run_after_deadline(_reloaded(run))) from None


def _reloaded(run: Run) -> Run:
    return Run.objects.select_related("workflow", "action_type").get(pk=run.pk)


@transaction.atomic
def _review_decide(
    *,
    run: Run,
    reviewer: User,
    seen_hash: str,
    seen_version: int,
    decision: DraftSubmission | Pick | Approval,
) -> Review:
    """The snapshot hash is recomputed: if the run changed since it was shown, the
    decision is refused as stale. run_decide's guarded UPDATE settles races between
    reviewers, and with the deadline."""
    if run.status != RunStatus.PENDING_REVIEW:
        raise already_decided(run)
    ctx = decision_context(run_id=run.id)
    snap = run_snapshot(run=run, ctx=ctx)
    current = rules.snapshot_hash(snap)
    if current != seen_hash or run.version != seen_version:
        raise Conflict(
            "this run changed since you opened it; reload to see the current version",
            code="stale_view",
        )
    # What the decision is made on is in the trace before the decision, even when the
    # screen was never recorded at view time (a form posted from elsewhere).
    review_shown_record(run=run, user=reviewer, snap=snap, digest=current, refs=ctx.refs)
    proposal = run.proposal or {}
    # What a reviewer types is the decision: structured identifiers are pseudonymised as
    # anywhere, but a name or street address typed on purpose ("Dear Ana,") stays.
    redactor = redactor_for(run.workflow).without_people()
    review = Review(run=run, reviewer=reviewer, seen_hash=seen_hash)
    if isinstance(decision, DraftSubmission):
        review.kind = Review.Kind.DRAFT
        params = redactor.redact(decision.params)
        artifact = redactor.redact(decision.artifact)
        before = rules.draft_text(proposal.get("params") or {}, proposal.get("artifact"))
        after = rules.draft_text(params, artifact)
        if decision.discard:
            verdict, review.verdict = "rejected", Review.Verdict.DISCARDED
            review.reason = decision.reason
            action, params = proposal.get("action", ""), proposal.get("params") or {}
        else:
            _validate(run, proposal.get("action", ""), params)
            verdict, review.verdict = "approved", Review.Verdict.SUBMITTED
            action = proposal.get("action", "")
            review.edit_distance = rules.edit_distance(before, after)
            review.light_edit = gates.is_light_edit(review.edit_distance)
            review.diff = rules.unified_diff(before, after)
            review.submitted = {"action": action, "params": params, "artifact": artifact}
        extra = {
            "kind": "draft",
            "edit_distance": review.edit_distance,
            "light_edit": review.light_edit,
            "artifact": artifact if verdict == "approved" else None,
            "diff": review.diff,
        }
    elif isinstance(decision, Pick):
        review.kind = Review.Kind.PICK
        if decision.reject:
            if not decision.reason.strip():
                raise Unprocessable("say why you reject all options", code="reason_required")
            verdict, review.verdict = "rejected", Review.Verdict.REJECTED
            review.reason = decision.reason
            action, params = proposal.get("action", ""), proposal.get("params") or {}
        else:
            if decision.option is not None:
                opts = rules.options(proposal)
                if not 0 <= decision.option < len(opts):
                    raise Unprocessable("no such option", code="invalid_option")
                action, params = opts[decision.option]["action"], opts[decision.option]["params"]
                review.chosen_option = decision.option
            else:
                action = decision.own_action
                params = redactor.redact(decision.own_params or {})
            _validate(run, action, params)
            verdict, review.verdict = "approved", Review.Verdict.PICKED
            review.matched = rules.matches_first(proposal, action, params)
            review.submitted = {"action": action, "params": params}
        extra = {"kind": "pick", "matched": review.matched, "chosen_option": review.chosen_option}
    else:
        review.kind = Review.Kind.APPROVE
        action, params = proposal.get("action", ""), proposal.get("params") or {}
        if decision.approve:
            verdict, review.verdict = "approved", Review.Verdict.APPROVED
        else:
            if not decision.reason.strip():
                raise Unprocessable("a reason is required to reject", code="reason_required")
            verdict, review.verdict = "rejected", Review.Verdict.REJECTED
        review.reason = decision.reason
        review.submitted = {"action": action, "params": params}
        extra = {"kind": "approve"}
    review.reason = redactor.redact_text(review.reason)
    run_decide(
        run_id=run.id,
        user_id=reviewer.pk,
        actor_name=reviewer.get_username(),
        seen_version=seen_version,
        seen_hash=seen_hash,
        decision=DecisionInput(
            verdict=verdict, action=action, params=params, extra=extra, reason=review.reason
        ),
    )
    review.save(force_insert=True)
    transaction.on_commit(lambda: reservation_release(run_id=run.id, user=reviewer))
    return review


def _validate(run: Run, action: str, params: dict) -> None:
    action_type = run.workflow.action_types.filter(name=action).first()
    if action_type is None:
        raise Unprocessable(f"'{action}' is not an action of this workflow", code="unknown_action")
    validate_params(action_type.param_schema, params)


# -- workflow settings ----------------------------------------------------------------------


def workflow_deadline_set(*, workflow: Workflow, seconds: int, action: str, by: User) -> None:
    """How long a run of the workflow may wait for a person, and what its deadline does
    then (docs/deadlines.md). Owners only; from 1 minute to 30 days.

    Applies to runs that start waiting from now on (the gateway sets each run's
    `deadline_at` when it stores it): a waiting run keeps the deadline it was given.
    The change bumps the workflow's rules_version (a database trigger), so every gateway
    process uses it for its very next run.
    """
    if workflow.pk not in access_for(by).own:
        raise Forbidden("Only an owner of the workflow can change its settings.", code="not_owner")
    if not REVIEW_DEADLINE_MIN_SECONDS <= seconds <= REVIEW_DEADLINE_MAX_SECONDS:
        raise Unprocessable(
            f"the deadline must be from {duration_text(REVIEW_DEADLINE_MIN_SECONDS)} to "
            f"{duration_text(REVIEW_DEADLINE_MAX_SECONDS)}, not {duration_text(seconds)}",
            code="invalid_deadline",
        )
    if action not in DeadlineAction.values:
        raise Unprocessable(
            f"the deadline either denies or escalates, not {action!r}", code="invalid_deadline"
        )
    Workflow.objects.filter(pk=workflow.pk).update(
        review_deadline_seconds=seconds, deadline_action=action
    )
    workflow.review_deadline_seconds, workflow.deadline_action = seconds, action


def workflow_probe_rate_set(*, workflow: Workflow, rate: float, by: User) -> None:
    """The share of the workflow's L3 review work that is attention probes, 0 to 0.1
    (docs/evals.md). Owners only. Probes are seeded at once, then by the beat task."""
    if workflow.pk not in access_for(by).own:
        raise Forbidden("Only an owner of the workflow can change its settings.", code="not_owner")
    if not (isinstance(rate, (int, float)) and 0 <= rate <= PROBE_RATE_MAX):
        raise Unprocessable(
            f"the probe rate must be from 0 to {PROBE_RATE_MAX:g}, not {rate!r}",
            code="invalid_probe_rate",
        )
    Workflow.objects.filter(pk=workflow.pk).update(probe_rate=float(rate))
    workflow.probe_rate = float(rate)
    transaction.on_commit(lambda: probes_seed(workflow=workflow))


def workflow_breaker_set(*, workflow: Workflow, bounds: dict, by: User) -> None:
    """The breaker's bounds of the workflow (docs/breaker.md). Owners only, and only
    as tight as the defaults or tighter; an admin may loosen them in the admin."""
    if workflow.pk not in access_for(by).own:
        raise Forbidden("Only an owner of the workflow can change its settings.", code="not_owner")
    try:
        valid = breaker.bounds_validate(bounds)
    except breaker.BoundsError as exc:
        raise Unprocessable(str(exc), code="invalid_breaker_bounds") from exc
    looser = breaker.bounds_loosened(valid)
    if looser:
        raise Unprocessable(
            "; ".join(looser) + ": only an admin can set that", code="breaker_loosened"
        )
    Workflow.objects.filter(pk=workflow.pk).update(breaker_bounds=valid)
    workflow.breaker_bounds = valid


# -- promotion requests ---------------------------------------------------------------------


def evidence_freeze(snapshot: GateSnapshot) -> tuple[str, str]:
    """The evidence a promotion request rests on, as canonical JSON text (traces.chain),
    and its hash: sha256 of that text, so anyone holding the JSON can check it."""
    evidence = {
        "workflow": snapshot.workflow.slug,
        "snapshot_id": snapshot.pk,
        **snapshot.as_json(),
        "tallies": snapshot.tallies,
    }
    text = canonical_json(evidence)
    return text, evidence_hash(text)


def evidence_hash(canonical: str) -> str:
    return hashlib.sha256(canonical.encode()).hexdigest()


def _unmet(snapshot: GateSnapshot) -> list[str]:
    """One line per required gate that did not pass, with the gate's own sentence."""
    return [
        f"{gate['label']}: {gate['verdict']}. {gate['sentence']}"
        for gate in snapshot.gates
        if gate.get("required", True) and gate["verdict"] != gates.PASS
    ]


def promotion_request(
    *, workflow: Workflow, by: User, note: str = "", to_rung: int | None = None
) -> PromotionRequest:
    """An owner asks to move `workflow` up one rung (`to_rung`, when given, must be the
    next one). The gates are recomputed now and the snapshot frozen into the request.

    Refused, storing no request: anyone but an owner, a skipped rung, a rung past the
    workflow's max, a second open request, a required gate that fails or lacks volume,
    L4 without a written policy envelope. The recomputed snapshot is kept either way: it
    is the history's, and the page shows the numbers behind the refusal.
    """
    if workflow.pk not in access_for(by).own:
        raise Forbidden(
            "Only an owner of the workflow can request its promotion.", code="not_owner"
        )
    workflow.refresh_from_db(fields=["rung", "max_rung"])
    target = workflow.rung + 1
    if to_rung is not None and to_rung <= workflow.rung:
        raise Conflict(
            f"The workflow is at L{workflow.rung} already: the page you asked from was out "
            "of date.",
            code="rung_moved",
        )
    if to_rung is not None and to_rung != target:
        raise Unprocessable(
            f"A promotion climbs one rung at a time: from L{workflow.rung} the next is "
            f"L{target}, not L{to_rung}.",
            code="rung_skip",
        )
    if target > Rung.L5:
        raise Unprocessable("L5 is the top of the ladder.", code="past_max_rung")
    if target > workflow.max_rung:
        raise Unprocessable(
            f"L{target} is past this workflow's max rung (L{workflow.max_rung}); only an "
            "admin can raise it.",
            code="past_max_rung",
        )
    if PromotionRequest.objects.filter(
        workflow=workflow, state=PromotionRequest.State.OPEN
    ).exists():
        raise Conflict(
            "A promotion request for this workflow is already open: it is decided or "
            "withdrawn first.",
            code="request_open",
        )
    snapshot = gates_recompute(workflow=workflow, trigger=GateSnapshot.Trigger.ON_DEMAND, by=by)
    if snapshot.rung != workflow.rung or snapshot.target_rung != target:
        raise Conflict(
            f"The workflow moved to L{snapshot.rung} meanwhile; ask again from there.",
            code="rung_moved",
        )
    if not snapshot.eligible:
        policy = next((g for g in snapshot.gates if g["name"] == "policy"), None)
        if target == Rung.L4 and policy is not None and policy["verdict"] != gates.PASS:
            raise Unprocessable(
                "L4 needs a written policy envelope, in force from the climb: "
                + policy["sentence"],
                code="no_policy",
                details={"reasons": _unmet(snapshot)},
            )
        raise Unprocessable(
            f"Not eligible for L{target}: " + " ".join(snapshot.reasons),
            code="gates_not_met",
            details={"reasons": _unmet(snapshot) or list(snapshot.reasons)},
        )
    canonical, digest = evidence_freeze(snapshot)
    try:
        with transaction.atomic():
            return PromotionRequest.objects.create(
                workflow=workflow,
                from_rung=workflow.rung,
                to_rung=target,
                requested_by=by,
                note=note.strip(),
                snapshot=snapshot,
                evidence_canonical=canonical,
                evidence_hash=digest,
            )
    except IntegrityError:
        # Two owners asking at once: the partial unique index lets one request in.
        raise Conflict(
            "A promotion request for this workflow is already open.", code="request_open"
        ) from None


def _already(request: PromotionRequest) -> Conflict:
    request.refresh_from_db(fields=["state", "decided_by", "decided_at"])
    if request.state == PromotionRequest.State.WITHDRAWN:
        return Conflict("The requester withdrew this request.", code="already_decided")
    who = request.decided_by.get_username() if request.decided_by else "someone"
    return Conflict(
        f"Already {request.get_state_display().lower()} by {who}.", code="already_decided"
    )


@transaction.atomic
def promotion_decide(
    *, request: PromotionRequest, by: User, approve: bool, reason: str
) -> PromotionRequest:
    """A compliance user of the workflow who is not the requester approves or declines
    the request, with a reason, exactly once (a guarded UPDATE: a double click or a
    second decider is told who decided).

    Approval moves the workflow one rung through `rung_change` (which refuses if the
    workflow no longer stands on the request's rung), recording the frozen evidence, and
    issues the signed autonomy certificate for the new rung over the evidence hash; all
    in this one transaction, so the gateway's next run sees the new rung and its
    certificate, or nothing changed at all.
    """
    if request.workflow_id not in access_for(by).comply:
        raise Forbidden(
            "Only a compliance user of the workflow can decide its promotion.",
            code="not_compliance",
        )
    if by.pk == request.requested_by_id:
        raise Forbidden("Nobody may decide their own promotion request.", code="self_decide")
    reason = reason.strip()
    if not reason:
        raise Unprocessable("A decision needs a reason.", code="reason_required")
    state = PromotionRequest.State.APPROVED if approve else PromotionRequest.State.DECLINED
    now = timezone.now()
    decided = PromotionRequest.objects.filter(
        pk=request.pk, state=PromotionRequest.State.OPEN
    ).update(state=state, decided_by=by, decided_at=now, decision_reason=reason)
    if decided != 1:
        raise _already(request)
    request.state, request.decided_by, request.decided_at = state, by, now
    request.decision_reason = reason
    if approve:
        workflow = request.workflow
        rung_change(
            workflow=workflow,
            from_rung=request.from_rung,
            to_rung=request.to_rung,
            kind=RungChange.Kind.PROMOTION,
            reason=f"Promotion request #{request.pk} approved by {by.get_username()}: {reason}",
            evidence={
                "promotion_request": request.pk,
                "evidence_hash": request.evidence_hash,
                "evidence": request.evidence,
            },
            actor=by,
        )
        certificate = certificate_issue(
            workflow=workflow,
            rung=request.to_rung,
            policy_version=request.evidence.get("tallies", {}).get("policy_version"),
            evidence_hash=request.evidence_hash,
            approved_by=by,
            promotion_ref=f"promotion-request:{request.pk}",
        )
        PromotionRequest.objects.filter(pk=request.pk).update(certificate=certificate)
        request.certificate = certificate
    return request


@transaction.atomic
def promotion_withdraw(*, request: PromotionRequest, by: User) -> PromotionRequest:
    """The requester takes back an open request (a guarded UPDATE, as deciding)."""
    if by.pk != request.requested_by_id:
        raise Forbidden("Only the requester can withdraw a request.", code="not_requester")
    now = timezone.now()
    done = PromotionRequest.objects.filter(pk=request.pk, state=PromotionRequest.State.OPEN).update(
        state=PromotionRequest.State.WITHDRAWN, decided_by=by, decided_at=now
    )
    if done != 1:
        raise _already(request)
    request.state, request.decided_by, request.decided_at = (
        PromotionRequest.State.WITHDRAWN,
        by,
        now,
    )
    return request
