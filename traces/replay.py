"""Rebuild a run from its trace events alone.

The rebuilt run is what an examiner would reconstruct with nothing but the trace: what
the agent saw and did, what it proposed, what the reviewer saw and decided, what the
policy said, and what was executed. `complete` says every step the run's status implies
is there; `verified` says the hash chain is intact.
"""

import hashlib
from typing import Any

from traces.chain import canonical_json, verify_chain
from traces.status import DECIDED_STATUSES, FINISHED_STATUSES, RunStatus

# The agent's context for a decision: what it read, called and wrote before anyone decided.
CONTEXT_TYPES = ("input", "tool_call", "output")
# The first of these events freezes that context: a reviewer was shown it, a person decided
# on it, or the policy decided on it. Agent context events after it are kept in the trace
# (nothing is ever dropped) but never replace what the decision was made on.
FREEZING_TYPES = ("review_shown", "review_decision", "policy_decision", "deadline")
# Agent events that report on carrying out an approved action carry this phase.
EXECUTION_PHASE = "execution"


def context_of(events: list[dict]) -> dict[str, Any]:
    """The agent's context from its context events, in chain order: the last input, every
    tool call, the last output. The review screen and the replay both use this."""
    context: dict[str, Any] = {"input": None, "tool_calls": [], "output": None}
    for ev in events:
        payload = ev["payload"] or {}
        if ev["type"] == "input":
            context["input"] = payload.get("input")
        elif ev["type"] == "tool_call":
            context["tool_calls"].append(payload)
        elif ev["type"] == "output":
            context["output"] = payload.get("output")
    return context


def frozen_at(events: list[dict]) -> int | None:
    """The sequence number of the first event that froze the decision context."""
    return next((ev["seq"] for ev in events if ev["type"] in FREEZING_TYPES), None)


def _after_decision(ev: dict, limit: int | None) -> bool:
    """An agent context event that is not part of the decision's context: sent after the
    context froze, or marked as a report on carrying out the decided action."""
    if limit is not None and ev["seq"] > limit:
        return True
    payload = ev["payload"]
    return isinstance(payload, dict) and payload.get("phase") == EXECUTION_PHASE


def decision_context_events(events: list[dict]) -> list[dict]:
    """The context events the decision was made on: those before the context froze."""
    limit = frozen_at(events)
    return [ev for ev in events if ev["type"] in CONTEXT_TYPES and not _after_decision(ev, limit)]


# -- what a reviewer saw ----------------------------------------------------------------


def snapshot(
    *,
    run_id: str,
    version: int,
    workflow: str,
    rung: int,
    queue: str,
    context: dict,
    proposal: dict | None,
    escalation_reason: str,
) -> dict:
    """Everything the review screen shows that could sway a decision."""
    return {
        "run": run_id,
        "version": version,
        "workflow": workflow,
        "rung": rung,
        "queue": queue,
        "context": context,
        "proposal": proposal,
        "escalation_reason": escalation_reason,
    }


def snapshot_hash(snap: dict) -> str:
    return hashlib.sha256(canonical_json(snap).encode("utf-8")).hexdigest()


# What a `review_shown` event stores besides references to events already in the chain.
SHOWN_FIELDS = ("version", "workflow", "rung", "queue", "escalation_reason")


def shown_payload(*, by: str, snap: dict, digest: str, refs: list[dict]) -> dict:
    """The `review_shown` event: who, the screen's hash, the chain events the screen was
    built from (by seq and hash) and only the few shown fields that are not in the chain.
    The screen itself is rebuilt from those, so a 10 MB context is never copied again."""
    return {
        "by": by,
        "hash": digest,
        "events": [{"seq": r["seq"], "hash": r["hash"]} for r in refs],
        **{name: snap[name] for name in SHOWN_FIELDS},
    }


def rebuild_shown(run_id: str, payload: dict, events_by_seq: dict[int, dict]) -> dict | None:
    """Rebuild the screen a `review_shown` event refers to, or None when a referenced
    event is missing or differs from the one referred to."""
    refs = payload.get("events") or []
    picked = []
    for ref in refs:
        ev = events_by_seq.get(ref.get("seq"))
        if ev is None or ev["hash"] != ref.get("hash"):
            return None
        picked.append(ev)
    proposals = [ev["payload"] for ev in picked if ev["type"] == "proposal"]
    try:
        return snapshot(
            run_id=run_id,
            context=context_of([ev for ev in picked if ev["type"] in CONTEXT_TYPES]),
            proposal=proposals[-1] if proposals else None,
            **{name: payload[name] for name in SHOWN_FIELDS},
        )
    except KeyError:
        return None


def rebuild(events: list[dict], *, run_id: str = "") -> dict[str, Any]:
    """The run as its trace tells it. Input, tool calls and output are the context the
    decision was made on (events before the context froze); agent context that came
    after it is listed apart (`after_decision`: execution-phase reports, and anything an
    older gateway let through), never in its place."""
    first = events[0] if events else None
    run: dict[str, Any] = {
        # The rung the gateway handled the run at, from the run's first event (the
        # gateway's own input event; later agent events cannot stand in for it).
        "rung": (first["payload"] or {}).get("rung")
        if first and first["seq"] == 1 and first["type"] == "input"
        else None,
        **context_of(decision_context_events(events)),
        "proposal": None,
        "shown": [],
        "decision": None,
        "approver": None,
        "policy": None,
        "shadow": None,
        "deadline": [],
        "hold": [],
        "execution": [],
        "after_decision": [],
        "outcomes": [],
        "rollback": None,
    }
    limit = frozen_at(events)
    by_seq = {ev["seq"]: ev for ev in events}
    for ev in events:
        payload = ev["payload"]
        kind = ev["type"]
        if kind in CONTEXT_TYPES:
            if _after_decision(ev, limit):
                run["after_decision"].append({"seq": ev["seq"], "type": kind, **(payload or {})})
        elif kind == "proposal":
            if run["proposal"] is None:  # one proposal per run; never replaced
                run["proposal"] = payload
        elif kind == "review_shown":
            run["shown"].append(_shown(run_id, ev, by_seq))
        elif kind == "review_decision":
            if run["decision"] is None:  # exactly one decision; never replaced
                run["decision"] = payload
                run["approver"] = payload.get("by")
        elif kind == "policy_decision":
            if run["policy"] is None:  # one per run, at submission
                run["policy"] = payload
        elif kind == "policy_shadow":
            if run["shadow"] is None:
                run["shadow"] = payload
        elif kind == "deadline":
            run["deadline"].append(payload)
        elif kind == "hold":  # held while the workflow was stopped, then released
            run["hold"].append(payload)
        elif kind == "execution":
            run["execution"].append(payload)
        elif kind == "outcome":
            run["outcomes"].append(payload)
        elif kind == "rollback":
            run["rollback"] = payload
    # Labels accumulate; one `wrong` from any source outweighs every `correct`.
    labels = [o.get("label") for o in run["outcomes"] if isinstance(o, dict)]
    run["outcome"] = "wrong" if "wrong" in labels else (labels[-1] if labels else None)
    return run


def _shown(run_id: str, ev: dict, by_seq: dict[int, dict]) -> dict[str, Any]:
    payload = ev["payload"] or {}
    shown: dict[str, Any] = {"seq": ev["seq"], "by": payload.get("by"), "hash": payload.get("hash")}
    if "snapshot" in payload:  # written before screens were stored by reference
        screen = payload["snapshot"]
    else:
        screen = rebuild_shown(run_id, payload, by_seq)
    # The screen rebuilt from the chain hashes to what the reviewer's form carried.
    shown["matches"] = screen is not None and snapshot_hash(screen) == payload.get("hash")
    return shown


def missing_steps(run: dict[str, Any], *, status: str, has_proposal: bool) -> list[str]:
    missing = []
    if run["input"] is None:
        missing.append("input")
    if has_proposal and run["proposal"] is None:
        missing.append("proposal")
    # Which steps a run must have in its trace, by the status its row claims.
    decided_by_deadline = any(
        isinstance(d, dict) and d.get("outcome") == "denied" for d in run["deadline"]
    )
    if status in DECIDED_STATUSES and not (
        run["decision"] is not None
        or (run["policy"] or {}).get("decision") in ("allow", "deny")
        or decided_by_deadline
    ):
        missing.append("review_decision, policy_decision or deadline")
    if status in FINISHED_STATUSES and not run["execution"]:
        missing.append("execution")
    if status == RunStatus.ROLLED_BACK and run["rollback"] is None:
        missing.append("rollback")
    return missing


def replay(
    run_id: str, events: list[dict], *, status: str, has_proposal: bool, head: str, length: int
) -> dict[str, Any]:
    problems = verify_chain(run_id, events, head=head, length=length)
    rebuilt = rebuild(events, run_id=str(run_id))
    missing = missing_steps(rebuilt, status=status, has_proposal=has_proposal)
    steps = [
        {
            "seq": ev["seq"],
            "type": ev["type"],
            "at": ev["at"].isoformat(),
            "actor": ev["actor"],
            "payload": ev["payload"],
            "hash": ev["hash"],
        }
        for ev in events
    ]
    return {
        "id": str(run_id),
        "complete": not missing,
        "verified": not problems,
        "missing": missing,
        "problems": [{"seq": p.seq, "problem": p.problem} for p in problems],
        "run": rebuilt,
        "steps": steps,
    }
