"""Writes on runs and their traces. Every status change is a guarded UPDATE or happens
under a row lock, so retries, double clicks and concurrent duplicates are harmless."""

import hashlib
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any, NamedTuple

from django.conf import settings
from django.db import transaction
from django.db.models import F, Func, IntegerField, Sum
from django.utils import timezone

from ladder.decide import Decision, Route, decide
from ladder.errors import (
    Conflict,
    Forbidden,
    LadderError,
    NotFound,
    PayloadTooLarge,
    Unprocessable,
)
from ladder.models import Workflow
from ladder.rungs import Executor
from traces import fastpath, redaction
from traces.auth import AgentAuth, authenticate_hash, hash_token, new_token
from traces.chain import GENESIS, EventFrame, canonical_json, canonical_json_of_parsed, link_hash
from traces.ids import uuid7
from traces.models import AgentToken, MetricPoint, Run, RunStatus, TraceEvent
from traces.replay import EXECUTION_PHASE, FREEZING_TYPES

# Statuses in which a human may still decide.
WAITING = RunStatus.PENDING_REVIEW
AGENT_EVENT_TYPES = {TraceEvent.Type.INPUT, TraceEvent.Type.TOOL_CALL, TraceEvent.Type.OUTPUT}


class OctetLength(Func):
    """A text's size in UTF-8 bytes (PostgreSQL octet_length; SQLite counts a blob)."""

    function = "OCTET_LENGTH"
    output_field = IntegerField()

    def as_sqlite(self, compiler, connection, **extra):
        return self.as_sql(compiler, connection, template="LENGTH(CAST(%(expressions)s AS BLOB))")


@dataclass(frozen=True)
class EventSpec:
    type: str
    payload: Any
    actor: str
    # The payload's canonical JSON when the caller already has it (the gateway does).
    payload_json: str | None = None


# -- tokens -----------------------------------------------------------------------------


def token_create(*, name: str, workflows: list[Workflow]) -> tuple[AgentToken, str]:
    """Create an agent token scoped to `workflows`; the raw token is returned once."""
    if not workflows:
        raise Unprocessable("a token needs at least one workflow", code="no_workflows")
    raw = new_token()
    with transaction.atomic():
        token = AgentToken.objects.create(name=name, prefix=raw[:12], token_hash=hash_token(raw))
        token.workflows.set(workflows)
    return token, raw


# -- redaction --------------------------------------------------------------------------


@lru_cache(maxsize=256)
def _redactor(personal_fields: tuple[str, ...], linkage: str) -> redaction.Redactor:
    # One key per linkage domain (Workflow.linkage_group), derived from the master key:
    # a person's pseudonyms link inside the domain and nowhere else.
    return redaction.make_redactor(
        key=redaction.linkage_key(settings.LADDER_PSEUDONYM_KEY, linkage),
        personal_fields=personal_fields,
        phone_regions=tuple(settings.LADDER_PHONE_REGIONS),
    )


def redactor_for(workflow: Workflow) -> redaction.Redactor:
    return _redactor(tuple(sorted(workflow.personal_fields or ())), workflow.linkage_domain)


@contextmanager
def agent_redaction_budget() -> Iterator[redaction.Budget]:
    """The redaction budget of one agent request (every value it sends counts against
    one budget); a body over it is refused with a 422 and nothing of it is stored."""
    try:
        yield redaction.Budget(
            max_values=settings.LADDER_MAX_PERSONAL_VALUES,
            max_work=settings.LADDER_REDACTION_BUDGET,
        )
    except redaction.RedactionRefused as exc:
        raise Unprocessable(str(exc), code=exc.code) from None


def _proposal_pseudonyms(found: dict[str, Any], proposal: dict | None) -> dict[str, Any]:
    """The part of `found` (pseudonym → value sent) that a decision can hand back: the
    pseudonyms in the proposal's params, alternatives and artifact. The rest of the body
    (input, tool calls, output) never comes back in a decision, so its values are not
    echoed: the answer is not an oracle for whatever an agent cares to send."""
    if not found or not proposal:
        return {}
    tokens: set[str] = set()
    _collect_tokens(
        [proposal.get("params"), proposal.get("alternatives"), proposal.get("artifact")],
        tokens,
    )
    return {token: found[token] for token in tokens if token in found}


def _collect_tokens(value: Any, into: set[str]) -> None:
    if isinstance(value, str):
        if "<" in value:
            into.update(m.group(0) for m in redaction.PSEUDONYM_RE.finditer(value))
    elif isinstance(value, dict):
        for k, v in value.items():
            _collect_tokens(k, into)
            _collect_tokens(v, into)
    elif isinstance(value, list):
        for v in value:
            _collect_tokens(v, into)


# -- the chain --------------------------------------------------------------------------


class Link(NamedTuple):
    """One computed chain link, before it becomes a row."""

    seq: int
    type: str
    actor: str
    document: str
    prev_hash: str
    hash: str


def _chain(
    *, run_id: uuid.UUID, specs: list[EventSpec], prev_hash: str, start_seq: int, at: datetime
) -> list[Link]:
    links = []
    frame = EventFrame(str(run_id), at)
    for offset, spec in enumerate(specs):
        seq = start_seq + offset
        payload_json = spec.payload_json
        if payload_json is None:
            payload_json = canonical_json(spec.payload)
        document = frame.document(
            seq=seq, type=spec.type, payload_json=payload_json, actor=spec.actor
        )
        digest = link_hash(prev_hash, document)
        links.append(Link(seq, spec.type, spec.actor, document, prev_hash, digest))
        prev_hash = digest
    return links


def _build_events(
    *, run_id: uuid.UUID, specs: list[EventSpec], prev_hash: str, start_seq: int, at: datetime
) -> list[TraceEvent]:
    return [
        TraceEvent(run_id=run_id, at=at, **link._asdict())
        for link in _chain(
            run_id=run_id, specs=specs, prev_hash=prev_hash, start_seq=start_seq, at=at
        )
    ]


def trace_append(
    *, run: Run, specs: list[EventSpec], bump_version: bool = False, bounded: bool = False
) -> list[TraceEvent]:
    """Append events to a run's chain. The caller holds the run's row lock (or created it
    in this transaction): the lock is what keeps two appends from forking the chain.
    `bounded`: an agent's write, refused when the run's trace would outgrow its limits."""
    events = _build_events(
        run_id=run.id,
        specs=specs,
        prev_hash=run.trace_head or GENESIS,
        start_seq=run.trace_length + 1,
        at=timezone.now(),
    )
    if bounded:
        _check_trace_room(run=run, events=events)
    TraceEvent.objects.bulk_create(events)
    run.trace_head = events[-1].hash
    run.trace_length += len(events)
    fields = ["trace_head", "trace_length", "updated_at"]
    if bump_version:
        run.version += 1
        fields.append("version")
    run.save(update_fields=fields)
    return events


# -- the gateway ------------------------------------------------------------------------


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


def _creation_specs(
    *, body: dict, parts: Submission, decision: Decision, actor: str
) -> list[EventSpec]:
    specs = [
        EventSpec(
            TraceEvent.Type.INPUT,
            {"input": body["input"]},
            actor,
            payload_json=f'{{"input":{parts.input}}}',
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
    if decision.reason and decision.queue == "escalated":
        specs.append(
            EventSpec(
                TraceEvent.Type.POLICY_DECISION,
                {"decision": "escalate", "reason": decision.reason, "policy_version": None},
                "system",
            )
        )
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
    redactor = _redactor(workflow.personal_fields, workflow.linkage)
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
    proposal = redacted["proposal"]
    decision = decide(workflow.rules, proposal)
    if decision.route == Route.RECORD:
        status, queue = RunStatus.RECORDED, ""
    else:
        status, queue = RunStatus.PENDING_REVIEW, decision.queue or ""
        if pseudonyms is not None:  # a recorded run is never decided: nothing to restore
            pseudonyms.update(_proposal_pseudonyms(found, proposal))
    now = timezone.now()
    run_id = uuid7()
    specs = _creation_specs(body=redacted, parts=parts, decision=decision, actor=auth.actor)
    links = _chain(run_id=run_id, specs=specs, prev_hash=GENESIS, start_seq=1, at=now)
    run = fastpath.new_run(
        {
            "id": run_id,
            "workflow_id": workflow.id,
            "idempotency_key": key,
            "request_hash": request_hash,
            "rung": workflow.rung,
            "status": status,
            "queue": queue,
            "action_type_id": workflow.action_ids[proposal["action"]] if proposal else None,
            "proposal": proposal,
            "summary": _summary(proposal),
            "value": decision.value,
            "currency": decision.currency[:8],
            "flags": _flags(proposal),
            "escalation_reason": decision.reason[:300] if queue == "escalated" else "",
            "trace_head": links[-1].hash,
            "trace_length": len(links),
            "created_at": now,
            "updated_at": now,
        }
    )
    stored = fastpath.insert_run(
        run, links, at=now, auth=auth, workflow=workflow, proposal_json=parts.proposal
    )
    if stored is fastpath.Stored.NEW:
        return run, True
    if stored is fastpath.Stored.STALE:
        raise _Stale
    existing = Run.objects.filter(workflow_id=workflow.id, idempotency_key=key).first()
    if existing is None:  # the key's owner vanished between the two statements: retry
        raise Conflict("a concurrent duplicate was being stored; retry", code="retry")
    return _same_request(existing, request_hash), False


_KEY_MAX = Run._meta.get_field("idempotency_key").max_length


def stored_idempotency_key(redactor: redaction.Redactor, raw: str) -> str:
    """The idempotency key as stored: redacted like any string the agent sends.

    Pseudonyms are deterministic (HMAC), so a retry with the same raw key finds its run,
    and keys differing in the person they name stay different keys. A pseudonym can be
    longer than what it replaced; a key that grows past the column keeps its start and
    ends in the sha256 of the whole redacted key, still one stored key per raw key.
    """
    return _fit(redactor.redact_text(raw), _KEY_MAX)


def _fit(text: str, limit: int) -> str:
    """`text`, or when longer than `limit`, its start and the sha256 of all of it."""
    if len(text) <= limit:
        return text
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    return f"{text[: limit - len(digest) - 1]}~{digest}"


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


def run_for_agent(*, auth: AgentAuth, run_id: str) -> Run:
    """The run, if the token may see it; a run of another workflow is simply not found."""
    try:
        run_uuid = uuid.UUID(str(run_id))
    except ValueError:
        raise NotFound("no such run", code="unknown_run") from None
    run = (
        Run.objects.select_related("workflow", "action_type")
        .filter(pk=run_uuid, workflow_id__in=auth.workflow_ids)
        .first()
    )
    if run is None:
        raise NotFound("no such run", code="unknown_run")
    return run


# Agent context sent after the decision is accepted only as a report on carrying out the
# decided action ({"type": "tool_call", "phase": "execution", ...}), and only once there
# is something to carry out.
_EXECUTABLE = (RunStatus.APPROVED, RunStatus.EXECUTING, RunStatus.EXECUTED, RunStatus.FAILED)
_UNDECIDED = (RunStatus.RECEIVED, RunStatus.PENDING_REVIEW, RunStatus.RECORDED)


def _context_frozen(run: Run) -> bool:
    """A reviewer was shown the run, or a person or the policy decided on it."""
    if run.status not in _UNDECIDED:
        return True
    return TraceEvent.objects.filter(run_id=run.id, type__in=FREEZING_TYPES).exists()


def _check_trace_room(*, run: Run, events: list[TraceEvent]) -> None:
    """Bound what an agent may add to one run's trace (events and stored bytes), so that
    no run, page or replay grows without limit. Only agents' writes are bounded: the
    gateway's own events (reviews, policy, execution) are few per run and always kept."""
    max_events = settings.LADDER_MAX_RUN_EVENTS
    if run.trace_length + len(events) > max_events:
        raise Conflict(
            f"this run's trace is full: {run.trace_length} events, at most {max_events} per run "
            "(LADDER_MAX_RUN_EVENTS); nothing was added",
            code="trace_full",
        )
    max_bytes = settings.LADDER_MAX_RUN_TRACE_BYTES
    adding = sum(len(ev.document.encode("utf-8")) for ev in events)
    stored = (
        TraceEvent.objects.filter(run_id=run.id).aggregate(n=Sum(OctetLength("document")))["n"] or 0
    )
    if stored + adding > max_bytes:
        raise PayloadTooLarge(
            f"this run's trace would hold {stored + adding} bytes, at most {max_bytes} per run "
            "(LADDER_MAX_RUN_TRACE_BYTES); nothing was added",
            code="trace_too_large",
        )


@transaction.atomic
def run_append_events(*, auth: AgentAuth, run: Run, events: list[dict]) -> list[TraceEvent]:
    """Agents may add context (input, tool calls, output) to their own runs; the evidence
    steps (reviews, policy, execution) are written by the gateway only.

    Once a reviewer was shown the run, or a person or the policy decided on it, the
    context that decision rests on is closed: more input, tool calls or output would
    rewrite the evidence after the fact. What the agent reports about carrying out the
    decided action comes after the decision, marked `"phase": "execution"`."""
    for ev in events:
        if ev["type"] not in AGENT_EVENT_TYPES:
            raise Unprocessable(
                f"event type '{ev['type']}' is written by the gateway, not by agents "
                f"(agents may send: {', '.join(sorted(AGENT_EVENT_TYPES))})",
                code="event_type_not_allowed",
            )
        phase = ev.get("phase")
        if phase is not None and phase != EXECUTION_PHASE:
            raise Unprocessable(
                f"phase must be '{EXECUTION_PHASE}' or absent, not {phase!r}", code="invalid_phase"
            )
    locked = Run.objects.select_for_update(of=("self",)).get(pk=run.pk)
    execution = [ev.get("phase") == EXECUTION_PHASE for ev in events]
    if any(execution):
        if locked.status not in _EXECUTABLE:
            raise Conflict(
                f"run is {locked.status}: execution-phase events are accepted only after the "
                "action was approved",
                code="not_approved",
            )
        if not all(execution):
            raise Conflict(
                "the decision on this run was made on the context it had; only execution-phase "
                'events ("phase": "execution") can be added now',
                code="context_frozen",
            )
    elif _context_frozen(locked):
        decided = locked.status not in _UNDECIDED
        raise Conflict(
            (
                f"run is {locked.status}: its decision was made on the context it had"
                if decided
                else "a reviewer has been shown this run: its context can no longer change"
            )
            + '; report on carrying out an approved action with "phase": "execution" '
            "events or POST /runs/{id}/result",
            code="context_frozen",
        )
    redactor = redactor_for(run.workflow)
    with agent_redaction_budget() as budget:
        specs = [
            EventSpec(
                ev["type"],
                redactor.redact({k: v for k, v in ev.items() if k != "type"}, budget=budget),
                auth.actor,
            )
            for ev in events
        ]
    # New context on a waiting run changes what a reviewer must see: older views go stale.
    return trace_append(
        run=locked, specs=specs, bump_version=locked.status == WAITING, bounded=True
    )


@transaction.atomic
def run_report_result(
    *, auth: AgentAuth, run: Run, succeeded: bool, output: Any = None, error: str | None = None
) -> Run:
    """The agent reports how its approved action went. Exactly one result counts; a
    retried identical report is accepted and changes nothing."""
    locked = (
        Run.objects.select_for_update(of=("self",)).select_related("action_type").get(pk=run.pk)
    )
    new_status = RunStatus.EXECUTED if succeeded else RunStatus.FAILED
    if locked.status in (RunStatus.EXECUTED, RunStatus.FAILED):
        if locked.status == new_status:
            return locked
        raise Conflict(f"a result was already reported ({locked.status})", code="already_reported")
    if locked.status not in (RunStatus.APPROVED, RunStatus.EXECUTING):
        raise Conflict(
            f"run is {locked.status}: only an approved run can report a result",
            code="not_approved",
        )
    if locked.action_type and locked.action_type.executor == Executor.SERVER:
        raise Conflict(
            "this action is executed by the server, not the agent", code="server_executor"
        )
    redactor = redactor_for(locked.workflow)
    with agent_redaction_budget() as budget:
        payload = redactor.redact(
            {
                "phase": "finished",
                "status": "succeeded" if succeeded else "failed",
                "output": output,
                "error": error,
                "executor": "agent",
            },
            budget=budget,
        )
    locked.status = new_status
    locked.result = payload
    locked.executed_at = timezone.now()
    locked.save(update_fields=["status", "result", "executed_at", "updated_at"])
    trace_append(run=locked, specs=[EventSpec(TraceEvent.Type.EXECUTION, payload, auth.actor)])
    return locked


@transaction.atomic
def run_claim(*, auth: AgentAuth, run: Run) -> Run:
    """An agent executor takes an approved action before doing it (approved → executing).

    Exactly one claim succeeds, so an agent that crashed and retried — or two replicas of
    it — can tell that the action is already being done and must not be done again.
    """
    locked = (
        Run.objects.select_for_update(of=("self",)).select_related("action_type").get(pk=run.pk)
    )
    if locked.action_type and locked.action_type.executor == Executor.SERVER:
        raise Conflict(
            "this action is executed by the server, not the agent", code="server_executor"
        )
    if locked.status == RunStatus.EXECUTING:
        raise Conflict(
            "already claimed: the action is being carried out; report its result instead of "
            "doing it again",
            code="already_claimed",
        )
    if locked.status in (RunStatus.EXECUTED, RunStatus.FAILED, RunStatus.ROLLED_BACK):
        raise Conflict(f"a result was already reported ({locked.status})", code="already_reported")
    if locked.status != RunStatus.APPROVED:
        raise Conflict(
            f"run is {locked.status}: only an approved run can be claimed", code="not_approved"
        )
    locked.status = RunStatus.EXECUTING
    locked.execution_attempts += 1
    locked.save(update_fields=["status", "execution_attempts", "updated_at"])
    trace_append(
        run=locked,
        specs=[
            EventSpec(
                TraceEvent.Type.EXECUTION, {"phase": "claimed", "executor": "agent"}, auth.actor
            )
        ],
    )
    return locked


@transaction.atomic
def run_record_outcome(
    *, actor: str, run: Run, label: str, source: str, note: str = "", by_agent: bool = True
) -> Run:
    """Add an outcome label to the run's trace. Labels accumulate and never replace one
    another: once any source said `wrong`, the run stays `wrong` (a silent failure for
    the gates), whatever is labelled after."""
    locked = Run.objects.select_for_update(of=("self",)).get(pk=run.pk)
    with agent_redaction_budget() as budget:
        payload = redactor_for(run.workflow).redact(
            {"label": label, "source": source, "note": note}, budget=budget
        )
    specs = [EventSpec(TraceEvent.Type.OUTCOME, payload, actor)]
    trace_append(run=locked, specs=specs, bounded=by_agent)
    if locked.outcome != "wrong" and locked.outcome != label:
        locked.outcome = label
        locked.save(update_fields=["outcome", "updated_at"])
    return locked


_METRIC_MAX = MetricPoint._meta.get_field("metric").max_length


def metric_record(*, workflow: Workflow, points: list[dict]) -> list[MetricPoint]:
    # Metric names are agent-sent free text like any other: redacted before they are stored.
    redactor = redactor_for(workflow)
    return MetricPoint.objects.bulk_create(
        [
            MetricPoint(
                workflow=workflow,
                metric=_fit(redactor.redact_text(p["metric"]), _METRIC_MAX),
                value=p["value"],
                at=p["at"],
            )
            for p in points
        ]
    )


# -- decisions by people (called by approvals) ------------------------------------------


@dataclass(frozen=True)
class DecisionInput:
    verdict: str  # "approved" | "rejected"
    action: str
    params: dict
    extra: dict  # what the review stored (edit distance, match, chosen option...)
    reason: str = ""


def run_decide(
    *,
    run_id: uuid.UUID,
    user_id: int,
    actor_name: str,
    seen_version: int,
    seen_hash: str,
    decision: DecisionInput,
) -> Run:
    """Move a waiting run to approved/rejected exactly once.

    The guarded UPDATE is the arbiter: it matches only while the run still waits and is
    still the version the reviewer saw, so of two racing reviewers exactly one row
    changes. The loser learns who won (or that the run changed under them).
    """
    now = timezone.now()
    stored = {
        "verdict": decision.verdict,
        "action": decision.action,
        "params": decision.params,
        "reason": decision.reason,
        "by": actor_name,
        "at": now.isoformat(),
        **decision.extra,
    }
    status = RunStatus.APPROVED if decision.verdict == "approved" else RunStatus.REJECTED
    with transaction.atomic():
        changed = Run.objects.filter(pk=run_id, status=WAITING, version=seen_version).update(
            status=status,
            decision=stored,
            decided_by_id=user_id,
            decided_at=now,
            version=F("version") + 1,
            updated_at=now,
        )
        if changed != 1:
            _explain_lost_decision(run_id)
        run = (
            Run.objects.select_for_update(of=("self",))
            .select_related("action_type", "workflow")
            .get(pk=run_id)
        )
        trace_append(
            run=run,
            specs=[
                EventSpec(
                    TraceEvent.Type.REVIEW_DECISION,
                    {**stored, "seen_hash": seen_hash},
                    f"user:{user_id}",
                )
            ],
        )
        if (
            status == RunStatus.APPROVED
            and run.action_type
            and (run.action_type.executor == Executor.SERVER)
        ):
            from traces.tasks import execute_run

            transaction.on_commit(lambda: execute_run.delay(str(run_id)))
    return run


def _explain_lost_decision(run_id: uuid.UUID) -> None:
    current = Run.objects.filter(pk=run_id).select_related("decided_by").first()
    if current is None:
        raise NotFound("no such run", code="unknown_run")
    if current.status != WAITING:
        who = current.decided_by.get_username() if current.decided_by else "the system"
        raise Conflict(
            f"already decided by {who} ({current.get_status_display().lower()})",
            code="already_decided",
            details={"decided_by": who, "status": current.status},
        )
    raise Conflict(
        "this run changed since you opened it; reload to see the current version",
        code="stale_view",
    )


# -- server execution (the Celery task calls this) ---------------------------------------


def run_execute(*, run_id: uuid.UUID) -> Run:
    """Run an approved action's server executor at most once.

    The claim (approved → executing) is a guarded UPDATE committed before the call, so a
    duplicate delivery finds nothing to claim. A redelivery after a worker died finds the
    run still `executing`: an idempotent executor is called again with the same key (the
    system behind it deduplicates); any other is failed for a human to reconcile.
    """
    from traces.executors import resolve

    with transaction.atomic():
        claimed = Run.objects.filter(pk=run_id, status=RunStatus.APPROVED).update(
            status=RunStatus.EXECUTING,
            execution_attempts=F("execution_attempts") + 1,
            updated_at=timezone.now(),
        )
        run = (
            Run.objects.select_for_update(of=("self",))
            .select_related("action_type", "workflow")
            .get(pk=run_id)
        )
        if not claimed:
            if run.status != RunStatus.EXECUTING:
                return run  # already finished, or never approved: nothing to do
            spec = resolve(run.action_type.executor_path)
            if not spec.idempotent:
                return _finish_execution(
                    run=run,
                    succeeded=False,
                    output=None,
                    error="the worker stopped during execution and this executor cannot be "
                    "retried safely: check the target system and reconcile by hand",
                )
            Run.objects.filter(pk=run_id).update(execution_attempts=F("execution_attempts") + 1)
        trace_append(
            run=run,
            specs=[
                EventSpec(
                    TraceEvent.Type.EXECUTION,
                    {
                        "phase": "started",
                        "executor": run.action_type.executor_path,
                        "attempt": run.execution_attempts + (0 if claimed else 1),
                    },
                    "system",
                )
            ],
        )
    spec = resolve(run.action_type.executor_path)
    decision = run.decision or {}
    try:
        output = spec.fn(
            action=decision.get("action", run.action),
            params=decision.get("params", {}),
            idempotency_key=str(run.id),
        )
        error = None
    except Exception as exc:
        output, error = None, f"{type(exc).__name__}: {exc}"
    with transaction.atomic():
        locked = (
            Run.objects.select_for_update(of=("self",)).select_related("workflow").get(pk=run_id)
        )
        if locked.status != RunStatus.EXECUTING:
            return locked
        return _finish_execution(run=locked, succeeded=error is None, output=output, error=error)


def _finish_execution(*, run: Run, succeeded: bool, output: Any, error: str | None) -> Run:
    payload = redactor_for(run.workflow).redact(
        {
            "phase": "finished",
            "status": "succeeded" if succeeded else "failed",
            "output": output,
            "error": error,
            "executor": "server",
        }
    )
    run.status = RunStatus.EXECUTED if succeeded else RunStatus.FAILED
    run.result = payload
    run.executed_at = timezone.now()
    run.save(update_fields=["status", "result", "executed_at", "updated_at"])
    trace_append(run=run, specs=[EventSpec(TraceEvent.Type.EXECUTION, payload, "system")])
    return run
