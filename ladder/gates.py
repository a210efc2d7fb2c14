"""Evidence gates: the arithmetic that says whether a workflow may climb one rung.

Plain functions over plain numbers (docs/gates.md defines every figure): the SQL that
counts runs lives in traces/gates.py and hands its tallies over as `Tallies`; this
module turns them into gates, each with its number, 95% Wilson interval, bar and verdict,
and decides eligibility for N -> N+1. Nothing here touches a database.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from ladder.rungs import RiskClass, Rung

# z for a two-sided 95% interval.
Z95 = 1.959963984540054

# A light edit: the submitted draft is within this normalized edit distance of the
# agent's draft (DESIGN.md, "Evidence gates").
LIGHT_EDIT_MAX = 0.2

# A consequential workflow tops out here unless an admin raises its max rung.
CONSEQUENTIAL_MAX_RUNG = Rung.L4

PASS = "pass"  # noqa: S105 (a verdict, not a password)
FAIL = "fail"
INSUFFICIENT = "insufficient"
# A gate whose evidence this product does not record yet: shown, never counted as met.
MISSING = "missing"
VERDICTS = (PASS, FAIL, INSUFFICIENT, MISSING)

# A per-action-type rate is judged once the type has this many decided runs; below it
# the type is shown as too few to judge (the eval set is what covers rare types).
PER_TYPE_MIN_N = 30
# Rates whose n is not the decided volume (executed runs, audits, shadow-settled runs) are
# judged from this many on; below it a handful of runs could fail, or pass, by luck.
SAMPLE_MIN_N = 100


# -- thresholds ---------------------------------------------------------------------------

# The bars for N -> N+1, keyed by the target rung N+1 (DESIGN.md's table). Rates are
# fractions; `*_days` are days; "failure_rate_max" is an upper bar (lower is better).
DEFAULT_THRESHOLDS: dict[int, dict[str, float]] = {
    Rung.L2: {"volume": 200, "light_edit_acceptance": 0.80, "time_at_rung_days": 14},
    Rung.L3: {"volume": 300, "match_rate": 0.90, "eval_match_rate": 0.90, "time_at_rung_days": 14},
    Rung.L4: {
        "volume": 1000,
        "approval_rate": 0.95,
        "probe_catch_rate": 0.90,
        "probe_min": 20,
        "failure_rate_max": 0.05,
        "replay_coverage": 1.0,
        "shadow_agreement": 0.95,
        "drill_max_age_days": 30,
        "outcome_min_points": 10,
        "time_at_rung_days": 28,
    },
    Rung.L5: {
        "volume": 3000,
        "audit_agreement": 0.98,
        "failure_rate_max": 0.05,
        "replay_coverage": 1.0,
        "drill_max_age_days": 30,
        "outcome_min_points": 10,
        "time_at_rung_days": 56,
    },
}
# Consequential workflows start tighter.
CONSEQUENTIAL_THRESHOLDS: dict[int, dict[str, float]] = {
    Rung.L4: {"time_at_rung_days": 42},
}
# Bars where a smaller number is stricter; everything else is stricter when larger.
UPPER_BARS = frozenset({"failure_rate_max", "drill_max_age_days"})
RATE_BARS = frozenset(
    {
        "light_edit_acceptance",
        "match_rate",
        "eval_match_rate",
        "approval_rate",
        "probe_catch_rate",
        "failure_rate_max",
        "replay_coverage",
        "shadow_agreement",
        "audit_agreement",
    }
)


class ThresholdError(ValueError):
    """An override that is unknown, malformed or looser than the default."""


def thresholds_for(
    *, target_rung: int, risk_class: str, overrides: dict | None = None
) -> dict[str, float]:
    """The bars for climbing to `target_rung`: the defaults, tightened for a
    consequential workflow, then by the workflow's own overrides
    (`{"4": {"approval_rate": 0.97}}`). An override may only tighten: a looser one is
    ignored here (thresholds_validate refuses it when it is saved)."""
    bars = dict(DEFAULT_THRESHOLDS.get(target_rung, {}))
    if risk_class == RiskClass.CONSEQUENTIAL:
        bars.update(CONSEQUENTIAL_THRESHOLDS.get(target_rung, {}))
    for key, value in ((overrides or {}).get(str(target_rung)) or {}).items():
        if key in bars and _tighter_or_equal(key, float(value), bars[key]):
            bars[key] = float(value)
    return bars


def thresholds_validate(*, risk_class: str, overrides: Any) -> dict:
    """A workflow's `gate_thresholds`, checked: known rungs and bars, numbers in range,
    and never looser than the defaults. Raises ThresholdError naming every problem."""
    if not isinstance(overrides, dict):
        raise ThresholdError("gate thresholds must be an object keyed by target rung")
    problems, clean = [], {}
    for rung_key, bars in overrides.items():
        if rung_key not in {str(r) for r in DEFAULT_THRESHOLDS}:
            problems.append(f"'{rung_key}': not a target rung (2 to 5)")
            continue
        if not isinstance(bars, dict):
            problems.append(f"'{rung_key}': must be an object of bars")
            continue
        base = thresholds_for(target_rung=int(rung_key), risk_class=risk_class)
        clean[rung_key] = {}
        for key, value in bars.items():
            if key not in base:
                problems.append(f"L{rung_key} '{key}': no such bar")
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                problems.append(f"L{rung_key} '{key}': must be a number")
                continue
            if not math.isfinite(value) or value < 0 or (key in RATE_BARS and value > 1):
                problems.append(f"L{rung_key} '{key}': out of range")
                continue
            if not _tighter_or_equal(key, float(value), base[key]):
                problems.append(
                    f"L{rung_key} '{key}': {value} is looser than the default {base[key]:g}"
                )
                continue
            clean[rung_key][key] = value
    if problems:
        raise ThresholdError("; ".join(problems))
    return clean


def _tighter_or_equal(key: str, value: float, default: float) -> bool:
    return value <= default if key in UPPER_BARS else value >= default


def max_rung_for(risk_class: str) -> int:
    """The highest rung a new workflow may reach until an admin raises it."""
    return CONSEQUENTIAL_MAX_RUNG if risk_class == RiskClass.CONSEQUENTIAL else Rung.L5


# -- rates --------------------------------------------------------------------------------


def wilson(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of k successes in n trials (95% by default).
    (0, 1) when n is 0: nothing is known."""
    if n <= 0:
        return 0.0, 1.0
    if not 0 <= k <= n:
        raise ValueError("k must lie between 0 and n")
    p = k / n
    z2 = z * z
    denom = 1 + z2 / n
    centre = (p + z2 / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / denom
    # Rounding can push the ends a hair past the true bounds at p = 0 or 1.
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass(frozen=True)
class Count:
    """k of n."""

    k: int = 0
    n: int = 0

    @property
    def rate(self) -> float | None:
        return self.k / self.n if self.n else None


# -- what the SQL hands over ----------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """A business metric: its mean over a baseline period and over the window."""

    metric: str
    direction: str  # "up" | "down": which way is better
    baseline_mean: float | None
    baseline_n: int
    current_mean: float | None
    current_n: int


@dataclass(frozen=True)
class EvalPass:
    """The latest eval pass: per proposed action type, matched of cases run."""

    label: str
    at: datetime | None
    by_type: dict[str, Count]


@dataclass(frozen=True)
class Tallies:
    """One workflow's counts over one window at its current rung (traces/gates.py)."""

    rung: int
    volume: int = 0
    light_edit: Count = Count()
    match: Count = Count()
    match_by_type: dict[str, Count] = field(default_factory=dict)
    approval: Count = Count()
    audit: Count = Count()
    # Audit agreement over the window's three consecutive thirds, oldest first.
    audit_thirds: tuple[Count, ...] = ()
    failure: Count = Count()
    replay: Count = Count()
    probes: Count = Count()
    shadow: Count | None = None
    shadow_version: int | None = None
    eval_cases_by_type: dict[str, int] = field(default_factory=dict)
    eval_pass: EvalPass | None = None
    outcome: Outcome | None = None
    # The policy that would be in force one rung up: its version and its problems.
    policy_version: int | None = None
    policy_problems: tuple[str, ...] = ()
    # The latest finished rollback drill (traces/services/drills.py): {at, passed, size,
    # duration_seconds, under_load, id}; None when the workflow has none.
    drill: dict | None = None


@dataclass(frozen=True)
class WorkflowFacts:
    """What the gates need to know of the workflow itself."""

    rung: int
    max_rung: int
    risk_class: str
    action_types: tuple[str, ...]
    has_owner: bool
    rung_since: datetime | None
    now: datetime
    window_days: int
    thresholds: dict | None = None


@dataclass(frozen=True)
class Gate:
    name: str
    label: str
    verdict: str
    sentence: str
    value: float | None = None
    n: int | None = None
    lower: float | None = None
    upper: float | None = None
    bar: float | None = None
    # Whether the gate must pass for the workflow to be eligible.
    required: bool = True

    def as_json(self) -> dict:
        return asdict(self)


# -- the gates ----------------------------------------------------------------------------


def _pct(x: float | None) -> str:
    if x is None:
        return "—"
    return f"{x * 100:.1f}%"


def _num(n: int) -> str:
    return f"{n:,}"


def rate_gate(
    *,
    name: str,
    label: str,
    count: Count,
    bar: float,
    min_n: int,
    what: str,
    upper_bar: bool = False,
    required: bool = True,
) -> Gate:
    """A rate judged on its Wilson interval: the lower bound must reach `bar` (or, for
    an upper bar such as a failure rate, the upper bound must stay at or below it).
    `insufficient` while n < min_n: a small sample cannot pass by luck, nor fail by it.
    `what` completes "Over N runs …" in the sentence."""
    lower, upper = wilson(count.k, count.n)
    rate = count.rate
    if count.n < max(min_n, 1):
        verdict = INSUFFICIENT
    elif upper_bar:
        verdict = PASS if upper <= bar else FAIL
    else:
        verdict = PASS if lower >= bar else FAIL
    judged = "upper" if upper_bar else "lower"
    if count.n == 0:
        sentence = f"No runs yet to measure: {what}. Bar: {_bar_words(bar, upper_bar)}."
    else:
        sentence = (
            f"Over {_num(count.n)} runs {what} {_pct(rate)} "
            f"(95% CI {lower * 100:.1f}\N{EN DASH}{_pct(upper)}); the {judged} bound must be "
            f"{_bar_words(bar, upper_bar)}."
        )
    if verdict == INSUFFICIENT and count.n:
        sentence += f" Too few to judge: at least {_num(min_n)} are needed."
    return Gate(
        name=name,
        label=label,
        verdict=verdict,
        sentence=sentence,
        value=rate,
        n=count.n,
        lower=lower if count.n else None,
        upper=upper if count.n else None,
        bar=bar,
        required=required,
    )


def _bar_words(bar: float, upper_bar: bool) -> str:
    return f"at most {_pct(bar)}" if upper_bar else f"at least {_pct(bar)}"


def _volume_gate(volume: int, bar: float) -> Gate:
    return Gate(
        name="volume",
        label="Volume",
        verdict=PASS if volume >= bar else INSUFFICIENT,
        sentence=f"{_num(volume)} runs decided in the window; {_num(int(bar))} are needed.",
        value=float(volume),
        n=volume,
        bar=bar,
    )


def _time_gate(facts: WorkflowFacts, days: float) -> Gate:
    if facts.rung_since is None:
        held = 0.0
    else:
        held = max(0.0, (facts.now - facts.rung_since).total_seconds() / 86400)
    return Gate(
        name="time_at_rung",
        label="Time at the rung",
        verdict=PASS if held >= days else INSUFFICIENT,
        sentence=f"At L{facts.rung} for {held:.1f} days; {days:g} are needed.",
        value=held,
        bar=days,
    )


def gates_evaluate(facts: WorkflowFacts, tallies: Tallies) -> list[Gate]:
    """Every gate for facts.rung -> facts.rung + 1 (none above L5)."""
    target = facts.rung + 1
    if target > Rung.L5:
        return []
    if target == Rung.L1:
        return _leave_l0_gates(facts)
    bars = thresholds_for(
        target_rung=target, risk_class=facts.risk_class, overrides=facts.thresholds
    )
    gates = [_volume_gate(tallies.volume, bars["volume"])]
    min_n = int(bars["volume"])
    if target == Rung.L2:
        gates.append(
            rate_gate(
                name="light_edit_acceptance",
                label="Light-edit acceptance",
                count=tallies.light_edit,
                bar=bars["light_edit_acceptance"],
                min_n=min_n,
                what="reviewers submitted the draft with a light edit",
            )
        )
    elif target == Rung.L3:
        gates.append(
            rate_gate(
                name="match_rate",
                label="Match rate",
                count=tallies.match,
                bar=bars["match_rate"],
                min_n=min_n,
                what="the chosen action matched the agent's first recommendation",
            )
        )
        gates.extend(_per_type_gates(facts, tallies, bars["match_rate"]))
        gates.extend(_eval_gates(facts, tallies, bars["eval_match_rate"]))
    elif target == Rung.L4:
        gates.append(_probe_gate(tallies, bars))
        approval = rate_gate(
            name="approval_rate",
            label="Approval rate",
            count=tallies.approval,
            bar=bars["approval_rate"],
            min_n=min_n,
            what="reviewers approved the agent's action",
        )
        probes = gates[-1]
        if approval.verdict == PASS and probes.verdict != PASS:
            # An approval rate is evidence only when reviewers are shown to look.
            approval = Gate(
                **{
                    **approval.as_json(),
                    "verdict": INSUFFICIENT,
                    "sentence": approval.sentence
                    + " It does not count yet: reviewers' attention is not shown by the probes.",
                }
            )
        gates.append(approval)
        gates.extend(_operating_gates(tallies, bars, min_n))
        gates.append(_outcome_gate(tallies, bars))
        gates.append(_shadow_gate(tallies, bars["shadow_agreement"]))
        gates.append(_policy_gate(tallies))
        gates.append(_drill_gate(tallies, facts, bars["drill_max_age_days"]))
    elif target == Rung.L5:
        gates.append(
            rate_gate(
                name="audit_agreement",
                label="Audit agreement",
                count=tallies.audit,
                bar=bars["audit_agreement"],
                min_n=SAMPLE_MIN_N,
                what="audited allowed actions were judged correct",
            )
        )
        gates.append(_sustained_gate(tallies, bars["audit_agreement"]))
        gates.extend(_operating_gates(tallies, bars, min_n))
        gates.append(_outcome_gate(tallies, bars))
        gates.append(_policy_gate(tallies))
        gates.append(_drill_gate(tallies, facts, bars["drill_max_age_days"], under_load=True))
    gates.append(_time_gate(facts, bars["time_at_rung_days"]))
    return gates


def _leave_l0_gates(facts: WorkflowFacts) -> list[Gate]:
    has_action = bool(facts.action_types)
    return [
        Gate(
            name="action_type",
            label="An action type",
            verdict=PASS if has_action else FAIL,
            sentence=(
                f"Defines {len(facts.action_types)} action type(s)."
                if has_action
                else "Defines no action type: an agent has nothing to propose."
            ),
        ),
        Gate(
            name="owner",
            label="A named owner",
            verdict=PASS if facts.has_owner else FAIL,
            sentence="Has a named owner." if facts.has_owner else "Has no named owner.",
        ),
    ]


def _per_type_gates(facts: WorkflowFacts, tallies: Tallies, bar: float) -> list[Gate]:
    """The aggregate can hide a dangerous tail: each proposed action type with volume
    is judged on its own, and any one below the bar fails the climb."""
    gates = []
    for action in sorted(tallies.match_by_type):
        count = tallies.match_by_type[action]
        gate = rate_gate(
            name=f"match_rate:{action}",
            label=f"Match rate, {action}",
            count=count,
            bar=bar,
            min_n=PER_TYPE_MIN_N,
            what=f"proposing {action}, the chosen action matched",
        )
        if gate.verdict == INSUFFICIENT:
            # Too rare to judge from traffic: the eval set covers it (below).
            gate = Gate(**{**gate.as_json(), "required": False})
        gates.append(gate)
    return gates


def _eval_gates(facts: WorkflowFacts, tallies: Tallies, bar: float) -> list[Gate]:
    types = sorted(facts.action_types)
    missing = [t for t in types if not tallies.eval_cases_by_type.get(t)]
    cases = sum(tallies.eval_cases_by_type.get(t, 0) for t in types)
    gates = [
        Gate(
            name="eval_coverage",
            label="Eval set coverage",
            verdict=FAIL if missing else PASS,
            sentence=(
                f"The eval set has {_num(cases)} cases; no case for: {', '.join(missing)}."
                if missing
                else f"The eval set has {_num(cases)} cases covering all {len(types)} action types."
            ),
            value=float(len(types) - len(missing)),
            n=len(types),
        )
    ]
    latest = tallies.eval_pass
    if latest is None:
        gates.append(
            Gate(
                name="eval_match_rate",
                label="Latest eval pass",
                verdict=INSUFFICIENT,
                sentence="No eval pass has been run yet.",
                bar=bar,
            )
        )
        return gates
    short = [
        t
        for t in types
        if latest.by_type.get(t) is None
        or latest.by_type[t].n == 0
        or latest.by_type[t].k / latest.by_type[t].n < bar
    ]
    total = Count(
        sum(c.k for c in latest.by_type.values()), sum(c.n for c in latest.by_type.values())
    )
    worst = min(
        (latest.by_type[t].rate for t in types if latest.by_type.get(t) and latest.by_type[t].n),
        default=None,
    )
    gates.append(
        Gate(
            name="eval_match_rate",
            label="Latest eval pass",
            verdict=FAIL if short else PASS,
            sentence=(
                f"Eval pass '{latest.label}': {_num(total.k)} of {_num(total.n)} cases "
                f"matched ({_pct(total.rate)}); every action type needs {_pct(bar)}"
                + (f"; below it: {', '.join(short)}." if short else ".")
            ),
            value=worst,
            n=total.n,
            bar=bar,
        )
    )
    return gates


def _probe_gate(tallies: Tallies, bars: dict) -> Gate:
    count, bar, min_n = tallies.probes, bars["probe_catch_rate"], int(bars["probe_min"])
    verdict = INSUFFICIENT if count.n < min_n else PASS if count.k / count.n >= bar else FAIL
    return Gate(
        name="probe_catch_rate",
        label="Attention probes caught",
        verdict=verdict,
        sentence=(
            f"Reviewers rejected {_num(count.k)} of {_num(count.n)} known-wrong probes "
            f"({_pct(count.rate)}); at least {_num(min_n)} probes and {_pct(bar)} are needed."
        ),
        value=count.rate,
        n=count.n,
        bar=bar,
    )


def _operating_gates(tallies: Tallies, bars: dict, min_n: int) -> list[Gate]:
    return [
        rate_gate(
            name="failure_rate",
            label="Failure rate (incl. silent)",
            count=tallies.failure,
            bar=bars["failure_rate_max"],
            min_n=SAMPLE_MIN_N,
            what="executed, failed or were later labelled wrong:",
            upper_bar=True,
        ),
        _replay_gate(tallies.replay, bars["replay_coverage"]),
    ]


def _replay_gate(count: Count, bar: float) -> Gate:
    """Coverage is a census, not a sample: every executed run is checked, so it is
    judged on the rate itself (100% means none missing)."""
    verdict = INSUFFICIENT if count.n == 0 else PASS if count.k >= bar * count.n else FAIL
    return Gate(
        name="replay_coverage",
        label="Replay coverage",
        verdict=verdict,
        sentence=(
            f"{_num(count.k)} of {_num(count.n)} executed runs replay complete and verified "
            f"({_pct(count.rate)}); {_pct(bar)} is needed."
        ),
        value=count.rate,
        n=count.n,
        bar=bar,
    )


def _outcome_gate(tallies: Tallies, bars: dict) -> Gate:
    """The business metric moved the right way (or held): its mean over the window at
    this rung against its mean over the baseline period before it."""
    outcome, min_points = tallies.outcome, int(bars["outcome_min_points"])
    name, label = "business_outcome", "Business outcome"
    if outcome is None:
        return Gate(
            name=name,
            label=label,
            verdict=INSUFFICIENT,
            sentence="No business metric is named for this workflow.",
            bar=float(min_points),
        )
    better = "higher" if outcome.direction == "up" else "lower"
    if (
        outcome.baseline_n < min_points
        or outcome.current_n < min_points
        or outcome.baseline_mean is None
        or outcome.current_mean is None
    ):
        return Gate(
            name=name,
            label=label,
            verdict=INSUFFICIENT,
            sentence=(
                f"'{outcome.metric}' ({better} is better) has {outcome.baseline_n} baseline "
                f"and {outcome.current_n} current points; {min_points} of each are needed."
            ),
            n=outcome.current_n,
            bar=float(min_points),
        )
    delta = outcome.current_mean - outcome.baseline_mean
    ok = delta >= 0 if outcome.direction == "up" else delta <= 0
    return Gate(
        name=name,
        label=label,
        verdict=PASS if ok else FAIL,
        sentence=(
            f"'{outcome.metric}' averaged {outcome.current_mean:.4g} over {outcome.current_n} "
            f"points at this rung against {outcome.baseline_mean:.4g} over "
            f"{outcome.baseline_n} baseline points ({better} is better): "
            f"{'held or moved the right way' if ok else 'moved the wrong way'}."
        ),
        value=outcome.current_mean,
        n=outcome.current_n,
        bar=outcome.baseline_mean,
    )


def _shadow_gate(tallies: Tallies, bar: float) -> Gate:
    if tallies.shadow is None:
        return Gate(
            name="shadow_agreement",
            label="Draft policy agreement",
            verdict=INSUFFICIENT,
            sentence="No draft policy has been evaluated in shadow yet.",
            bar=bar,
        )
    return rate_gate(
        name="shadow_agreement",
        label="Draft policy agreement",
        count=tallies.shadow,
        bar=bar,
        min_n=SAMPLE_MIN_N,
        what=f"the draft policy v{tallies.shadow_version} would have settled alone, it agreed "
        "with the reviewer in",
    )


def _policy_gate(tallies: Tallies) -> Gate:
    if tallies.policy_version is None:
        verdict, sentence = (
            FAIL,
            "No written policy envelope: L4 needs one, in force from the climb.",
        )
    elif tallies.policy_problems:
        verdict = FAIL
        sentence = f"Policy v{tallies.policy_version} has problems: " + "; ".join(
            tallies.policy_problems
        )
    else:
        verdict = PASS
        sentence = f"Policy v{tallies.policy_version} is written, every rule mapped to a control."
    return Gate(name="policy", label="Written policy", verdict=verdict, sentence=sentence)


def _drill_gate(
    tallies: Tallies, facts: WorkflowFacts, max_age_days: float, *, under_load: bool = False
) -> Gate:
    """The workflow's latest finished rollback drill (docs/drills.md) passed within
    `max_age_days`; for L5 it must also have run under load."""
    drill = tallies.drill
    need = f"a drill passed in the last {max_age_days:g} days" + (
        ", run under load," if under_load else ""
    )
    if drill is None:
        return Gate(
            name="rollback_drill",
            label="Rollback drill",
            verdict=INSUFFICIENT,
            sentence=f"No rollback drill has been run; {need} is needed.",
            bar=max_age_days,
        )
    at = drill["at"]
    if isinstance(at, str):
        at = datetime.fromisoformat(at)
    age = max(0.0, (facts.now - at).total_seconds() / 86400)
    passed = bool(drill.get("passed"))
    loaded = bool(drill.get("under_load"))
    ok = passed and age <= max_age_days and (loaded or not under_load)
    size, seconds = drill.get("size"), drill.get("duration_seconds")
    what = f"Latest drill {age:.1f} days ago"
    if size is not None and seconds is not None:
        what += f" ({_num(size)} runs in {seconds:.1f} s)"
    what += f" {'passed' if passed else 'failed'}"
    if under_load:
        what += ", under load" if loaded else ", not under load"
    return Gate(
        name="rollback_drill",
        label="Rollback drill",
        verdict=PASS if ok else FAIL,
        sentence=f"{what}; {need} is needed.",
        value=age,
        bar=max_age_days,
    )


def _sustained_gate(tallies: Tallies, bar: float) -> Gate:
    thirds = list(tallies.audit_thirds)
    if not thirds or any(c.n == 0 for c in thirds):
        verdict = INSUFFICIENT
    else:
        verdict = PASS if all(wilson(c.k, c.n)[0] >= bar for c in thirds) else FAIL
    shown = ", ".join(f"{_pct(c.rate)} of {_num(c.n)}" for c in thirds) or "none"
    return Gate(
        name="audit_sustained",
        label="Audit agreement sustained",
        verdict=verdict,
        sentence=(
            f"Audit agreement in each third of the window (oldest first): {shown}; "
            f"each lower bound must be at least {_pct(bar)}."
        ),
        bar=bar,
    )


# -- eligibility --------------------------------------------------------------------------


@dataclass(frozen=True)
class Eligibility:
    target_rung: int | None
    eligible: bool
    reasons: tuple[str, ...]


def eligibility(facts: WorkflowFacts, gates: list[Gate]) -> Eligibility:
    """May the workflow ask for facts.rung -> facts.rung + 1? Every required gate must
    pass, and the target must not be past the workflow's max rung."""
    target = facts.rung + 1
    if target > Rung.L5:
        return Eligibility(None, False, ("L5 is the top of the ladder.",))
    reasons = []
    if target > facts.max_rung:
        reasons.append(
            f"L{target} is past this workflow's max rung (L{facts.max_rung}); "
            "only an admin can raise it."
        )
    for gate in gates:
        if gate.required and gate.verdict != PASS:
            reasons.append(f"{gate.label}: {gate.verdict}.")
    return Eligibility(target, not reasons, tuple(reasons))


def matches_first(proposal: dict, action: str, params: dict, *, canonical) -> bool:
    """Match = the chosen action equals the agent's first recommendation, type and
    params (compared as canonical JSON, `canonical`: the trace's own encoding)."""
    return action == proposal["action"] and canonical(params) == canonical(
        proposal.get("params") or {}
    )


def is_light_edit(distance: float) -> bool:
    return distance <= LIGHT_EDIT_MAX
