"""Reads over runs and traces."""

import json
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal

from django.db import connection
from django.db.models import BooleanField, Count, ExpressionWrapper, Q, Sum
from django.db.models.fields.json import KT

from ladder.models import DriftCheck, GateSnapshot, Workflow
from traces.chain import ChainProblem, verify_chain
from traces.models import Run, TraceEvent
from traces.replay import (
    CONTEXT_TYPES,
    FREEZING_TYPES,
    context_of,
    decision_context_events,
    replay,
)
from traces.status import APPROVED_STATUSES, FINISHED_STATUSES, RunStatus

_EVENT_FIELDS = ("run_id", "seq", "type", "actor", "at", "document", "prev_hash", "hash")


def _event_dicts(run_id) -> list[dict]:
    rows = TraceEvent.objects.filter(run_id=run_id).order_by("seq").values(*_EVENT_FIELDS)
    events = []
    for row in rows:
        try:
            row["payload"] = json.loads(row["document"]).get("payload")
        except ValueError:
            row["payload"] = None
        events.append(row)
    return events


@dataclass(frozen=True)
class DecisionContext:
    """The agent's context a decision is made on, and the chain events it comes from."""

    context: dict
    refs: list[dict]  # {"seq", "hash"} of the context events and the proposal, in order
    frozen: bool  # a reviewer was shown it, or someone (a person, the policy) decided on it


def decision_context(*, run_id) -> DecisionContext:
    rows = (
        TraceEvent.objects.filter(
            run_id=run_id, type__in=[*CONTEXT_TYPES, "proposal", *FREEZING_TYPES]
        )
        .order_by("seq")
        .values_list("seq", "type", "hash", "document")
    )
    events = []
    for seq, kind, digest, document in rows:
        payload = None
        if kind in CONTEXT_TYPES or kind == "proposal":
            payload = json.loads(document).get("payload")
        events.append({"seq": seq, "type": kind, "hash": digest, "payload": payload})
    used = decision_context_events(events)
    proposal = [ev for ev in events if ev["type"] == "proposal"][:1]
    refs = sorted(used + proposal, key=lambda ev: ev["seq"])
    return DecisionContext(
        context=context_of(used),
        refs=[{"seq": ev["seq"], "hash": ev["hash"]} for ev in refs],
        frozen=any(ev["type"] in FREEZING_TYPES for ev in events),
    )


def run_replay(*, run: Run) -> dict:
    return replay(
        str(run.id),
        _event_dicts(run.id),
        status=run.status,
        has_proposal=run.proposal is not None,
        head=run.trace_head,
        length=run.trace_length,
    )


def run_trace_export(*, run: Run) -> dict:
    """The replay with each step as stored: besides what the replay shows, its
    `prev_hash` and `document` (the canonical JSON it was hashed over), and the run's
    recorded head and length, so that `traces.chain.verify_chain(id, steps, head=…,
    length=…)` re-checks the chain from the file alone."""
    events = _event_dicts(run.id)
    result = replay(
        str(run.id),
        events,
        status=run.status,
        has_proposal=run.proposal is not None,
        head=run.trace_head,
        length=run.trace_length,
    )
    steps = [
        {**step, "prev_hash": ev["prev_hash"], "document": ev["document"]}
        for step, ev in zip(result["steps"], events, strict=True)
    ]
    return {**result, "head": run.trace_head, "length": run.trace_length, "steps": steps}


# -- the agent's view of a replay ---------------------------------------------------------
# Agents need what was decided, not who decided it (privacy: "trace agents deeply, humans
# carefully"). The stored trace keeps the reviewer (accountability; the people's replay
# page shows it); the API's replay names a person only as "reviewer". `verified` and
# `complete` are computed on the full stored trace before anything is masked.

REVIEWER = "reviewer"
# Keys that name a person in what people's steps write and in what replay rebuilds.
PEOPLE_KEYS = frozenset({"by", "approver", "decided_by", "reviewer", "held_by"})
# The rebuilt run's parts that are the agent's own submission, left exactly as sent.
_AGENT_PARTS = frozenset({"input", "tool_calls", "output", "proposal", "after_decision"})


def _is_person(actor) -> bool:
    return isinstance(actor, str) and actor.startswith("user:")


def _mask_people(value):
    """A copy of `value` with every person-naming key (at its top level, or in a list's
    dicts) replaced by "reviewer"."""
    if isinstance(value, list):
        return [_mask_people(item) for item in value]
    if not isinstance(value, dict):
        return value
    return {
        k: (REVIEWER if v is not None else None) if k in PEOPLE_KEYS else v
        for k, v in value.items()
    }


def replay_for_agent(replay: dict) -> dict:
    """The replay an agent may see: the same steps and verdicts, with people unnamed.

    Steps written by a person (actor "user:N") carry the actor "reviewer" and payloads
    without names; the rebuilt run's decision, approver and review views likewise. Their
    `hash` stays the stored one, so those steps cannot be re-hashed by the agent:
    `verified` is the server's check of the full trace.
    """
    steps = []
    for step in replay.get("steps", []):
        if _is_person(step.get("actor")):
            step = {**step, "actor": REVIEWER, "payload": _mask_people(step.get("payload"))}
        steps.append(step)
    rebuilt = {
        key: value if key in _AGENT_PARTS else _mask_people(value)
        for key, value in (replay.get("run") or {}).items()
    }
    for key in PEOPLE_KEYS & rebuilt.keys():
        if rebuilt[key] is not None:
            rebuilt[key] = REVIEWER
    return {**replay, "run": rebuilt, "steps": steps}


def run_replay_for_agent(*, run: Run) -> dict:
    return replay_for_agent(run_replay(run=run))


@dataclass(frozen=True)
class Coverage:
    covered: int
    executed: int

    @property
    def ratio(self) -> float | None:
        return None if self.executed == 0 else self.covered / self.executed


def replay_coverage(*, workflow: Workflow, since=None) -> Coverage:
    """Complete-and-verified executed runs / executed runs (the gate's replay coverage)."""
    runs = Run.objects.filter(workflow=workflow, status__in=sorted(FINISHED_STATUSES))
    if since is not None:
        runs = runs.filter(created_at__gte=since)
    covered = executed = 0
    for run in runs.only("id", "status", "proposal", "trace_head", "trace_length").iterator():
        executed += 1
        result = run_replay(run=run)
        covered += result["complete"] and result["verified"]
    return Coverage(covered=covered, executed=executed)


def chain_problems(*, batch: int = 500) -> Iterator[tuple[str, ChainProblem]]:
    """Walk every run's chain, in batches, yielding (run id, problem)."""
    runs = Run.objects.order_by("created_at", "id").values_list("id", "trace_head", "trace_length")
    for run_id, head, length in runs.iterator(chunk_size=batch):
        for problem in verify_chain(str(run_id), _event_dicts(run_id), head=head, length=length):
            yield str(run_id), problem
    # Events whose run row is gone cannot be reached from a run: look for them too.
    # No ordering: the model's default ("run", "seq") would INNER JOIN the missing runs
    # and hide exactly the events looked for.
    orphans = (
        TraceEvent.objects.exclude(run_id__in=Run.objects.values("id"))
        .order_by()
        .values_list("run_id", flat=True)
        .distinct()
    )
    for run_id in orphans:
        yield str(run_id), ChainProblem(None, "events belong to a run that no longer exists")


# -- shadow decisions ----------------------------------------------------------------------
# At L2/L3 a workflow's draft envelope is evaluated on every run without acting (Run.shadow,
# the trace's policy_shadow event) and a person decides as usual. docs/policy.md, "Shadow
# decisions", defines every number below so that it can be recomputed from the replays.

SHADOW_OUTCOMES = ("allow", "escalate", "deny")
MISTAKES_LISTED = 200

_REJECTED = Q(status=RunStatus.REJECTED)
_APPROVED = Q(status__in=sorted(APPROVED_STATUSES))
# L3 approvals carry the proposal unchanged; an L2 pick says whether it was the agent's
# first choice (review_decision "matched").
_AS_PROPOSED = _APPROVED & (Q(decision__kind="approve") | Q(decision__matched=True))


def person_verdict(status: str, kind: str | None, matched) -> str | None:
    """What a person did with the agent's proposal, from the run's status and its
    decision's `kind` and `matched`: "approved" (as proposed), "other" (approved, but an L2
    pick of another option or the person's own action), "rejected"; None if no person
    approved or rejected it. `matched` as the database reads a JSON true: True, 1, "true"."""
    if status == RunStatus.REJECTED:
        return "rejected"
    if status not in APPROVED_STATUSES:
        return None
    if kind == "approve" or str(matched).lower() in ("true", "1"):
        return "approved"
    return "other"


@dataclass(frozen=True)
class ShadowAgreement:
    """A draft version's would-have-done beside the people's decisions, on one workflow."""

    version: int | None  # the shadow version counted (None: no run carries a shadow)
    versions: list[tuple[int, int]]  # (version, runs with its shadow), newest first
    # shadow outcome → person's verdict → decided runs; the verdict is "approved" (the
    # agent's proposal as it was), "other" (an L2 pick of another option or the person's
    # own action) or "rejected".
    table: dict[str, dict[str, int]]
    waiting: int  # runs with this shadow a person has not decided yet
    mistakes: list[Run]  # allowed by the draft, rejected by a person (newest first)
    mistakes_count: int
    mistakes_value: list[tuple[str, Decimal]]  # (currency, total), by currency
    mistakes_without_value: int
    other: list[Run]  # allowed by the draft, a person took another action instead

    def outcome_total(self, outcome: str) -> int:
        return sum(self.table[outcome].values())

    @property
    def decided(self) -> int:
        return sum(self.outcome_total(o) for o in SHADOW_OUTCOMES)

    @property
    def agreed(self) -> int:
        return self.table["allow"]["approved"] + self.table["deny"]["rejected"]

    @property
    def settled(self) -> int:
        """Decided runs the draft would have settled by itself (allowed or denied)."""
        return self.outcome_total("allow") + self.outcome_total("deny")


def _shadow_versions(workflow: Workflow) -> list[tuple[int, int]]:
    rows = (
        Run.objects.filter(workflow=workflow, shadow__isnull=False)
        .values("shadow__version")
        .annotate(n=Count("pk"))
        .order_by()
    )
    found = [(row["shadow__version"], row["n"]) for row in rows]
    return sorted(((v, n) for v, n in found if isinstance(v, int)), reverse=True)


def shadow_agreement(workflow: Workflow, version: int | None = None) -> ShadowAgreement:
    """How the draft policy `version` (default: the newest version that left shadow
    decisions) would have decided the workflow's runs, beside what people decided.

    Counted: the workflow's runs whose shadow names that version and that a person
    decided (status rejected, or one reached through an approval, with a decider).
    Runs decided by nobody (a deadline) are left out; those still waiting are counted
    apart (`waiting`). At most five queries, whatever the number of runs.
    """
    versions = _shadow_versions(workflow)
    if version is None and versions:
        version = versions[0][0]
    if version is None:
        runs = Run.objects.none()
    else:
        runs = Run.objects.filter(workflow=workflow, shadow__version=version)
    person = Q(decided_by__isnull=False)
    table = {
        outcome: dict.fromkeys(("approved", "other", "rejected"), 0) for outcome in SHADOW_OUTCOMES
    }
    waiting = 0
    # One pass over the version's runs, grouped by what classifies them.
    groups = (
        runs.values_list(
            KT("shadow__outcome"),
            "status",
            KT("decision__kind"),
            KT("decision__matched"),
            ExpressionWrapper(person, output_field=BooleanField()),
        )
        .annotate(n=Count("pk"))
        .order_by()
    )
    for outcome, status, kind, matched, by_person, n in groups:
        if status == RunStatus.PENDING_REVIEW:
            waiting += n
            continue
        verdict = person_verdict(status, kind, matched) if by_person else None
        if verdict is not None and outcome in table:
            table[outcome][verdict] += n
    allowed = runs.filter(person, shadow__outcome="allow").select_related("action_type")
    mistakes = allowed.filter(_REJECTED)
    totals: dict[str, Decimal] = {}
    without_value = 0
    by_currency = (
        mistakes.order_by()
        .values("currency")
        .annotate(total=Sum("value"), blank=Count("pk", filter=Q(value__isnull=True)))
    )
    for row in by_currency:
        # Currencies compare as the policy compares them: trimmed, case-insensitive.
        code = (row["currency"] or "").strip().upper()
        without_value += row["blank"]
        if row["total"] is not None:
            totals[code] = totals.get(code, Decimal(0)) + row["total"]
    other = []
    if table["allow"]["other"]:  # L2 only: spare L3 workflows the query
        others = allowed.filter(_APPROVED).exclude(pk__in=allowed.filter(_AS_PROPOSED).values("pk"))
        other = list(others.order_by("-created_at")[:MISTAKES_LISTED])
    return ShadowAgreement(
        version=version,
        versions=versions,
        table=table,
        waiting=waiting,
        mistakes=list(mistakes.order_by("-created_at")[:MISTAKES_LISTED]),
        mistakes_count=table["allow"]["rejected"],
        mistakes_value=sorted(totals.items()),
        mistakes_without_value=without_value,
        other=other,
    )


def gate_snapshot_latest(*, workflow: Workflow) -> GateSnapshot | None:
    """The workflow's newest gate snapshot (traces/services/gates.py), or None."""
    return GateSnapshot.objects.filter(workflow=workflow).order_by("-computed_at", "-id").first()


def drift_check_latest(*, workflow: Workflow) -> DriftCheck | None:
    """The workflow's newest drift check (traces/services/drift.py), or None."""
    return DriftCheck.objects.filter(workflow=workflow).order_by("-computed_at", "-id").first()


# -- the stop button (docs/stop.md) -------------------------------------------------------


def stop_out(*, at, reason: str) -> dict | None:
    """What an agent is told of a stopped workflow: `{at, reason}`, or None while it runs.
    No person is named (agents learn what happened, not who did it)."""
    if at is None:
        return None
    return {"at": at, "reason": reason}


@dataclass(frozen=True)
class StopState:
    slug: str
    stopped_at: object  # datetime | None
    reason: str


def stop_state_locked(*, workflow_id: int | None = None, run_id=None) -> StopState:
    """The workflow's stop state (of `workflow_id`, or of run `run_id`'s workflow) under
    a share lock on its row until the transaction ends (PostgreSQL), so that a claim and a
    stop are ordered: the stop's UPDATE waits for the claim's commit, or the claim reads
    the committed stop. Shares do not block one another, nor the gateway's inserts."""
    if connection.vendor == "postgresql":
        where = (
            "id = %s"
            if workflow_id is not None
            else ("id = (SELECT workflow_id FROM traces_run WHERE id = %s)")
        )
        with connection.cursor() as cur:
            cur.execute(
                "SELECT slug, stopped_at, stop_reason FROM ladder_workflow "  # noqa: S608
                f"WHERE {where} FOR SHARE",
                [workflow_id if workflow_id is not None else run_id],
            )
            row = cur.fetchone()
    else:  # SQLite serialises writers itself
        if workflow_id is None:
            found = Run.objects.filter(pk=run_id).values_list("workflow_id", flat=True)
            workflow_id = found.first()
        row = (
            Workflow.objects.filter(pk=workflow_id)
            .values_list("slug", "stopped_at", "stop_reason")
            .first()
        )
    if row is None:
        return StopState("", None, "")
    return StopState(row[0], row[1], row[2])
