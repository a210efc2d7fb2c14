"""The stop button's effect on runs (docs/stop.md). Stopping is a ladder write
(ladder.services.workflow_stop); while a workflow is stopped the gateway holds its L4/L5
proposals, and neither the server's worker nor an agent can claim an approved run.
Resuming releases what waited, in the same transaction as the resume itself:

- approved server-executor runs are dispatched after commit (the sweep is the backstop);
- approved agent-executor runs become claimable, and long polls parked on them wake;
- held L4/L5 runs that nobody decided meanwhile are handled as if they had just arrived
  at the workflow's current rung: the policy decides them now (its counters locked,
  read and written as the gateway does), or, below L4, they stay in the escalated queue
  for a person.
"""

import logging
import uuid
from datetime import datetime, timedelta
from typing import NamedTuple

from django.db import connection, transaction
from django.utils import timezone

from ladder import services as ladder_services
from ladder.decide import Route, decide, rules_at
from ladder.errors import LadderError
from ladder.models import RungChange, Workflow
from ladder.rungs import AuditState, Executor, Queue
from traces import fastpath
from traces.models import Decider, Run, RunStatus, TraceEvent
from traces.services import policy
from traces.services.execution import execution_enqueue
from traces.services.gateway import decision_by_policy, run_placement
from traces.services.trace import EventSpec, trace_append

log = logging.getLogger(__name__)


class Released(NamedTuple):
    """What a resume released: approved runs sent to execution (server executors) or
    made claimable (agents), and the held runs by what became of them."""

    dispatched: int
    claimable: int
    allowed: int
    denied: int
    escalated: int
    to_person: int
    left: int  # decided by a person or the deadline meanwhile: left as they were


@transaction.atomic
def workflow_resume_release(*, workflow: Workflow, actor, reason: str) -> RungChange:
    """Resume the workflow (ladder.services.workflow_resume: guarded, recorded, mailed)
    and release what waited for it, in one transaction."""
    change = ladder_services.workflow_resume(workflow=workflow, actor=actor, reason=reason)
    runs_release(workflow=workflow)
    return change


def runs_release(*, workflow: Workflow, now: datetime | None = None) -> Released:
    """Release the runs of a workflow that is running again; safe to call twice (the
    second finds nothing held, and a second dispatch of a run is harmless)."""
    now = now or timezone.now()
    approved = list(
        Run.objects.filter(workflow=workflow, status=RunStatus.APPROVED, probe=False).values_list(
            "id", "action_type__executor"
        )
    )
    server = [run_id for run_id, executor in approved if executor == Executor.SERVER]
    for run_id in server:
        execution_enqueue(run_id=run_id)
    _wake(workflow_id=workflow.pk)
    row = fastpath.workflow_row(workflow.slug, memo=False)
    outcomes = {"allowed": 0, "denied": 0, "escalated": 0, "to_person": 0, "left": 0}
    held = Run.objects.filter(workflow=workflow, held=True).order_by("created_at", "id")
    for run_id in held.values_list("id", flat=True):
        outcomes[_release_one(run_id=run_id, row=row, now=now)] += 1
    released = Released(len(server), len(approved) - len(server), **outcomes)
    log.info("workflow %s resumed: %s", workflow.slug, released)
    return released


def _wake(*, workflow_id: int) -> None:
    # Agents long-polling an approved run of a stopped workflow are parked on its id
    # (traces/longpoll.py); its status does not change on resume, so no trigger tells
    # them. NOTIFY is sent at commit, like the trigger's.
    if connection.vendor != "postgresql":
        return
    with connection.cursor() as cur:
        cur.execute(
            "SELECT count(pg_notify('ladder_run_status', id::text)) FROM traces_run "
            "WHERE workflow_id = %s AND status = 'approved'",
            [workflow_id],
        )


def _release_one(*, run_id: uuid.UUID, row: fastpath.WorkflowRow, now: datetime) -> str:
    run = Run.objects.select_for_update(of=("self",)).get(pk=run_id)
    if not run.held:
        return "left"
    if run.status != RunStatus.PENDING_REVIEW:
        # A person (or the deadline) decided it while the workflow was stopped: that
        # decision stands; only the mark goes.
        Run.objects.filter(pk=run.pk).update(held=False)
        return "left"
    rules = rules_at(row.rules, now)
    if rules.stopped:  # stopped again before this transaction: it keeps waiting
        return "left"
    if not rules.policy_decides:
        why = rules.capped or f"the workflow resumed at L{rules.rung}"
        return _to_person(run=run, reason=f"{why}: a person decides", now=now, row=row)
    counting = policy.counting_for(rules, run.proposal)
    counters = None
    if counting is not None:
        # As the gateway's locked path: lock, read, decide and write in one transaction.
        policy.lock_counters(row.id, counting)
        counters = policy.read_counters(row.id, counting, at=now, shadow=False)
    try:
        decision = decide(rules, run.proposal, counters)
    except LadderError as exc:
        # The action no longer fits the workflow (its type or schema changed while it
        # was stopped): the policy cannot judge it, a person can.
        return _to_person(run=run, reason=f"{exc.message}: a person decides", now=now, row=row)
    place = run_placement(decision)
    audit = policy.audit_due(decision, rules, run.id)
    decided = decision_by_policy(place=place, decision=decision, proposal=run.proposal, at=now)
    run.held = False
    run.status = place.status
    run.queue = place.queue
    run.escalation_reason = place.escalation_reason
    run.policy = policy.policy_verdict(decision)
    run.audit = AuditState.DUE if audit else AuditState.NONE
    if decided is not None:
        run.decision = decided
        run.decided_at = now
        run.decider = Decider.POLICY
        run.deadline_at = None
    else:  # escalated: it waits for a person from now, with a deadline from now
        run.deadline_at = now + timedelta(seconds=row.review_deadline_seconds)
    run.save(
        update_fields=[
            "held",
            "status",
            "queue",
            "escalation_reason",
            "policy",
            "audit",
            "decision",
            "decided_at",
            "decider",
            "deadline_at",
            "updated_at",
        ]
    )
    if counting is not None:
        write = policy.policy_write(
            workflow_id=row.id, counting=counting, decision=decision, at=now
        )
        policy.record_effects_orm(run_id=run.id, workflow_id=row.id, write=write, at=now)
    kind, payload = policy.verdict_event(decision, counters=counters, audit=audit)
    # A reviewer's screen opened on the held run is stale now (bump_version).
    trace_append(run=run, specs=[EventSpec(kind, payload, "system")], bump_version=True)
    if decision.route == Route.EXECUTE:
        if run.action in row.server_actions:
            execution_enqueue(run_id=run.id)
        return "allowed"
    return "denied" if decision.route == Route.DENY else "escalated"


def _to_person(*, run: Run, reason: str, now: datetime, row: fastpath.WorkflowRow) -> str:
    run.held = False
    run.queue = Queue.ESCALATED
    run.escalation_reason = reason[:300]
    run.deadline_at = now + timedelta(seconds=row.review_deadline_seconds)
    run.save(update_fields=["held", "queue", "escalation_reason", "deadline_at", "updated_at"])
    trace_append(
        run=run,
        specs=[EventSpec(TraceEvent.Type.HOLD, {"released": True, "reason": reason}, "system")],
        bump_version=True,
    )
    return "to_person"


def held_sweep() -> int:
    """The backstop: release the runs of every workflow that holds runs but is not
    stopped (a resume made without runs_release, say by hand in the database). Returns
    how many workflows it released."""
    ids = set(
        Run.objects.filter(held=True, workflow__stopped_at__isnull=True).values_list(
            "workflow_id", flat=True
        )
    )
    for workflow in Workflow.objects.filter(pk__in=ids):
        with transaction.atomic():
            locked = Workflow.objects.select_for_update(no_key=True).get(pk=workflow.pk)
            if locked.stopped_at is None:
                runs_release(workflow=locked)
    return len(ids)
