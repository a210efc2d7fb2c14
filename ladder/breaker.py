"""The breaker: when an L4/L5 workflow's recent executions break a bound, it drops one
rung at once (docs/breaker.md). Pure rules over plain counts; the counting is
traces/services/breaker.py.

The window is the last `window_runs` executed runs (succeeded, failed or rolled back)
handled at the workflow's current rung since that rung began. A run handled before a
demotion is never counted again after it, so a breaker that tripped cannot trip again
on the same runs (no flapping): the next rung starts with an empty window.
"""

import math
from dataclasses import dataclass
from typing import Any

from ladder.gates import wilson
from ladder.rungs import Rung

DEFAULT_BOUNDS: dict[str, Any] = {
    # How many of the latest executed runs the breaker looks at.
    "window_runs": 50,
    # Failures (failed, or labelled wrong by an outcome or an audit) over executed runs:
    # the breaker trips when the lower end of the 95% Wilson interval is above this, so a
    # single unlucky run among many does not trip it, and a run of failures trips it
    # after a handful (3 of 3 already: lower bound 0.44).
    "failure_rate_max": 0.10,
    # Executed runs whose replay is complete and verified, over executed runs whose replay
    # was checked: below this, the workflow no longer leaves evidence it can stand on.
    "replay_coverage_min": 1.0,
    # Whether a drift alert (docs/drift.md) also trips the breaker.
    "drift_trips": False,
    # L5 needs continuous evals: an eval pass older than this, or below the eval bar,
    # drops the workflow to L4.
    "eval_max_age_days": 7,
}

_KINDS = {
    "window_runs": int,
    "failure_rate_max": float,
    "replay_coverage_min": float,
    "drift_trips": bool,
    "eval_max_age_days": float,
}


class BoundsError(ValueError):
    """Breaker bounds that are not usable, every problem named."""


def bounds_validate(overrides: Any) -> dict:
    """Check per-workflow overrides: known names, the right kind, sane ranges."""
    if overrides in (None, ""):
        return {}
    if not isinstance(overrides, dict):
        raise BoundsError('breaker bounds must be an object such as {"window_runs": 50}')
    problems = []
    for key, value in overrides.items():
        kind = _KINDS.get(key)
        if kind is None:
            problems.append(f"unknown bound {key!r} (known: {', '.join(sorted(_KINDS))})")
            continue
        if kind is bool:
            if not isinstance(value, bool):
                problems.append(f"{key} must be true or false")
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            problems.append(f"{key} must be a number")
            continue
        if not math.isfinite(value):
            problems.append(f"{key} must be a finite number")
        elif key == "window_runs" and not (isinstance(value, int) and 5 <= value <= 10_000):
            problems.append("window_runs must be a whole number from 5 to 10000")
        elif key in ("failure_rate_max", "replay_coverage_min") and not 0 <= value <= 1:
            problems.append(f"{key} must lie between 0 and 1")
        elif key == "eval_max_age_days" and not 0 < value <= 365:
            problems.append("eval_max_age_days must be more than 0 and at most 365")
    if problems:
        raise BoundsError("; ".join(problems))
    return dict(overrides)


def bounds_loosened(bounds: dict) -> list[str]:
    """The bounds set looser than the defaults: what an owner may not do alone (an admin
    may, in the admin). A longer or shorter window is neither: it is allowed."""
    problems = []
    if bounds.get("failure_rate_max", 0) > DEFAULT_BOUNDS["failure_rate_max"]:
        problems.append(
            f"failure_rate_max above {DEFAULT_BOUNDS['failure_rate_max']:.0%} loosens the breaker"
        )
    if bounds.get("replay_coverage_min", 1) < DEFAULT_BOUNDS["replay_coverage_min"]:
        problems.append(
            f"replay_coverage_min below {DEFAULT_BOUNDS['replay_coverage_min']:.0%} loosens "
            "the breaker"
        )
    if bounds.get("eval_max_age_days", 0) > DEFAULT_BOUNDS["eval_max_age_days"]:
        problems.append(
            f"eval_max_age_days above {DEFAULT_BOUNDS['eval_max_age_days']} loosens the breaker"
        )
    return problems


def bounds_for(overrides: Any) -> dict:
    """The defaults with the workflow's overrides (invalid overrides are ignored here:
    the admin refuses them when saved, and a breaker must never fail to judge)."""
    try:
        valid = bounds_validate(overrides)
    except BoundsError:
        valid = {}
    return {**DEFAULT_BOUNDS, **valid}


@dataclass(frozen=True)
class Window:
    """The latest executed runs at the current rung: how many, how many failed (silent
    failures included), how many had their replay checked and how many of those passed."""

    executed: int
    failures: int
    replay_checked: int
    replay_ok: int


@dataclass(frozen=True)
class Trip:
    """Why the breaker trips: which bound broke, in one sentence, and the numbers."""

    bound: str
    reason: str
    evidence: dict


def demoted_rung(rung: int) -> int | None:
    """Where a tripped breaker puts a workflow: one rung down from L5 or L4; None below,
    where a person already approves every action."""
    return rung - 1 if rung >= Rung.L4 else None


def judge(window: Window, bounds: dict) -> Trip | None:
    """The first bound the window breaks, or None."""
    if window.executed:
        low, high = wilson(window.failures, window.executed)
        if low > bounds["failure_rate_max"]:
            return Trip(
                bound="failure_rate",
                reason=(
                    f"{window.failures} of the last {window.executed} executed runs failed or "
                    f"were labelled wrong ({window.failures / window.executed:.1%}; 95% CI "
                    f"{low:.1%} to {high:.1%}); the failure rate must stay at most "
                    f"{bounds['failure_rate_max']:.1%}"
                ),
                evidence={
                    "executed": window.executed,
                    "failures": window.failures,
                    "rate": window.failures / window.executed,
                    "lower": low,
                    "upper": high,
                    "bound": bounds["failure_rate_max"],
                    "window_runs": bounds["window_runs"],
                },
            )
    if window.replay_checked:
        coverage = window.replay_ok / window.replay_checked
        if coverage < bounds["replay_coverage_min"]:
            return Trip(
                bound="replay_coverage",
                reason=(
                    f"only {window.replay_ok} of the last {window.replay_checked} executed "
                    f"runs replay complete and verified ({coverage:.1%}); replay coverage "
                    f"must stay at least {bounds['replay_coverage_min']:.1%}"
                ),
                evidence={
                    "checked": window.replay_checked,
                    "ok": window.replay_ok,
                    "coverage": coverage,
                    "bound": bounds["replay_coverage_min"],
                    "window_runs": bounds["window_runs"],
                },
            )
    return None


def judge_evals(
    *, rung: int, age_days: float | None, matched: int, total: int, bar: float, bounds: dict
) -> Trip | None:
    """L5's continuous evals: the latest eval pass must be recent and at the bar (the
    lower end of its 95% Wilson interval, as the gate judges it)."""
    if rung < Rung.L5:
        return None
    limit = bounds["eval_max_age_days"]
    if age_days is None:
        return Trip(
            bound="evals",
            reason="L5 needs continuous evals and no eval pass has been run",
            evidence={"max_age_days": limit},
        )
    if age_days > limit:
        return Trip(
            bound="evals",
            reason=(
                f"the latest eval pass is {age_days:.1f} days old; at L5 it must be at most "
                f"{limit:g} days old"
            ),
            evidence={"age_days": age_days, "max_age_days": limit},
        )
    low, _high = wilson(matched, total)
    if total == 0 or low < bar:
        return Trip(
            bound="evals",
            reason=(
                f"the latest eval pass matched {matched} of {total} cases (lower bound "
                f"{low:.1%}); the bar is {bar:.1%}"
            ),
            evidence={"matched": matched, "total": total, "lower": low, "bar": bar},
        )
    return None
