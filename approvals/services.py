"""Writes by people: opening a run for review and deciding it."""

import json
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.core.cache import cache
from django.db import transaction

from approvals import review as rules
from approvals.models import Review
from approvals.roles import access_for
from ladder.decide import validate_params
from ladder.errors import Conflict, Forbidden, Unprocessable
from traces.models import Run, RunStatus, TraceEvent
from traces.replay import shown_payload
from traces.selectors import DecisionContext, decision_context
from traces.services.decisions import DecisionInput, run_decide
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


def review_open(*, run: Run, user: User) -> OpenedReview:
    """Build what is shown, record it in the trace the first time this person is shown
    this screen, and take the "open by NAME" reservation if nobody else holds it.

    The first showing freezes the agent's context: from then on the gateway refuses new
    input, tool calls and output for the run (traces.services.agent.run_append_events)."""
    ctx = decision_context(run_id=run.id)
    snap = run_snapshot(run=run, ctx=ctx)
    digest = rules.snapshot_hash(snap)
    held_by = None
    if run.status == RunStatus.PENDING_REVIEW and run.workflow_id in access_for(user).review:
        held_by = reservation_take(run=run, user=user)
        review_shown_record(run=run, user=user, snap=snap, digest=digest, refs=ctx.refs)
    return OpenedReview(snapshot=snap, hash=digest, held_by=held_by)


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
    key = _reservation_key(run_id)
    current = cache.get(key)
    if current and json.loads(current)[0] == user.pk:
        cache.delete(key)


def reservations(run_ids: list) -> dict[str, str]:
    """run id → holder name, for a page of runs, in one cache round trip."""
    keys = {_reservation_key(rid): str(rid) for rid in run_ids}
    found = cache.get_many(list(keys))
    return {keys[k]: json.loads(v)[1] for k, v in found.items()}


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


@transaction.atomic
def review_decide(
    *,
    run: Run,
    reviewer: User,
    seen_hash: str,
    seen_version: int,
    decision: DraftSubmission | Pick | Approval,
) -> Review:
    """Decide a waiting run exactly once, on the content the reviewer saw.

    The snapshot hash is recomputed: if the run changed since it was shown, the decision
    is refused as stale. run_decide's guarded UPDATE settles races between reviewers.
    """
    _check_can_decide(run=run, reviewer=reviewer)
    if run.status != RunStatus.PENDING_REVIEW:
        raise Conflict(
            f"already decided by {run.decided_by.get_username() if run.decided_by else 'someone'}"
            f" ({run.get_status_display().lower()})",
            code="already_decided",
        )
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
            review.light_edit = review.edit_distance <= rules.LIGHT_EDIT_MAX
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
