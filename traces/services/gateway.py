"""The gateway: POST /runs, top to bottom. The token and the workflow rules (memoised,
traces.fastpath), redaction before anything reads the body, the chain of the first
events, the ladder's decision, then one INSERT of the run and its events."""

import hashlib
from datetime import datetime, timedelta
from functools import partial
from typing import Any, NamedTuple

from django.db import transaction
from django.utils import timezone

from ladder.decide import Decision, Queue, Route, decide, rules_at
from ladder.errors import Conflict, Forbidden, LadderError, NotFound
from ladder.policy import Counters
from ladder.rungs import AuditState
from traces import fastpath, redaction
from traces.auth import AgentAuth, authenticate_hash
from traces.chain import GENESIS, canonical_json_of_parsed
from traces.ids import uuid7
from traces.models import Decider, Run, RunStatus, TraceEvent
from traces.selectors import stop_out
from traces.services import policy
from traces.services.execution import execution_enqueue
from traces.services.redactors import agent_redaction_budget, fit, proposal_pseudonyms, redactor_of
from traces.services.trace import EventSpec, chain_links


class Submission(NamedTuple):
    """A redacted submission in canonical JSON, each part serialised once."""

    text: str  # canonical_json of {input, output, proposal, tool_calls}: the request hash's
    input: str
    output: str
    proposal: str
    tool_calls: list[str] | None


def submission_json(redacted: dict) -> Submission:
    """`redacted` has exactly the keys input, tool_calls, output, proposal; `text` is
    byte for byte canonical_json(redacted) (tests/traces/test_chain_format.py)."""
    # Parsed and redacted request parts: JSON values without NaN or Infinity.
    encode = canonical_json_of_parsed
    input_json = encode(redacted["input"])
    output_json = encode(redacted["output"])
    proposal_json = encode(redacted["proposal"])
    calls = redacted["tool_calls"]
    call_jsons = None if calls is None else [encode(call) for call in calls]
    calls_json = "null" if call_jsons is None else "[" + ",".join(call_jsons) + "]"
    text = (
        f'{{"input":{input_json},"output":{output_json},"proposal":{proposal_json},'
        f'"tool_calls":{calls_json}}}'
    )
    return Submission(text, input_json, output_json, proposal_json, call_jsons)


class Placement(NamedTuple):
    """Where the ladder's decision puts a new run."""

    status: RunStatus
    queue: str  # the review queue a person decides in; "" when no person is asked
    escalation_reason: str
    policy: str  # the verdict of the run's policy_decision event; "" when there is none


def run_placement(decision: Decision) -> Placement:
    """How a new run is stored, for every route `ladder.decide` can return.

    Total on purpose: a route (or a queue on a route) this does not know is an error,
    never a run parked where nobody looks, as EXECUTE and DENY once were in the review
    queue. Allowed (EXECUTE) and denied (DENY) runs are decided at submission: the policy
    is their decider, named in the decision and in a policy_decision event.
    """
    route, queue = decision.route, decision.queue
    policy = decision.policy.outcome if decision.policy is not None else ""
    if route == Route.RECORD and queue is None:
        return Placement(RunStatus.RECORDED, "", "", "")
    if route == Route.REVIEW and queue is not None:
        # The reviewer and the trace both learn why a person is asked: the policy's
        # reasons for an escalation, or an L4/L5 run handled at L3 for want of a valid
        # autonomy certificate.
        if queue == Queue.ESCALATED:
            return Placement(RunStatus.PENDING_REVIEW, queue, decision.reason[:300], policy)
        return Placement(RunStatus.PENDING_REVIEW, queue, decision.reason[:300], "")
    if route == Route.EXECUTE and queue is None:
        return Placement(RunStatus.APPROVED, "", "", "allow")
    if route == Route.DENY and queue is None:
        return Placement(RunStatus.DENIED, "", "", "deny")
    raise ValueError(f"the gateway has no place for route {route!r} with queue {queue!r}")


def decision_by_policy(
    *, place: Placement, decision: Decision, proposal: dict | None, at: datetime
) -> dict | None:
    """The run's `decision` when the policy decided at submission (allowed or denied):
    what the agent reads back, and what run_execute carries out (the proposal as sent)."""
    if place.policy not in ("allow", "deny"):
        return None
    if proposal is None:  # ladder.decide records a run without one; anything else is a bug
        raise ValueError(f"the policy cannot {place.policy} a run that proposes nothing")
    return {
        "verdict": "approved" if place.policy == "allow" else "denied",
        "action": proposal["action"],
        "params": proposal["params"],
        "reason": decision.reason,
        "by": "policy",
        "at": at.isoformat(),
    }


def _creation_specs(
    *,
    body: dict,
    parts: Submission,
    rung: int,
    decision: Decision,
    place: Placement,
    actor: str,
    counters: Counters | None,
    audit: bool,
) -> list[EventSpec]:
    specs = [
        EventSpec(
            TraceEvent.Type.INPUT,
            # The rung the run is handled at goes into its first event, where the chain
            # covers it: an examiner recounting the gates from replays reads it there.
            {"input": body["input"], "rung": rung},
            actor,
            payload_json=f'{{"input":{parts.input},"rung":{int(rung)}}}',
        )
    ]
    for call, call_json in zip(body["tool_calls"] or [], parts.tool_calls or [], strict=True):
        specs.append(EventSpec(TraceEvent.Type.TOOL_CALL, call, actor, payload_json=call_json))
    if body["output"] is not None:
        specs.append(
            EventSpec(
                TraceEvent.Type.OUTPUT,
                {"output": body["output"]},
                actor,
                payload_json=f'{{"output":{parts.output}}}',
            )
        )
    if body["proposal"] is not None:
        specs.append(
            EventSpec(
                TraceEvent.Type.PROPOSAL, body["proposal"], actor, payload_json=parts.proposal
            )
        )
    verdict_event = policy.verdict_event(decision, counters=counters, audit=audit)
    if verdict_event is not None:
        specs.append(EventSpec(*verdict_event, "system"))
    if decision.held:
        # Why this L4/L5 run waits: the stop button, not the policy (docs/stop.md).
        specs.append(EventSpec(TraceEvent.Type.HOLD, {"reason": decision.reason}, "system"))
    return specs


def run_submit(*, auth: AgentAuth, body: dict, pseudonyms: dict | None = None) -> tuple[Run, bool]:
    """Take one run from an agent: redact, decide by rung, store run + trace.

    Returns (run, created); `pseudonyms`, when given, is filled with pseudonym → the value
    it replaced, for the pseudonyms a decision can hand back (those in the proposal's
    params, alternatives and artifact) of a run that waits for a decision; for the
    response to the agent only, never stored. The
    same idempotency key on the same workflow returns the stored run and stores nothing,
    also when duplicates race: the unique constraint decides (INSERT … ON CONFLICT DO
    NOTHING), and the loser reads the winner's row.

    The token scope and workflow rules may come from the per-process memo
    (traces.fastpath); the INSERT re-checks them. If they were stale, or if anything
    based on them says no (403, a 409 for L0, a 422 for an unknown action), the run is
    judged again on a fresh read before any answer goes out.
    """
    if fastpath.memo_enabled():
        try:
            return _submit_once(auth=auth, body=body, pseudonyms=pseudonyms, memo=True)
        except (LadderError, _Stale) as exc:
            auth = _fresh(auth)
            if getattr(exc, "code", None) == redaction.TooMuchWork.code and _may_submit(
                auth, body["workflow"]
            ):
                # The body alone decides this (the work does not depend on the workflow's
                # rules): with the token and scope confirmed, no second redaction.
                raise
    for _ in range(3):
        try:
            return _submit_once(auth=auth, body=body, pseudonyms=pseudonyms, memo=False)
        except _Stale:  # the rules changed between the read and the insert: read again
            auth = _fresh(auth)
    raise Conflict("the workflow kept changing while this run was stored; retry", code="retry")


def _may_submit(auth: AgentAuth, slug: str) -> bool:
    workflow = fastpath.workflow_row(slug, memo=False)
    return workflow is not None and workflow.id in auth.workflow_ids


def _fresh(auth: AgentAuth) -> AgentAuth:
    return authenticate_hash(auth.token_hash) if auth.token_hash else auth


class _Stale(Exception):
    """The token or workflow rules changed under a submission; nothing was stored."""


def _submit_once(
    *, auth: AgentAuth, body: dict, pseudonyms: dict | None, memo: bool
) -> tuple[Run, bool]:
    if pseudonyms:
        pseudonyms.clear()
    workflow = fastpath.workflow_row(body["workflow"], memo=memo)
    if workflow is None:
        raise NotFound(f"unknown workflow '{body['workflow']}'", code="unknown_workflow")
    if workflow.id not in auth.workflow_ids:
        raise Forbidden(
            f"this token is not scoped to workflow '{workflow.slug}'",
            code="workflow_not_allowed",
        )
    redactor = redactor_of(workflow.personal_fields, workflow.linkage)
    # Redact before anything else touches the payload: nothing below sees raw PII. The
    # key too: agents build keys from what they handle ("refund-ana@example.com-1").
    key = stored_idempotency_key(redactor, body["idempotency_key"])
    found: dict[str, Any] = {}
    with agent_redaction_budget() as budget:
        redacted = redactor.redact(
            {k: body.get(k) for k in ("input", "tool_calls", "output", "proposal")},
            found,
            budget,
        )
    parts = submission_json(redacted)
    request_hash = hashlib.sha256(parts.text.encode("utf-8")).hexdigest()
    counting = policy.counting_for(workflow.rules, redacted["proposal"])
    store = partial(
        _decide_and_store,
        auth=auth,
        pseudonyms=pseudonyms,
        workflow=workflow,
        key=key,
        found=found,
        parts=parts,
        redacted=redacted,
        request_hash=request_hash,
        counting=counting,
    )
    if counting is None:
        return store(locked=False)
    if fastpath.memo_enabled():
        # PostgreSQL: decide on counters read without a lock; the INSERT re-checks an
        # allow under the counters' locks and stores nothing if a limit filled up in
        # between (traces_policy_room), and the proposal is decided again.
        for _attempt in range(2):
            try:
                return store(locked=False)
            except _Full:
                pass
    # Still full after that (a hot limit), or SQLite: lock, read, decide and store in one
    # transaction.
    with transaction.atomic():
        return store(locked=True)


class _Full(Exception):
    """An allowed action no longer fits a rate limit it was judged to fit; nothing stored."""


def _decide_and_store(
    *,
    auth: AgentAuth,
    pseudonyms: dict | None,
    workflow: fastpath.WorkflowRow,
    key: str,
    found: dict,
    parts: Submission,
    redacted: dict,
    request_hash: str,
    counting: policy.Counting | None,
    locked: bool,
) -> tuple[Run, bool]:
    proposal = redacted["proposal"]
    now = timezone.now()
    # L4/L5 only under an autonomy certificate valid now; otherwise handled at L3.
    rules = rules_at(workflow.rules, now)
    counters = None
    if counting is not None:
        live = rules.policy_decides
        if live and locked:
            policy.lock_counters(workflow.id, counting)
        counters = policy.read_counters(workflow.id, counting, at=now, shadow=not live)
    decision = decide(rules, proposal, counters)
    place = run_placement(decision)
    if place.status != RunStatus.RECORDED and pseudonyms is not None:
        # A recorded run is never decided: nothing to restore.
        pseudonyms.update(proposal_pseudonyms(found, proposal))
    run_id = uuid7()
    audit = policy.audit_due(decision, rules, run_id)
    specs = _creation_specs(
        body=redacted,
        parts=parts,
        rung=rules.rung,
        decision=decision,
        place=place,
        actor=auth.actor,
        counters=counters,
        audit=audit,
    )
    links = chain_links(run_id=run_id, specs=specs, prev_hash=GENESIS, start_seq=1, at=now)
    decided = decision_by_policy(place=place, decision=decision, proposal=proposal, at=now)
    run = fastpath.new_run(
        {
            "id": run_id,
            "workflow_id": workflow.id,
            "idempotency_key": key,
            "request_hash": request_hash,
            "rung": rules.rung,  # the rung the run is handled at
            "status": place.status,
            "queue": place.queue,
            "action_type_id": workflow.action_ids[proposal["action"]] if proposal else None,
            "proposal": proposal,
            "summary": _summary(proposal),
            "value": decision.value,
            "currency": decision.currency[:8],
            "flags": _flags(proposal),
            "escalation_reason": place.escalation_reason,
            "decision": decided,
            "decided_at": now if decided else None,
            "policy": policy.policy_verdict(decision) if decision.policy else None,
            "shadow": policy.policy_verdict(decision) if decision.shadow else None,
            "decider": Decider.POLICY if decided else Decider.NONE,
            "shadow_outcome": decision.shadow.outcome if decision.shadow else "",
            "shadow_version": decision.policy_version if decision.shadow else None,
            "audit": AuditState.DUE if audit else AuditState.NONE,
            "held": decision.held,
            # A run held by a stop has no deadline while the workflow is stopped: the
            # resume hands it its rung's handling, and a fresh deadline if it waits.
            "deadline_at": (
                now + timedelta(seconds=workflow.review_deadline_seconds)
                if place.status == RunStatus.PENDING_REVIEW and not decision.held
                else None
            ),
            "trace_head": links[-1].hash,
            "trace_length": len(links),
            "created_at": now,
            "updated_at": now,
        }
    )
    write = None
    if counting is not None:
        write = policy.policy_write(
            workflow_id=workflow.id, counting=counting, decision=decision, at=now
        )
    stored = fastpath.insert_run(
        run,
        links,
        at=now,
        auth=auth,
        workflow=workflow,
        proposal_json=parts.proposal,
        policy=write,
    )
    if stored is fastpath.Stored.FULL:
        raise _Full
    # The stop state the run was judged under (the INSERT's guard confirmed it current):
    # the agent reads it in this answer (traces.api.run_out).
    stopped = stop_out(at=workflow.stopped_at, reason=workflow.rules.stopped)
    if stored is fastpath.Stored.NEW:
        run.workflow_stopped = stopped
        if write is not None and not fastpath.memo_enabled():
            policy.record_effects_orm(run_id=run_id, workflow_id=workflow.id, write=write, at=now)
        if place.status == RunStatus.APPROVED and proposal["action"] in workflow.server_actions:
            # The same at-most-once path as a person's approval; an agent executor's run
            # is claimed by its agent, who reads `approved` in this very answer.
            execution_enqueue(run_id=run_id)
        return run, True
    if stored is fastpath.Stored.STALE:
        raise _Stale
    existing = Run.objects.filter(workflow_id=workflow.id, idempotency_key=key).first()
    if existing is None:  # the key's owner vanished between the two statements: retry
        raise Conflict("a concurrent duplicate was being stored; retry", code="retry")
    existing = _same_request(existing, request_hash)
    existing.workflow_stopped = stopped
    return existing, False


_KEY_MAX = Run._meta.get_field("idempotency_key").max_length


def stored_idempotency_key(redactor: redaction.Redactor, raw: str) -> str:
    """The idempotency key as stored: redacted like any string the agent sends.

    Pseudonyms are deterministic (HMAC), so a retry with the same raw key finds its run,
    and keys differing in the person they name stay different keys. A pseudonym can be
    longer than what it replaced; a key that grows past the column keeps its start and
    ends in the sha256 of the whole redacted key, still one stored key per raw key.
    """
    return fit(redactor.redact_text(raw), _KEY_MAX)


def _same_request(run: Run, request_hash: str) -> Run:
    if run.request_hash != request_hash:
        raise Conflict(
            "idempotency_key was already used for a different request on this workflow",
            code="idempotency_key_reused",
        )
    return run


def _summary(proposal: dict | None) -> str:
    if not proposal:
        return ""
    summary = proposal.get("summary")
    if isinstance(summary, str) and summary.strip():
        return " ".join(summary.split())[:300]
    return proposal["action"]


def _flags(proposal: dict | None) -> list[str]:
    if not proposal:
        return []
    return [str(f)[:60] for f in proposal.get("flags") or []][:20]
