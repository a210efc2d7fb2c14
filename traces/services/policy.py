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
from django.db.models import Count, Q, Sum

from ladder.decide import Decision, WorkflowRules
from ladder.models import Workflow
from ladder.policies import policy_save
from ladder.policy import (
    CompiledPolicy,
    Counters,
    audit_sampled,
    rate_keys,
    seen_keys,
    subject_key,
)
from ladder.rungs import PolicyOutcome, Rung
from traces import fastpath
from traces.models import PolicyAllowance, Run, SubjectSeen, TraceEvent


def subject_digest(scope: str, subject: str) -> str:
    """The stored key of a counted subject: sha256 of "<scope>|<subject>" (scope is the
    action for rate limits, "seen" for first-seen), so a subject value of any length
    fits and no pseudonym is stored twice."""
    return hashlib.sha256(f"{scope}|{subject}".encode()).hexdigest()


def _lock_id(workflow_id: int, digest: str) -> int:
    # A signed 64-bit advisory lock key from the workflow and the subject.
    raw = hashlib.sha256(f"{workflow_id}|{digest}".encode()).digest()[:8]
    return int.from_bytes(raw, "big", signed=True)


class Rate(NamedTuple):
    """One rate limit that applies to a proposal, with the key its counter lives under."""

    rule_id: str
    action: str
    subject: str  # subject_digest(action, "workflow" | "<param>=<value>")
    window_seconds: int
    currency: str
    max_count: int | None
    max_value: Decimal | None


class Counting(NamedTuple):
    """The counters one proposal needs: its rate limits, its first-seen rules (rule id,
    subject digest), and the subjects this run marks as seen (every first-seen `per` of
    the policy that its params name)."""

    rates: list[Rate]
    seen: list[tuple[str, str]]
    marks: list[str]

    def __bool__(self) -> bool:
        return bool(self.rates or self.seen or self.marks)


def counting_for(rules: WorkflowRules, proposal: dict | None) -> Counting | None:
    """What the workflow's policy will ask about this proposal, or None (nothing)."""
    compiled = rules.policy
    if compiled is None or proposal is None or rules.rung < Rung.L2:
        return None
    if rules.stopped and rules.policy_decides:
        # Held by the stop button: the policy is not asked now, so nothing is counted
        # or marked seen; it decides (and counts) on resume (traces.services.stop).
        return None
    action = proposal.get("action")
    if not isinstance(action, str):
        return None
    limits = {r.id: r for r in _rate_rules(compiled, action)}
    rates = []
    for rule_id, subject, window in rate_keys(compiled, proposal):
        rule = limits[rule_id]
        digest = subject_digest(action, subject)
        rates.append(
            Rate(rule_id, action, digest, window, rule.currency, rule.max_count, rule.max_value)
        )
    seen = [
        (rule_id, subject_digest("seen", subject))
        for rule_id, subject in seen_keys(compiled, proposal)
    ]
    marks = []
    params = proposal.get("params") or {}
    for per in compiled.seen_pers:
        subject = subject_key(per, params)
        if subject is not None:
            marks.append(subject_digest("seen", subject))
    counting = Counting(rates, seen, marks)
    return counting or None


def _rate_rules(compiled: CompiledPolicy, action: str):
    plan = compiled.plans.get(action)
    return plan.rates if plan is not None else ()


def _locks(workflow_id: int, rates: list[Rate]) -> list[int]:
    return sorted({_lock_id(workflow_id, r.subject) for r in rates})


def lock_counters(workflow_id: int, counting: Counting) -> None:
    """Take the advisory locks of these counters until the transaction ends (PostgreSQL;
    SQLite, the single-process `make run` default, serialises its writes itself). The
    gateway's slow path, after its lock-free attempts found no room twice."""
    if connection.vendor != "postgresql":
        return
    with fastpath.prepared_cursor() as cur:
        cur.execute(_LOCK_SQL, [_locks(workflow_id, counting.rates)], prepare=True)


_LOCK_SQL = "SELECT count(pg_advisory_xact_lock(k)) FROM unnest(%s::bigint[]) AS k"

# Every counter of one proposal in one statement: a row per rate limit (its position,
# the count and total allowed for its subject in its window) and a row per first-seen
# subject already seen. Written as per-key lookups (LATERAL; LIMIT 1 keeps the planner
# from flattening the second into a hash join over the workflow's subjects) so
# that even the generic plan of this prepared statement reads allowance_window_idx and
# subject_seen_unique by every column: its cost stays the few rows of one window, never
# the whole workflow's history.
_READ_SQL = (
    "SELECT r.i, c.n, c.total, NULL "
    "FROM unnest(%s::text[], %s::text[], %s::timestamptz[], %s::text[]) "
    "WITH ORDINALITY AS r(action, subject, since, cur, i) "
    "CROSS JOIN LATERAL (SELECT count(*) AS n, coalesce(sum(a.value) FILTER "
    "(WHERE r.cur = '' OR a.currency = r.cur), 0) AS total "
    "FROM traces_policyallowance a WHERE a.workflow_id = %s AND a.shadow = %s "
    "AND a.action = r.action AND a.subject = r.subject AND a.at > r.since) AS c "
    "UNION ALL SELECT 0, 0, 0, s.subject FROM unnest(%s::text[]) AS m(subject) "
    "CROSS JOIN LATERAL (SELECT ss.subject FROM traces_subjectseen ss "
    "WHERE ss.workflow_id = %s AND ss.subject = m.subject LIMIT 1) AS s"
)


def _since(at: datetime, rate: Rate) -> datetime:
    return at - timedelta(seconds=rate.window_seconds)


def read_counters(workflow_id: int, counting: Counting, *, at: datetime, shadow: bool) -> Counters:
    """The counters as of now: for each rate limit, (count, total value) of what the
    policy allowed for its subject in (at - window, at]; for each first-seen rule,
    whether an earlier run of the workflow named the subject."""
    if connection.vendor != "postgresql":
        return _read_counters_orm(workflow_id, counting, at=at, shadow=shadow)
    rates = counting.rates
    params = [
        [r.action for r in rates],
        [r.subject for r in rates],
        [_since(at, r) for r in rates],
        [r.currency for r in rates],
        workflow_id,
        shadow,
        [digest for _, digest in counting.seen],
        workflow_id,
    ]
    with fastpath.prepared_cursor() as cur:
        cur.execute(_READ_SQL, params, prepare=True)
        rows = cur.fetchall()
    counted = {i: (n, total) for i, n, total, subject in rows if subject is None}
    known = {subject for _, _, _, subject in rows if subject is not None}
    return Counters(
        rates={rate.rule_id: counted[i] for i, rate in enumerate(rates, start=1)},
        seen={rule_id: digest in known for rule_id, digest in counting.seen},
    )


def _read_counters_orm(workflow_id: int, counting: Counting, *, at: datetime, shadow: bool):
    rates: dict[str, tuple[int, Decimal]] = {}
    for rate in counting.rates:
        in_window = PolicyAllowance.objects.filter(
            workflow_id=workflow_id,
            shadow=shadow,
            action=rate.action,
            subject=rate.subject,
            at__gt=_since(at, rate),
        )
        values = Q(value__isnull=False)
        if rate.currency:
            values &= Q(currency=rate.currency)
        got = in_window.aggregate(n=Count("pk"), total=Sum("value", filter=values))
        rates[rate.rule_id] = (got["n"], got["total"] or Decimal(0))
    known = set(
        SubjectSeen.objects.filter(
            workflow_id=workflow_id, subject__in=[d for _, d in counting.seen]
        ).values_list("subject", flat=True)
    )
    return Counters(
        rates=rates, seen={rule_id: digest in known for rule_id, digest in counting.seen}
    )


def policy_write(
    *, workflow_id: int, counting: Counting, decision: Decision, at: datetime
) -> fastpath.PolicyWrite:
    """What storing this run adds to the counters: an allowed action is counted under
    each subject of its rate limits (at L4/L5 after re-checking, under the counters'
    locks, that every limit still has room); its first-seen subjects are marked."""
    shadow = decision.shadow is not None
    verdict = decision.shadow if shadow else decision.policy
    allowed = verdict is not None and verdict.outcome == PolicyOutcome.ALLOW
    rates = counting.rates if allowed else []
    checked = rates if not shadow else []  # a shadow decision re-checks nothing
    return fastpath.PolicyWrite(
        locks=_locks(workflow_id, checked),
        room_actions=[r.action for r in checked],
        room_subjects=[r.subject for r in checked],
        room_since=[_since(at, r) for r in checked],
        room_currencies=[r.currency for r in checked],
        room_max_counts=[r.max_count for r in checked],
        room_max_values=[r.max_value for r in checked],
        value=decision.value,
        currency=(decision.currency or "").strip().upper()[:8],
        shadow=shadow,
        counted=sorted({(r.action, r.subject) for r in rates}),
        marks=sorted(set(counting.marks)),
    )


def record_effects_orm(*, run_id, workflow_id: int, write: fastpath.PolicyWrite, at) -> None:
    """Where the gateway's INSERT cannot carry them (SQLite): the same rows, in the
    caller's transaction."""
    PolicyAllowance.objects.bulk_create(
        PolicyAllowance(
            run_id=run_id,
            workflow_id=workflow_id,
            shadow=write.shadow,
            action=action,
            subject=digest,
            at=at,
            value=write.value,
            currency=write.currency,
        )
        for action, digest in write.counted
    )
    SubjectSeen.objects.bulk_create(
        [SubjectSeen(workflow_id=workflow_id, subject=d, first_run=run_id) for d in write.marks],
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


def verdict_event(
    decision: Decision, *, counters: Counters | None, audit: bool
) -> tuple[str, dict] | None:
    """(event type, payload) of what the policy said, or None when it was not asked:
    `policy_decision` at L4/L5, `policy_shadow` for a draft at L2/L3. With the
    version's document and these counters, an examiner re-evaluates it exactly."""
    verdict = decision.policy or decision.shadow
    if verdict is None:
        return None
    payload = {
        "decision": verdict.outcome,
        "policy_version": decision.policy_version,
        "rules_fired": list(verdict.rules_fired),
        "reasons": list(verdict.reasons),
        "counters": counters_json(counters),
    }
    if decision.policy is None:
        return TraceEvent.Type.POLICY_SHADOW, payload
    payload["reason"] = decision.reason
    payload["audit_sampled"] = audit
    return TraceEvent.Type.POLICY_DECISION, payload


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
