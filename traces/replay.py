"""Rebuild a run from its trace events alone.

The rebuilt run is what an examiner would reconstruct with nothing but the trace: what
the agent saw and did, what it proposed, what the reviewer saw and decided, what the
policy said, and what was executed. `complete` says every step the run's status implies
is there; `verified` says the hash chain is intact.
"""

from typing import Any

from traces.chain import verify_chain

# Which steps a run must have in its trace, by the status its row claims.
_DECIDED = {"approved", "rejected", "executing", "executed", "failed", "denied", "rolled_back"}
_EXECUTED = {"executed", "failed", "rolled_back"}


def rebuild(events: list[dict]) -> dict[str, Any]:
    run: dict[str, Any] = {
        "input": None,
        "tool_calls": [],
        "output": None,
        "proposal": None,
        "shown": [],
        "decision": None,
        "approver": None,
        "policy": None,
        "execution": [],
        "outcomes": [],
        "rollback": None,
    }
    for ev in events:
        payload = ev["payload"]
        kind = ev["type"]
        if kind == "input":
            run["input"] = payload.get("input")
        elif kind == "tool_call":
            run["tool_calls"].append(payload)
        elif kind == "output":
            run["output"] = payload.get("output")
        elif kind == "proposal":
            run["proposal"] = payload
        elif kind == "review_shown":
            run["shown"].append({"by": payload.get("by"), "hash": payload.get("hash")})
        elif kind == "review_decision":
            run["decision"] = payload
            run["approver"] = payload.get("by")
        elif kind == "policy_decision":
            run["policy"] = payload
        elif kind == "execution":
            run["execution"].append(payload)
        elif kind == "outcome":
            run["outcomes"].append(payload)
        elif kind == "rollback":
            run["rollback"] = payload
    return run


def missing_steps(run: dict[str, Any], *, status: str, has_proposal: bool) -> list[str]:
    missing = []
    if run["input"] is None:
        missing.append("input")
    if has_proposal and run["proposal"] is None:
        missing.append("proposal")
    if status in _DECIDED and run["decision"] is None and run["policy"] is None:
        missing.append("review_decision or policy_decision")
    if status in _EXECUTED and not run["execution"]:
        missing.append("execution")
    if status == "rolled_back" and run["rollback"] is None:
        missing.append("rollback")
    return missing


def replay(
    run_id: str, events: list[dict], *, status: str, has_proposal: bool, head: str, length: int
) -> dict[str, Any]:
    problems = verify_chain(run_id, events, head=head, length=length)
    rebuilt = rebuild(events)
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
