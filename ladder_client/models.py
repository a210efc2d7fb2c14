"""Plain dataclasses for what the gateway answers about a run."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# Run statuses (the lifecycle in DESIGN.md).
RECEIVED = "received"
RECORDED = "recorded"
PENDING_REVIEW = "pending_review"
APPROVED = "approved"
REJECTED = "rejected"
EXECUTING = "executing"
EXECUTED = "executed"
FAILED = "failed"
DENIED = "denied"
ROLLED_BACK = "rolled_back"

#: Statuses in which a decision is still to come.
WAITING_STATUSES = frozenset({RECEIVED, PENDING_REVIEW})
#: Statuses reached only through an approved (or policy-allowed) action.
APPROVED_STATUSES = frozenset({APPROVED, EXECUTING, EXECUTED, FAILED, ROLLED_BACK})
#: Statuses in which the action's execution is over, one way or the other.
FINISHED_STATUSES = frozenset({EXECUTED, FAILED, ROLLED_BACK})


@dataclass(frozen=True)
class Decision:
    """What was decided about a run's proposal.

    `params` are the *final* params: after a reviewer's edits (L1), pick (L2) or as
    approved (L3/L4). `approved` is True when the action may be (or was) carried out.
    """

    run_id: str
    status: str
    approved: bool
    verdict: str | None
    action: str | None
    params: dict[str, Any]
    reason: str = ""
    at: str | None = None

    @classmethod
    def from_payload(
        cls, payload: dict | None, *, run_id: str, status: str, proposal: dict | None = None
    ) -> Decision:
        """Build from the gateway's `decision` object; with none (policy allow/deny), fall
        back to the status and the agent's own proposal."""
        payload = payload or {}
        proposal = proposal or {}
        verdict = payload.get("verdict")
        # No verdict: the policy decided (allow or deny); the status says which.
        approved = verdict == "approved" if verdict is not None else status in APPROVED_STATUSES
        action = payload.get("action") or proposal.get("action")
        params = payload.get("params")
        if params is None:
            params = dict(proposal.get("params") or {})
        return cls(
            run_id=run_id,
            status=status,
            approved=approved,
            verdict=verdict,
            action=action,
            params=params,
            reason=payload.get("reason") or "",
            at=payload.get("at"),
        )


@dataclass(frozen=True)
class RunInfo:
    """One run as the gateway reports it (`POST /runs`, `GET /runs/{id}`, result, outcome).

    `created` is only set by `submit_run`: True when that response stored the run (201),
    False when the idempotency key had been seen (200; e.g. after a retried attempt).
    """

    id: str
    workflow: str
    rung: int
    status: str
    queue: str | None = None
    decision: Decision | None = None
    result: dict[str, Any] | None = None
    outcome: str | None = None
    #: L4/L5: ``{"version", "outcome", "rules_fired"}`` of the policy that decided.
    policy: dict[str, Any] | None = None
    #: Why a person is asked (policy escalation, missed deadline), if one is.
    escalation_reason: str | None = None
    #: While waiting for a person: when the workflow's deadline decides instead.
    deadline_at: str | None = None
    #: The workflow is stopped (``{"at", "reason"}``): nothing of it executes until it
    #: is resumed, so an approved run waits too (`waiting`).
    workflow_stopped: dict[str, Any] | None = None
    created_at: str | None = None
    trace_events: int = 0
    trace_head: str = ""
    created: bool | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: dict[str, Any], *, created: bool | None = None) -> RunInfo:
        run_id = str(data["id"])
        status = data["status"]
        trace = data.get("trace") or {}
        decision = None
        if data.get("decision"):
            decision = Decision.from_payload(data["decision"], run_id=run_id, status=status)
        return cls(
            id=run_id,
            workflow=data["workflow"],
            rung=int(data["rung"]),
            status=status,
            queue=data.get("queue"),
            decision=decision,
            result=data.get("result"),
            outcome=data.get("outcome"),
            policy=data.get("policy"),
            escalation_reason=data.get("escalation_reason"),
            deadline_at=data.get("deadline_at"),
            workflow_stopped=data.get("workflow_stopped"),
            created_at=data.get("created_at"),
            trace_events=int(trace.get("events", 0)),
            trace_head=trace.get("head", ""),
            created=created,
            raw=data,
        )

    @property
    def waiting(self) -> bool:
        """True while a decision is still to come, or while an approved action may not
        be carried out yet because its workflow is stopped (`stopped`)."""
        return self.status in WAITING_STATUSES or self.stopped

    @property
    def stopped(self) -> bool:
        """Approved, but its workflow is stopped: the action waits for the resume."""
        return self.status == APPROVED and self.workflow_stopped is not None

    @property
    def finished(self) -> bool:
        """True once the action's execution is over (executed, failed or rolled back)."""
        return self.status in FINISHED_STATUSES


@dataclass(frozen=True)
class EvalScore:
    """How one eval submission was scored (`POST /runs` with `eval_case`).

    `matched`: the proposal's action and params equal the case's expected ones exactly.
    `created` is False when this case already had this very answer in this pass."""

    case: int
    eval_pass: str
    matched: bool
    submitted_at: str | None = None
    created: bool = True

    @classmethod
    def from_json(cls, data: dict, *, created: bool = True) -> EvalScore:
        item = data.get("eval") or {}
        return cls(
            case=int(item["case"]),
            eval_pass=str(item["pass"]),
            matched=bool(item["matched"]),
            submitted_at=item.get("submitted_at"),
            created=created,
        )


@dataclass(frozen=True)
class EvalCase:
    """One case of a workflow's eval set, as agents get it: its input and the action
    types to choose from; never the expected answer (docs/evals.md)."""

    id: int
    workflow: str
    input: Any
    action_types: tuple[str, ...] = ()

    @classmethod
    def from_json(cls, data: dict, *, workflow: str) -> EvalCase:
        return cls(
            id=int(data["id"]),
            workflow=workflow,
            input=data.get("input"),
            action_types=tuple(data.get("action_types") or ()),
        )

    def submit(
        self,
        client: Any,
        action: str,
        params: dict[str, Any] | None = None,
        *,
        eval_pass: str | None = None,
    ) -> EvalScore:
        """Submit the agent's proposal for this case (`client.submit_eval`)."""
        return client.submit_eval(
            self.workflow, self.id, action=action, params=params, eval_pass=eval_pass
        )
