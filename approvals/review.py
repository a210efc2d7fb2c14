"""Pure rules of a review: what the reviewer is shown, and what their edits amount to."""

import difflib
from typing import Any

from rapidfuzz.distance import Levenshtein

from ladder import gates
from traces.chain import canonical_json

# What the screen shows is built in traces.replay, which rebuilds it for examiners too.
from traces.replay import snapshot, snapshot_hash  # noqa: F401


def draft_text(params: dict, artifact: Any) -> str:
    """The text a light edit is measured on: every param as `key: value`, then the artifact."""
    lines = []
    for key, value in params.items():
        shown = value if isinstance(value, str) else canonical_json(value)
        lines.append(f"{key}: {shown}")
    if artifact is not None:
        lines.append(artifact if isinstance(artifact, str) else canonical_json(artifact))
    return "\n".join(lines)


def edit_distance(before: str, after: str) -> float:
    """Normalized Levenshtein distance in [0, 1] (rapidfuzz)."""
    return Levenshtein.normalized_distance(before, after)


def unified_diff(before: str, after: str) -> str:
    return "\n".join(
        difflib.unified_diff(
            before.splitlines(), after.splitlines(), "draft", "submitted", lineterm="", n=2
        )
    )


def options(proposal: dict) -> list[dict]:
    """The L2 options: the agent's first recommendation, then its alternatives."""
    first = {
        "action": proposal["action"],
        "params": proposal.get("params") or {},
        "score": None,
        "first": True,
    }
    alts = [
        {
            "action": a["action"],
            "params": a.get("params") or {},
            "score": a.get("score"),
            "first": False,
        }
        for a in proposal.get("alternatives") or []
    ]
    return [first, *alts]


def matches_first(proposal: dict, action: str, params: dict) -> bool:
    """Match = the chosen action equals the agent's first recommendation, type and params."""
    return gates.matches_first(proposal, action, params, canonical=canonical_json)


def decision_words(
    *,
    kind: str,
    verdict: str,
    edit_distance: float | None = None,
    chosen_option: int | None = None,
    executor: str = "",
) -> str:
    """What a person's decision did, in words for pages (the API keeps its values).

    `kind` and `verdict` are approvals.Review's; `executor` is the action type's. An L1
    draft sent unchanged reads differently from one the reviewer rewrote, an L2 pick
    says which option won, an L3 approval says who carries the action out.
    """
    if kind == "draft":
        if verdict == "discarded":
            return "Discarded"
        return "Submitted with edits" if edit_distance else "Submitted as drafted"
    if kind == "pick":
        if verdict == "rejected":
            return "Rejected all options"
        if chosen_option == 0:
            return "Picked the agent's first choice"
        if chosen_option is not None:
            return "Picked another option"
        return "Wrote their own"
    if verdict == "rejected":
        return "Rejected"
    if executor == "server":
        return "Approved — executed by the server"
    return "Approved — the agent carries it out"
