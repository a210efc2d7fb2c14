"""The replay page as a person reads it: each step of a run's trace turned into labelled
fields, times people read and the reviewer's screen rebuilt from the chain.

Pure functions over the replay (traces.replay) and a few plain lookups the view reads
in one query each (people's names, the workflow's money params, the policy's sentences).
Nothing here decides whether a run is intact: `complete` and `verified` come from
traces.replay, judged on the stored trace.
"""

from datetime import UTC, datetime
from typing import Any

from approvals.templatetags.params import money_text
from traces.chain import canonical_json
from traces.replay import rebuild_shown, snapshot_hash

# What each event type is called on the page.
TYPE_LABELS = {
    "input": "Input",
    "tool_call": "Tool call",
    "output": "Output",
    "proposal": "Proposal",
    "review_shown": "Review screen shown",
    "review_decision": "Decision",
    "policy_decision": "Policy decision",
    "policy_shadow": "Draft policy, in shadow",
    "execution": "Execution",
    "outcome": "Outcome label",
    "rollback": "Rollback",
    "hold": "Hold",
    "deadline": "Deadline",
}

# Actors that are not people, as words.
ACTOR_WORDS = {
    "system": "the system",
    "system:probe": "the system (attention probe)",
    "policy": "the policy",
    "deadline": "the deadline",
}

POLICY_OUTCOMES = {"allow": "allowed", "escalate": "escalated to a person", "deny": "denied"}
VERDICTS = {"approved": "Approved", "rejected": "Rejected"}


# -- times ------------------------------------------------------------------------------


def moment_text(at: datetime) -> str:
    """To the second, in UTC: "2026-11-27 14:03:12 UTC"."""
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _units(seconds: int, most: int) -> str:
    parts = []
    for size, unit in ((86400, "day"), (3600, "h"), (60, "min"), (1, "s")):
        count, seconds = divmod(seconds, size)
        if count:
            name = unit + ("s" if unit == "day" and count != 1 else "")
            parts.append(f"{count} {name}")
    return " ".join(parts[:most])


def ago_text(seconds: float) -> str:
    """How long ago, in at most two units: "4 min ago", "2 days 3 h ago", "just now"."""
    if seconds < 1:
        return "just now"
    return _units(int(seconds), 2) + " ago"


def gap_text(seconds: float) -> str:
    """The time between two steps: "+0.4 s", "+12 s", "+3 min 2 s"."""
    if seconds < 0:
        return ""
    if seconds < 10:
        return f"+{seconds:.1f} s"
    return "+" + _units(int(seconds), 2)


def time_of(at: datetime, *, now: datetime) -> dict[str, str]:
    return {
        "text": moment_text(at),
        "iso": at.isoformat(),
        "ago": ago_text((now - at).total_seconds()),
    }


# -- people and values --------------------------------------------------------------------


def person_ids(replay: dict) -> set[int]:
    """The user ids a replay names: `user:N` actors and outcome labels' `by`."""
    ids = set()
    for step in replay.get("steps", []):
        actor = step.get("actor") or ""
        if actor.startswith("user:") and actor[5:].isdigit():
            ids.add(int(actor[5:]))
        by = (
            (step.get("payload") or {}).get("by") if isinstance(step.get("payload"), dict) else None
        )
        if step.get("type") == "outcome" and isinstance(by, int):
            ids.add(by)
    return ids


def actor_text(actor: str, names: dict[int, str]) -> str:
    """Who wrote a step, in words: a person's username, an agent token, the system…"""
    if actor.startswith("user:"):
        key = actor[5:]
        if key.isdigit() and int(key) in names:
            return names[int(key)]
        return f"a person no longer on record ({actor})"
    if actor.startswith("agent:"):
        return f"the agent (token {actor[6:]})"
    return ACTOR_WORDS.get(actor, actor)


def value_text(value: Any) -> str:
    """A param value as text: strings as they are, anything else as compact JSON."""
    if isinstance(value, str):
        return value
    return canonical_json(value)


def action_view(action: Any, params: Any, money: dict[str, tuple[str, str]]) -> dict:
    """An action and its params as labelled fields; its value as amount + currency when
    the action type names a value param."""
    params = params if isinstance(params, dict) else {}
    value = ""
    value_param, currency_param = (
        money.get(action, ("", "")) if isinstance(action, str) else ("", "")
    )
    if value_param and params.get(value_param) is not None:
        amount = params[value_param]
        currency = params.get(currency_param) if currency_param else ""
        value = money_text(amount, currency) or value_text(amount)
    return {
        "action": action if isinstance(action, str) else value_text(action),
        # As stored: the page shows them as labelled fields by the action's schema
        # (approvals/templatetags/params.py), as the review screens do.
        "raw": params,
        "value": value,
    }


def proposal_view(proposal: Any, money: dict[str, tuple[str, str]]) -> dict | None:
    if not isinstance(proposal, dict):
        return None
    view = action_view(proposal.get("action"), proposal.get("params"), money)
    alternatives = []
    for alt in proposal.get("alternatives") or []:
        if isinstance(alt, dict):
            option = action_view(alt.get("action"), alt.get("params"), money)
            option["score"] = alt.get("score")
            alternatives.append(option)
    flags = proposal.get("flags")
    artifact = proposal.get("artifact")
    return {
        **view,
        "summary": proposal.get("summary") if isinstance(proposal.get("summary"), str) else "",
        "alternatives": alternatives,
        "flags": [value_text(f) for f in flags] if isinstance(flags, list) else [],
        "artifact": artifact,
        "artifact_is_text": isinstance(artifact, str),
    }


# -- the reviewer's screen ------------------------------------------------------------------


def screen_view(
    run_id: str, payload: dict, by_seq: dict[int, dict], money: dict[str, tuple[str, str]]
) -> dict:
    """The screen a `review_shown` event refers to, rebuilt from the chain, and whether it
    hashes to what the reviewer's page carried."""
    if "snapshot" in payload:  # written before screens were stored by reference
        screen = payload["snapshot"] if isinstance(payload["snapshot"], dict) else None
    else:
        screen = rebuild_shown(run_id, payload, by_seq)
    matches = screen is not None and snapshot_hash(screen) == payload.get("hash")
    if screen is None:
        return {"rebuilt": False, "matches": False, "hash": payload.get("hash") or ""}
    context = screen.get("context") or {}
    return {
        "rebuilt": True,
        "matches": matches,
        "hash": payload.get("hash") or "",
        "version": screen.get("version"),
        "workflow": screen.get("workflow"),
        "rung": screen.get("rung"),
        "queue": screen.get("queue"),
        "escalation_reason": screen.get("escalation_reason") or "",
        "context": {
            "input": context.get("input"),
            "tool_calls": [c for c in context.get("tool_calls") or [] if isinstance(c, dict)],
            "output": context.get("output"),
        },
        "proposal": proposal_view(screen.get("proposal"), money),
    }


# -- the steps -----------------------------------------------------------------------------


def _rules(payload: dict, sentences: dict[int, dict[str, str]]) -> list[dict]:
    fired = payload.get("rules_fired") or []
    reasons = payload.get("reasons") or []
    known = sentences.get(payload.get("policy_version")) or {}
    rows = []
    for i, rule_id in enumerate(fired):
        rows.append(
            {
                "id": value_text(rule_id),
                "sentence": known.get(rule_id, "") if isinstance(rule_id, str) else "",
                "reason": value_text(reasons[i]) if i < len(reasons) else "",
            }
        )
    return rows


def _detail(
    step: dict,
    *,
    run_id: str,
    by_seq: dict[int, dict],
    money: dict[str, tuple[str, str]],
    sentences: dict[int, dict[str, str]],
    names: dict[int, str],
    hidden: bool,
) -> dict:
    kind = step["type"]
    payload = step.get("payload")
    p = payload if isinstance(payload, dict) else {}
    if kind == "input":
        return {"input": p.get("input"), "rung": p.get("rung"), "phase": p.get("phase", "")}
    if kind == "tool_call":
        return {
            "name": value_text(p.get("name", "")),
            "arguments": p.get("arguments"),
            "result": p.get("result"),
            "phase": p.get("phase", ""),
        }
    if kind == "output":
        return {"output": p.get("output"), "phase": p.get("phase", "")}
    if kind == "proposal":
        return {"proposal": proposal_view(p, money)}
    if kind == "review_shown":
        return {
            "screen": screen_view(run_id, p, by_seq, money),
            "by": "" if hidden else value_text(p.get("by") or ""),
        }
    if kind == "review_decision":
        shown = {
            s["payload"].get("hash")
            for s in by_seq.values()
            if s["type"] == "review_shown" and isinstance(s.get("payload"), dict)
        }
        return {
            "verdict": VERDICTS.get(p.get("verdict"), value_text(p.get("verdict", ""))),
            "approved": p.get("verdict") == "approved",
            "by": "" if hidden else value_text(p.get("by") or ""),
            "action": action_view(p.get("action"), p.get("params"), money),
            "reason": value_text(p.get("reason") or ""),
            "kind": value_text(p.get("kind") or ""),
            "seen_hash": value_text(p.get("seen_hash") or ""),
            "seen_recorded": p.get("seen_hash") in shown,
        }
    if kind in ("policy_decision", "policy_shadow"):
        outcome = p.get("decision")
        return {
            "outcome": POLICY_OUTCOMES.get(outcome, value_text(outcome or "")),
            "outcome_code": outcome if isinstance(outcome, str) else "",
            "version": p.get("policy_version"),
            "reason": value_text(p.get("reason") or ""),
            "rules": _rules(p, sentences),
            "audit_sampled": p.get("audit_sampled"),
        }
    if kind == "execution":
        return {
            "phase": value_text(p.get("phase") or ""),
            "executor": value_text(p.get("executor") or ""),
            "attempt": p.get("attempt"),
            "status": value_text(p.get("status") or ""),
            "output": p.get("output"),
            "has_output": "output" in p and p.get("output") is not None,
            "error": value_text(p.get("error") or ""),
        }
    if kind == "outcome":
        by = p.get("by")
        who = ""
        if by is not None and not hidden:
            who = names.get(by, f"person #{by}") if isinstance(by, int) else value_text(by)
        return {
            "label": value_text(p.get("label") or ""),
            "source": value_text(p.get("source") or ""),
            "note": value_text(p.get("note") or ""),
            "by": who,
        }
    if kind == "rollback":
        return {
            "drill": p.get("drill") if isinstance(p.get("drill"), int) else None,
            "compensating_action": value_text(p.get("compensating_action") or ""),
            "status": value_text(p.get("status") or ""),
            "output": p.get("output"),
            "has_output": p.get("output") is not None,
            "error": value_text(p.get("error") or ""),
        }
    if kind == "hold":
        return {"released": bool(p.get("released")), "reason": value_text(p.get("reason") or "")}
    if kind == "deadline":
        passed = _parse(p.get("deadline_at"))
        following = _parse(p.get("next_deadline_at"))
        waited = p.get("waited_seconds")
        return {
            "outcome": value_text(p.get("outcome") or ""),
            "reason": value_text(p.get("reason") or ""),
            "deadline_at": moment_text(passed) if passed else "",
            "next_deadline_at": moment_text(following) if following else "",
            "waited": _units(int(waited), 2) if isinstance(waited, int) and waited > 0 else "",
        }
    return {}


def _parse(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


def steps_view(
    replay: dict,
    *,
    names: dict[int, str],
    money: dict[str, tuple[str, str]],
    sentences: dict[int, dict[str, str]],
    now: datetime,
    actors_hidden: bool,
) -> list[dict]:
    """Every step of the trace, in chain order, as the page shows it. With
    `actors_hidden` (the run waits) no step says who wrote it."""
    steps = replay.get("steps", [])
    by_seq = {s["seq"]: s for s in steps}
    run_id = str(replay.get("id", ""))
    after = {a.get("seq") for a in (replay.get("run") or {}).get("after_decision") or []}
    out = []
    previous: datetime | None = None
    for step in steps:
        at = datetime.fromisoformat(step["at"])
        gap = gap_text((at - previous).total_seconds()) if previous is not None else ""
        previous = at
        out.append(
            {
                "seq": step["seq"],
                "type": step["type"],
                "label": TYPE_LABELS.get(step["type"], step["type"]),
                "time": time_of(at, now=now),
                "gap": gap,
                "actor": "" if actors_hidden else actor_text(step.get("actor") or "", names),
                "hash": step.get("hash") or "",
                "payload": step.get("payload"),
                "after_decision": step["seq"] in after,
                "detail": _detail(
                    step,
                    run_id=run_id,
                    by_seq=by_seq,
                    money=money,
                    sentences=sentences,
                    names=names,
                    hidden=actors_hidden,
                ),
            }
        )
    return out


def duration_between(first: str | None, last: str | None) -> str:
    """From the first step to the last, for the page's header."""
    a, b = _parse(first), _parse(last)
    if a is None or b is None or b < a:
        return ""
    seconds = (b - a).total_seconds()
    if seconds < 10:
        return f"{seconds:.1f} s"
    return _units(int(seconds), 2)
