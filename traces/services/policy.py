"""The counters a policy envelope decides by, and what a decision leaves behind.

Rate limits count what the policy ALLOWED in a window (PolicyAllowance rows) and
first-seen rules ask whether an earlier run named the same subject (SubjectSeen). Both
live in PostgreSQL beside the runs, because they must move together with them:

- At L4/L5 the gateway takes a transaction-scoped advisory lock per counter key (action
  and subject) before it reads the counters, and keeps it until the run, its events and
  its allowance rows are committed. Two submissions for the same key are therefore
  judged one after the other, each seeing the other's allowance: a limit of N lets
  exactly N through, across any number of gateway processes (tests/traces/
  test_policy_concurrency.py runs them in parallel). Locks are taken in key order, so two
  submissions can never wait on each other.
- A count in Redis would be a second system to keep consistent with the run table (an
  allowance counted for a run whose INSERT then failed, or a run stored whose count was
  lost) and, when Redis is down, the gateway would have to choose between refusing every
  run and allowing without counting. Here, when PostgreSQL is down nothing is stored at
  all, so nothing is allowed uncounted.

Shadow decisions (a draft envelope at L2/L3) read the shadow counters without locks:
they decide nothing, and are evidence only (docs/policy.md, "Shadow decisions").
"""

import hashlib
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, NamedTuple

from django.db import connection, transaction

from ladder.decide import Decision, WorkflowRules
from ladder.models import Workflow
from ladder.policies import policy_save
from ladder.policy import (
    CompiledPolicy,
    Counters,
    audit_sampled,
    rate_keys,
    seen_keys,
    seen_params,
    subject_key,
)
from ladder.rungs import PolicyOutcome, Rung
from traces.models import PolicyAllowance, Run, SubjectSeen


def subject_digest(scope: str, subject: str) -> str:
    """The stored key of a counted subject: sha256 of "<scope>|<subject>" (scope is the
    action for rate limits, "seen" for first-seen), so a subject value of any length
    fits and no pseudonym is stored twice."""
    return hashlib.sha256(f"{scope}|{subject}".encode()).hexdigest()


def _lock_id(workflow_id: int, digest: str) -> int:
    # A signed 64-bit advisory lock key from the workflow and the subject.
    raw = hashlib.sha256(f"{workflow_id}|{digest}".encode()).digest()[:8]
    return int.from_bytes(raw, "big", signed=True)


class Counting(NamedTuple):
    """The counters one proposal needs: rate limits (rule id, action, subject digest,
    window seconds, currency) and first-seen rules (rule id, subject digest); and the
    subjects this run marks as seen (every first-seen `per` of the policy it names)."""

    rates: list[tuple[str, str, str, int, str]]
    seen: list[tuple[str, str]]
    marks: list[str]

    def __bool__(self) -> bool:
        return bool(self.rates or self.seen or self.marks)


def counting_for(rules: WorkflowRules, proposal: dict | None) -> Counting | None:
    """What the workflow's policy will ask about this proposal, or None (nothing)."""
    compiled = rules.policy
    if compiled is None or proposal is None or rules.rung < Rung.L2:
        return None
    action = proposal.get("action")
    if not isinstance(action, str):
        return None
    currencies = {r.id: r.currency for r in _rate_rules(compiled, action)}
    rates = [
        (rule_id, action, subject_digest(action, subject), window, currencies.get(rule_id, ""))
        for rule_id, subject, window in rate_keys(compiled, proposal)
    ]
    seen = [
        (rule_id, subject_digest("seen", subject))
        for rule_id, subject in seen_keys(compiled, proposal)
    ]
    marks = []
    params = proposal.get("params") or {}
    for per in seen_params(compiled.policy):
        subject = subject_key(per, params)
        if subject is not None:
            marks.append(subject_digest("seen", subject))
    counting = Counting(rates, seen, marks)
    return counting or None


def _rate_rules(compiled: CompiledPolicy, action: str):
    plan = compiled.plans.get(action)
    return plan.rates if plan is not None else ()


def lock_counters(workflow_id: int, counting: Counting) -> None:
    """Take the advisory locks of these counters until the transaction ends (PostgreSQL;
    elsewhere writes are serialised by the database itself)."""
    if connection.vendor != "postgresql":
        return
    keys = sorted(
        {_lock_id(workflow_id, d) for _, _, d, _, _ in counting.rates}
        | {_lock_id(workflow_id, d) for d in counting.marks}
    )
    with connection.cursor() as cur:
        cur.execute("SELECT count(pg_advisory_xact_lock(k)) FROM unnest(%s::bigint[]) AS k", [keys])


def read_counters(workflow_id: int, counting: Counting, *, at: datetime, shadow: bool) -> Counters:
    """The counters as of now: for each rate limit, (count, total value) of what the
    policy allowed for its subject in (at - window, at]; for each first-seen rule,
    whether an earlier run of the workflow named the subject."""
    rates: dict[str, tuple[int, Decimal]] = {}
    for rule_id, action, digest, window, currency in counting.rates:
        rows = PolicyAllowance.objects.filter(
            workflow_id=workflow_id,
            shadow=shadow,
            action=action,
            subject=digest,
            at__gt=at - timedelta(seconds=window),
        ).values_list("value", "currency")
        count, total = 0, Decimal(0)
        for value, cur in rows:
            count += 1
            if value is not None and (not currency or cur.strip().upper() == currency):
                total += value
        rates[rule_id] = (count, total)
    seen: dict[str, bool] = {}
    if counting.seen:
        known = set(
            SubjectSeen.objects.filter(
                workflow_id=workflow_id, subject__in=[d for _, d in counting.seen]
            ).values_list("subject", flat=True)
        )
        seen = {rule_id: digest in known for rule_id, digest in counting.seen}
    return Counters(rates=rates, seen=seen)


def record_effects(
    *,
    run_id,
    workflow_id: int,
    counting: Counting | None,
    decision: Decision,
    value: Decimal | None,
    currency: str,
    at: datetime,
) -> None:
    """After the run is stored (same transaction): count an allowed action under each of
    its rate-limit subjects, and mark its first-seen subjects as seen."""
    if not counting:
        return
    shadow = decision.shadow is not None
    verdict = decision.shadow if shadow else decision.policy
    if verdict is not None and verdict.outcome == PolicyOutcome.ALLOW and counting.rates:
        PolicyAllowance.objects.bulk_create(
            PolicyAllowance(
                run_id=run_id,
                workflow_id=workflow_id,
                shadow=shadow,
                action=action,
                subject=digest,
                at=at,
                value=value,
                currency=(currency or "")[:8],
            )
            for action, digest in sorted({(a, d) for _, a, d, _, _ in counting.rates})
        )
    if counting.marks:
        SubjectSeen.objects.bulk_create(
            [
                SubjectSeen(workflow_id=workflow_id, subject=digest, first_run=run_id)
                for digest in sorted(set(counting.marks))
            ],
            ignore_conflicts=True,
        )


def counters_json(counters: Counters | None) -> dict[str, Any]:
    """The counters a decision was made on, for its policy_decision event: with them and
    the policy version, an examiner re-evaluates the decision exactly."""
    if counters is None:
        return {}
    out: dict[str, Any] = {}
    if counters.rates:
        out["rates"] = {
            rule_id: {"count": count, "total": str(total)}
            for rule_id, (count, total) in counters.rates.items()
        }
    if counters.seen:
        out["seen"] = dict(counters.seen)
    return out


def policy_verdict(decision: Decision) -> dict | None:
    """The run's `policy` (or `shadow`): {version, outcome, rules_fired}."""
    verdict = decision.policy or decision.shadow
    if verdict is None:
        return None
    return {
        "version": decision.policy_version,
        "outcome": verdict.outcome,
        "rules_fired": list(verdict.rules_fired),
    }


def audit_due(decision: Decision, rules: WorkflowRules, run_id) -> bool:
    """An allowed run sampled for audit at the policy's rate (ladder.policy.audit_sampled)."""
    verdict = decision.policy
    if verdict is None or verdict.outcome != PolicyOutcome.ALLOW or rules.policy is None:
        return False
    return audit_sampled(str(run_id), rules.policy.policy.audit_sample_rate)


# -- saving a version ----------------------------------------------------------------------


def policy_set(*, workflow: Workflow, document: Any, by, note: str = ""):
    """Save a new policy version (ladder.policies.policy_save) and, in the same
    transaction, fill the first-seen ledger from the workflow's history for the
    subjects its first-seen rules name, so that "never seen before" means never in any
    earlier run of the workflow, not "since this version"."""
    with transaction.atomic():
        version = policy_save(workflow=workflow, document=document, by=by, note=note)
        _backfill_seen(workflow, version.document)
    return version


def _backfill_seen(workflow: Workflow, document: dict) -> None:
    pers = sorted(
        {rule["per"] for rule in document.get("rules", []) if rule.get("kind") == "first_seen"}
    )
    if not pers:
        return
    # The same subject keys the gateway marks (ladder.policy.subject_key), from every
    # earlier run's stored (redacted) proposal, whatever its action.
    batch: dict[str, SubjectSeen] = {}
    runs = (
        Run.objects.filter(workflow=workflow, proposal__isnull=False)
        .order_by("created_at")
        .values_list("id", "proposal")
    )
    for run_id, proposal in runs.iterator(chunk_size=2000):
        params = proposal.get("params") if isinstance(proposal, dict) else None
        if not isinstance(params, dict):
            continue
        for per in pers:
            subject = subject_key(per, params)
            if subject is None:
                continue
            digest = subject_digest("seen", subject)
            if digest not in batch:
                batch[digest] = SubjectSeen(workflow=workflow, subject=digest, first_run=run_id)
        if len(batch) >= 5000:
            SubjectSeen.objects.bulk_create(batch.values(), ignore_conflicts=True)
            batch = {}
    SubjectSeen.objects.bulk_create(batch.values(), ignore_conflicts=True)
