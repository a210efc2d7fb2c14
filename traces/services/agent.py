"""What an agent does with its runs after submitting one: read it, add context, claim an
approved action, report its result and outcomes, and report metrics."""

import uuid
from typing import Any

from django.db import transaction
from django.utils import timezone

from ladder.errors import Conflict, NotFound, Unprocessable
from ladder.models import Workflow
from ladder.rungs import Executor
from traces.auth import AgentAuth
from traces.models import MetricPoint, Run, RunStatus, TraceEvent
from traces.replay import EXECUTION_PHASE, FREEZING_TYPES
from traces.selectors import stop_state_locked
from traces.services.breaker import breaker_check_later
from traces.services.redactors import agent_redaction_budget, fit, redactor_for
from traces.services.trace import EventSpec, run_replay_mark, trace_append
from traces.status import APPROVED_STATUSES, DECIDED_STATUSES, FINISHED_STATUSES

AGENT_EVENT_TYPES = {TraceEvent.Type.INPUT, TraceEvent.Type.TOOL_CALL, TraceEvent.Type.OUTPUT}


def run_for_agent(*, auth: AgentAuth, run_id: str) -> Run:
    """The run, if the token may see it; a run of another workflow is simply not found,
    and so is an attention probe: it belongs to no agent (traces/services/probes.py), so
    no agent reads, claims, reports on or adds to it."""
    try:
        run_uuid = uuid.UUID(str(run_id))
    except ValueError:
        raise NotFound("no such run", code="unknown_run") from None
    run = (
        Run.objects.select_related("workflow", "action_type")
        .filter(pk=run_uuid, workflow_id__in=auth.workflow_ids, probe=False)
        .first()
    )
    if run is None:
        raise NotFound("no such run", code="unknown_run")
    return run


# Agent context sent after the decision is accepted only as a report on carrying out the
# decided action ({"type": "tool_call", "phase": "execution", ...}), and only once there
# is something to carry out and until it was rolled back.
_EXECUTABLE = APPROVED_STATUSES - {RunStatus.ROLLED_BACK}


def _context_frozen(run: Run) -> bool:
    """A reviewer was shown the run, or a person or the policy decided on it."""
    if run.status in DECIDED_STATUSES:
        return True
    return TraceEvent.objects.filter(run_id=run.id, type__in=FREEZING_TYPES).exists()


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
        # An input event replaces the run's input (the last one counts): one without it
        # made the replay, the review screen and the gates read the run as having none.
        if ev["type"] == TraceEvent.Type.INPUT and ev.get("input") is None:
            raise Unprocessable(
                "an input event carries the input: 'input' is required and may not be null",
                code="invalid_event",
                details={"field": "input"},
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
        decided = locked.status in DECIDED_STATUSES
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
        run=locked,
        specs=specs,
        bump_version=locked.status == RunStatus.PENDING_REVIEW,
        bounded=True,
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
    run_replay_mark(run=locked)
    breaker_check_later(run=locked)
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
    if locked.status in FINISHED_STATUSES:
        raise Conflict(f"a result was already reported ({locked.status})", code="already_reported")
    if locked.status != RunStatus.APPROVED:
        raise Conflict(
            f"run is {locked.status}: only an approved run can be claimed", code="not_approved"
        )
    # Under a share lock on the workflow row: a stop waits for this claim to commit, and
    # this claim for a stop being made (docs/stop.md), so no claim lands after a stop.
    state = stop_state_locked(workflow_id=locked.workflow_id)
    if state.stopped_at is not None:
        # The approval stands; the action waits for the resume.
        raise Conflict(
            f"workflow '{state.slug}' is stopped ({state.reason}): the run stays approved; "
            "do not act on it: wait (GET /runs/{id}?wait=S) until the workflow is "
            "resumed, then claim it",
            code="workflow_stopped",
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
    *,
    actor: str,
    run: Run,
    label: str,
    source: str,
    note: str = "",
    by_agent: bool = True,
    by: int | None = None,
) -> Run:
    """Add an outcome label to the run's trace. Labels accumulate and never replace one
    another: once any source said `wrong`, the run stays `wrong` (a silent failure for
    the gates), whatever is labelled after. `by`: the person who labelled it (an
    auditor's user id), kept in the event and masked in the agent's replay."""
    locked = Run.objects.select_for_update(of=("self",)).get(pk=run.pk)
    labelled = {"label": label, "source": source, "note": note}
    if by is not None:
        labelled["by"] = by
    with agent_redaction_budget() as budget:
        payload = redactor_for(run.workflow).redact(labelled, budget=budget)
    specs = [EventSpec(TraceEvent.Type.OUTCOME, payload, actor)]
    trace_append(run=locked, specs=specs, bounded=by_agent)
    if locked.outcome != "wrong" and locked.outcome != label:
        locked.outcome = label
        locked.save(update_fields=["outcome", "updated_at"])
    if label == "wrong":  # the only label that can break a bound
        breaker_check_later(run=locked)
    return locked


_METRIC_MAX = MetricPoint._meta.get_field("metric").max_length


def metric_record(*, workflow: Workflow, points: list[dict]) -> list[MetricPoint]:
    # Metric names are agent-sent free text like any other: redacted before they are stored.
    redactor = redactor_for(workflow)
    return MetricPoint.objects.bulk_create(
        [
            MetricPoint(
                workflow=workflow,
                metric=fit(redactor.redact_text(p["metric"]), _METRIC_MAX),
                value=p["value"],
                at=p["at"],
            )
            for p in points
        ]
    )
