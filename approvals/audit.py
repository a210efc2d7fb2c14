"""Audit samples: a reviewer marks an action the policy allowed, and that was carried out,
as correct or wrong (docs/policy.md, "Audit samples").

The gateway marks a share of the runs a policy allows `audit = "due"` (the policy's
audit_sample_rate, deterministic from the run id). Once their execution is over they
wait here for a reviewer of their workflow. A mark is an outcome label through the same
path as every other (traces.services.agent.run_record_outcome, source "audit"), so a
"wrong" makes the run `wrong`: a silent failure for the gates.
"""

import uuid
from dataclasses import dataclass

from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import QuerySet

from approvals.roles import access_for
from ladder.errors import Conflict, Forbidden, NotFound, Unprocessable
from ladder.models import PolicyVersion
from ladder.policies import policy_out
from ladder.rungs import AuditState
from traces.models import Run
from traces.services.agent import run_record_outcome
from traces.status import FINISHED_STATUSES

AUDIT_SOURCE = "audit"
MARKS = (AuditState.CORRECT, AuditState.WRONG)


def audits_due(*, workflow_ids) -> QuerySet[Run]:
    """Sampled runs whose execution is over (executed, failed or rolled back) and that
    nobody audited yet, oldest first, from the partial index run_audit_due_idx."""
    return (
        Run.objects.filter(
            audit=AuditState.DUE,
            workflow_id__in=list(workflow_ids),
            status__in=sorted(FINISHED_STATUSES),
        )
        .select_related("workflow", "action_type")
        .order_by("created_at", "id")
    )


def audits_due_count(*, workflow_ids, cap: int = 1000) -> tuple[int, bool]:
    """How many audits wait, counted up to `cap` (for the menu on every page)."""
    if not workflow_ids:
        return 0, False
    n = audits_due(workflow_ids=workflow_ids).order_by()[:cap].count()
    return n, n >= cap


def audit_run_for(*, user: User, run_id) -> Run:
    """A sampled run of a workflow the person reviews; anything else is not found, so a
    guessed address says nothing about other workflows or unsampled runs."""
    try:
        run_uuid = uuid.UUID(str(run_id))
    except ValueError:
        raise NotFound("no such audit") from None
    run = (
        Run.objects.select_related("workflow", "action_type")
        .exclude(audit=AuditState.NONE)
        .filter(pk=run_uuid, workflow_id__in=access_for(user).review)
        .first()
    )
    if run is None:
        raise NotFound("no such audit")
    return run


@dataclass(frozen=True)
class AuditView:
    """What the auditor is shown: the action as executed, the policy that allowed it."""

    run: Run
    action: str
    params: dict
    policy: dict | None  # policy_out of the version that decided, with its sentences
    rules_fired: list


def audit_view(run: Run) -> AuditView:
    decision = run.decision or {}
    decided_by = run.policy or {}
    version = None
    if decided_by.get("version") is not None:
        version = PolicyVersion.objects.filter(
            workflow_id=run.workflow_id, number=decided_by["version"]
        ).first()
    return AuditView(
        run=run,
        action=decision.get("action") or run.action,
        params=decision.get("params") or (run.proposal or {}).get("params") or {},
        policy=policy_out(version),
        rules_fired=list(decided_by.get("rules_fired") or []),
    )


@transaction.atomic
def audit_mark(*, run: Run, auditor: User, label: str, note: str = "") -> Run:
    """Mark a sampled, finished run correct or wrong, once.

    Under the run's row lock: of two auditors marking at once exactly one mark counts;
    the other gets 409 naming the mark that stands. The mark goes into the trace as an
    outcome label `{label, source: "audit", note, by: <user id>}` (the agent's replay
    shows "reviewer"), and "wrong" makes the run's outcome wrong: a silent failure.
    """
    if run.workflow_id not in access_for(auditor).review:
        raise Forbidden("you do not review this workflow")
    if label not in MARKS:
        raise Unprocessable("mark the action correct or wrong", code="invalid_mark")
    note = note.strip()
    if label == AuditState.WRONG and not note:
        raise Unprocessable("say what was wrong", code="note_required")
    locked = Run.objects.select_for_update(of=("self",)).select_related("workflow").get(pk=run.pk)
    if locked.audit in MARKS:
        raise Conflict(
            f"this run was already audited: marked {locked.audit}", code="already_audited"
        )
    if locked.audit != AuditState.DUE:
        raise Conflict("this run was not sampled for audit", code="not_sampled")
    if locked.status not in FINISHED_STATUSES:
        raise Conflict(
            f"run is {locked.status}: it can be audited once its execution is over",
            code="not_executed",
        )
    marked = run_record_outcome(
        actor=f"user:{auditor.pk}",
        run=locked,
        label=label,
        source=AUDIT_SOURCE,
        note=note,
        by_agent=False,
        by=auditor.pk,
    )
    marked.audit = label
    marked.save(update_fields=["audit", "updated_at"])
    return marked
