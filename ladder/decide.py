"""The one question the gateway asks the ladder: what happens to this proposal?

Plain data in, plain data out; no database. The gateway builds `WorkflowRules` from the
workflow row, and acts on the returned `Decision`.
"""

from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal, InvalidOperation
from enum import StrEnum

from ladder.certificates import timestamp
from ladder.errors import Conflict, Unprocessable
from ladder.policy import (
    NO_COUNTERS,
    CompiledPolicy,
    Counters,
    PolicyDecision,
    evaluate,
    to_decimal,
)
from ladder.rungs import PolicyOutcome, Queue, Rung


class Route(StrEnum):
    RECORD = "record"  # L0, or no proposal: the run is only recorded
    REVIEW = "review"  # a human decides (L1 draft, L2 pick, L3 approve, escalation)
    EXECUTE = "execute"  # the policy envelope allowed it (L4/L5)
    DENY = "deny"


@dataclass(frozen=True)
class ActionRules:
    name: str
    param_schema: dict = field(default_factory=dict)
    value_param: str = ""
    currency_param: str = ""


@dataclass(frozen=True)
class WorkflowRules:
    slug: str
    rung: int
    actions: dict[str, ActionRules]
    # The workflow's newest policy version, compiled: in force at L4/L5, a draft
    # evaluated in shadow at L2/L3. None when there is none (or it no longer fits the
    # workflow's action types: `policy_problem` says why, and L4/L5 escalate).
    policy: CompiledPolicy | None = None
    policy_version: int | None = None
    policy_problem: str = ""
    # The latest expiry among the workflow's autonomy certificates for its rung or above
    # (None: it has none). L4/L5 hold only until then (`rules_at`).
    certified_until: datetime | None = None
    # Set by rules_at when an L4/L5 workflow's run is handled at L3: why, for the reviewer.
    capped: str = ""
    # The stop button (docs/stop.md): the reason the workflow was stopped, "" while it
    # runs. While stopped no proposal is routed to execution, whatever the rung.
    stopped: str = ""

    @property
    def policy_decides(self) -> bool:
        return self.rung >= Rung.L4


def rules_at(rules: WorkflowRules, at: datetime) -> WorkflowRules:
    """The rules a run at `at` is handled by: the gateway never acts above the workflow's
    valid autonomy certificate (docs/certificates.md), so an L4/L5 workflow whose
    certificate is missing or has expired has its runs handled at L3, a person approving
    each, until a promotion issues a fresh one. Expiry is a matter of time, hence `at`:
    the rules themselves are memoised across runs."""
    if rules.rung < Rung.L4:
        return rules
    until = rules.certified_until
    if until is not None and at < until:
        return rules
    why = (
        "it has no autonomy certificate"
        if until is None
        else f"its autonomy certificate expired at {timestamp(until)}"
    )
    return replace(
        rules,
        rung=Rung.L3,
        capped=f"workflow is at L{rules.rung} but {why}: handled at L3, a person approves",
    )


@dataclass(frozen=True)
class Decision:
    route: Route
    queue: Queue | None = None
    reason: str = ""
    value: Decimal | None = None
    currency: str = ""
    # What the policy said: at L4/L5 the decider (`policy`); at L2/L3 the draft's
    # would-have-done (`shadow`), which decides nothing.
    policy: PolicyDecision | None = None
    policy_version: int | None = None
    shadow: PolicyDecision | None = None
    # An L4/L5 proposal that arrived while its workflow was stopped: it waits in the
    # escalated queue, and the policy decides it when the workflow resumes (unless a
    # person decided it first). The policy was not asked, so nothing was counted.
    held: bool = False


def stopped_reason(reason: str) -> str:
    """The escalation reason of a run held by the stop button."""
    return f"workflow stopped: {reason}"


_QUEUE_BY_RUNG = {Rung.L1: Queue.L1, Rung.L2: Queue.L2, Rung.L3: Queue.L3}
_TYPES = {
    "string": (str,),
    "number": (int, float),
    "integer": (int,),
    "boolean": (bool,),
    "object": (dict,),
    "array": (list,),
}


def validate_params(schema: dict, params: dict) -> None:
    """Check params against an action's small schema: required keys and JSON types.

    Unknown keys are allowed (agents evolve); a wrong type or a missing required key is
    refused with every problem named at once.
    """
    problems = []
    for name, spec in schema.items():
        if name not in params:
            if spec.get("required", False):
                problems.append(f"'{name}' is required")
            continue
        expected = spec.get("type")
        if expected is None:
            continue
        value = params[name]
        ok = isinstance(value, _TYPES.get(expected, (object,)))
        if expected in ("number", "integer") and isinstance(value, bool):
            ok = False
        if expected == "number" and isinstance(value, str):
            # Money is often sent as a decimal string ("12.50") to keep its precision.
            ok = to_decimal(value) is not None
        if not ok:
            problems.append(f"'{name}' must be of type {expected}")
    if problems:
        raise Unprocessable("invalid params: " + "; ".join(problems), code="invalid_params")


# The run row keeps the value as numeric(18, 4) (traces.Run.value): 14 digits before the
# point, 4 after. A value it cannot hold exactly is refused here, naming the param, rather
# than failing in the database or being rounded: a cap judged on a rounded value could let
# 100.00004 pass a cap of 100.
VALUE_INTEGER_DIGITS = 14
VALUE_DECIMAL_PLACES = 4
_VALUE_LIMIT = Decimal(10) ** VALUE_INTEGER_DIGITS
_VALUE_QUANTUM = Decimal(1).scaleb(-VALUE_DECIMAL_PLACES)


def _value_problem(raw) -> tuple[Decimal | None, str]:
    """(the value, "") or (None, what is wrong with it)."""
    if isinstance(raw, bool) or not isinstance(raw, (int, float, str)):
        return None, "must be a number or a decimal string"
    try:
        value = Decimal(str(raw).strip())
    except (InvalidOperation, ValueError):  # ValueError: an int too long to print
        return None, "must be a number or a decimal string"
    if not value.is_finite():
        return None, "must be a finite number"
    # copy_abs, not abs(): it ignores the context, which overflows on "1e999999999".
    if value.copy_abs() >= _VALUE_LIMIT:
        return None, f"must be below {_VALUE_LIMIT:,} in absolute value"
    if value != value.quantize(_VALUE_QUANTUM):
        return None, f"may have at most {VALUE_DECIMAL_PLACES} decimal places"
    return value, ""


def proposal_value(rules: ActionRules, params: dict) -> tuple[Decimal | None, str]:
    """The value that matters for caps and for the reviewer (e.g. 120.00 EUR).

    A value param that is present must be a number the run row can hold exactly; anything
    else is a 422 naming it (`proposal.params.amount: ...`).
    """
    if not rules.value_param:
        return None, ""
    raw = params.get(rules.value_param)
    if raw is None:
        return None, ""
    value, problem = _value_problem(raw)
    if problem:
        field_name = f"proposal.params.{rules.value_param}"
        raise Unprocessable(
            f"{field_name}: {problem}",
            code="invalid_params",
            details={"field": field_name, "problem": problem},
        )
    currency = params.get(rules.currency_param, "") if rules.currency_param else ""
    return value, currency if isinstance(currency, str) else ""


def decide(
    workflow: WorkflowRules, proposal: dict | None, counters: Counters | None = None
) -> Decision:
    """Route one proposal by the workflow's rung, and at L4/L5 by its policy envelope.

    `counters` are what the caller read for the policy's rate limits and first-seen
    rules (ladder.policy.rate_keys / seen_keys); a counter it did not read makes its
    rule fire (fail closed).
    """
    if proposal is None:
        return Decision(route=Route.RECORD, reason="no action proposed")
    if workflow.rung == Rung.L0:
        raise Conflict(
            f"workflow '{workflow.slug}' is at L0 (assistant): actions may not be proposed",
            code="rung_forbids_action",
        )
    action = proposal["action"]
    rules = workflow.actions.get(action)
    if rules is None:
        known = ", ".join(sorted(workflow.actions)) or "none"
        raise Unprocessable(
            f"action '{action}' is not an action type of workflow '{workflow.slug}' "
            f"(known: {known})",
            code="unknown_action",
        )
    validate_params(rules.param_schema, proposal["params"])
    for alt in proposal.get("alternatives") or []:
        # An alternative of an unknown type is kept as evidence of what the agent
        # considered; it just cannot be picked (approvals checks that at pick time).
        alt_rules = workflow.actions.get(alt["action"])
        if alt_rules is not None:
            validate_params(alt_rules.param_schema, alt["params"])
    value, currency = proposal_value(rules, proposal["params"])
    if workflow.stopped and workflow.rung >= Rung.L4:
        # Art. 14(4)(e) EU AI Act: a stopped workflow executes nothing. Below L4 a person
        # decides anyway (and execution waits for the resume); here nobody is asked the
        # policy's question until the workflow resumes.
        return Decision(
            route=Route.REVIEW,
            queue=Queue.ESCALATED,
            reason=stopped_reason(workflow.stopped),
            value=value,
            currency=currency,
            held=True,
        )
    compiled = workflow.policy if workflow.rung >= Rung.L2 else None
    verdict = evaluate(compiled, proposal, counters or NO_COUNTERS) if compiled else None
    queue = _QUEUE_BY_RUNG.get(Rung(workflow.rung))
    if queue is not None:
        return Decision(
            route=Route.REVIEW,
            queue=queue,
            reason=workflow.capped,
            value=value,
            currency=currency,
            shadow=verdict,
            policy_version=workflow.policy_version if verdict else None,
        )
    if verdict is None:
        why = workflow.policy_problem or "no policy envelope is in force"
        return Decision(
            route=Route.REVIEW,
            queue=Queue.ESCALATED,
            reason=f"{why}: every action goes to a person",
            value=value,
            currency=currency,
            policy=PolicyDecision(PolicyOutcome.ESCALATE),
        )
    common = {
        "value": value,
        "currency": currency,
        "policy": verdict,
        "policy_version": workflow.policy_version,
    }
    if verdict.outcome == PolicyOutcome.ALLOW:
        return Decision(route=Route.EXECUTE, **common)
    reason = "; ".join(verdict.reasons)
    if verdict.outcome == PolicyOutcome.DENY:
        return Decision(route=Route.DENY, reason=reason, **common)
    return Decision(route=Route.REVIEW, queue=Queue.ESCALATED, reason=reason, **common)
