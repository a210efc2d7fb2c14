"""Reads over runs and traces."""

import json
from collections.abc import Iterator
from dataclasses import dataclass

from ladder.models import Workflow
from traces.chain import ChainProblem, verify_chain
from traces.models import Run, TraceEvent
from traces.replay import (
    CONTEXT_TYPES,
    FREEZING_TYPES,
    context_of,
    decision_context_events,
    replay,
)
from traces.status import FINISHED_STATUSES

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
