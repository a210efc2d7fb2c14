"""Drift checks for L4/L5 workflows: is the agent still doing what it did when it earned
its rung? A recent window of runs is compared with a baseline window before it on four
figures (docs/drift.md defines each exactly as computed here):

- action mix: the chi-square test of homogeneity over the proposed action types;
- value distribution: the population stability index (PSI) over baseline deciles;
- escalation rate: the share of policy-decided runs the policy escalated;
- audit agreement: the share of audited runs an auditor found correct.

Plain functions over plain counts, no database: traces/services/drift.py counts the runs.
Python's standard library only (no scipy): the chi-square p-value comes from the
regularized upper incomplete gamma function written out below.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from dataclasses import asdict, dataclass, field
from typing import Any

from ladder.gates import Count

DEFAULT_DRIFT_BOUNDS: dict[str, Any] = {
    # The recent window: the last N days (never before the workflow's current rung began).
    "recent_days": 7,
    # The baseline: the N days just before the recent window.
    "baseline_days": 28,
    # A check is judged only when both windows hold at least this many runs for it
    # (proposals for the action mix, runs with a value for the value distribution,
    # policy-decided runs for the escalation rate): fewer is "insufficient", never an alert.
    "min_runs": 50,
    # Audits are a sample, so fewer are needed: audited runs in each window.
    "min_audits": 30,
    # Significance: the action mix, and each rate change, must be unlikely under "nothing
    # changed" (p below this) to count as drift.
    "p_max": 0.01,
    # PSI above 0.25 is the conventional "major shift" (0.1-0.25: moderate).
    "psi_max": 0.25,
    "psi_bins": 10,
    # Absolute change of the escalation rate, either way (more escalations: the agent
    # proposes outside its envelope more often; fewer: it may have learnt its edges).
    "escalation_change_max": 0.10,
    # Absolute drop of the audit agreement (a rise is no alarm).
    "audit_drop_max": 0.05,
}

_KINDS = {
    "recent_days": int,
    "baseline_days": int,
    "min_runs": int,
    "min_audits": int,
    "p_max": float,
    "psi_max": float,
    "psi_bins": int,
    "escalation_change_max": float,
    "audit_drop_max": float,
}
_RANGES: dict[str, tuple[float, float, str]] = {
    "recent_days": (1, 90, "a whole number of days from 1 to 90"),
    "baseline_days": (1, 365, "a whole number of days from 1 to 365"),
    "min_runs": (1, 100_000, "a whole number from 1 to 100000"),
    "min_audits": (1, 100_000, "a whole number from 1 to 100000"),
    "p_max": (1e-9, 0.5, "more than 0 and at most 0.5"),
    "psi_max": (1e-6, 10, "more than 0 and at most 10"),
    "psi_bins": (2, 50, "a whole number from 2 to 50"),
    "escalation_change_max": (1e-6, 1, "more than 0 and at most 1"),
    "audit_drop_max": (1e-6, 1, "more than 0 and at most 1"),
}

# A bin that holds none of a window's values gets this share instead of 0, so that
# ln(r/b) is defined; the shares are not renormalised (docs/drift.md).
PSI_EPSILON = 1e-4
# Cochran's rule of thumb: the chi-square approximation needs expected counts of about 5
# or more, so rarer action types are pooled into one category first.
CHI_SQUARE_MIN_EXPECTED = 5.0
POOLED = "(rare types pooled)"

OK = "ok"
BREACH = "breach"
INSUFFICIENT = "insufficient"


class DriftBoundsError(ValueError):
    """Drift bounds that are not usable, every problem named."""


def drift_bounds_validate(overrides: Any) -> dict:
    """Check per-workflow overrides: known names, the right kind, sane ranges."""
    if overrides in (None, ""):
        return {}
    if not isinstance(overrides, dict):
        raise DriftBoundsError('drift bounds must be an object such as {"psi_max": 0.2}')
    problems = []
    for key, value in overrides.items():
        kind = _KINDS.get(key)
        if kind is None:
            problems.append(f"unknown bound {key!r} (known: {', '.join(sorted(_KINDS))})")
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            problems.append(f"{key} must be a number")
            continue
        low, high, words = _RANGES[key]
        whole = isinstance(value, int) or float(value).is_integer()
        if not math.isfinite(value) or not low <= value <= high or (kind is int and not whole):
            problems.append(f"{key} must be {words}")
    if problems:
        raise DriftBoundsError("; ".join(problems))
    return {k: (int(v) if _KINDS[k] is int else float(v)) for k, v in overrides.items()}


def drift_bounds_for(overrides: Any) -> dict:
    """The defaults with the workflow's overrides (invalid overrides are ignored here: the
    admin refuses them when saved, and a nightly check must never fail to judge)."""
    try:
        valid = drift_bounds_validate(overrides)
    except DriftBoundsError:
        valid = {}
    return {**DEFAULT_DRIFT_BOUNDS, **valid}


# -- distributions ------------------------------------------------------------------------

_EPS = 1e-15
_TINY = 1e-300
_MAX_ITER = 10_000


def gamma_q(a: float, x: float) -> float:
    """Q(a, x) = Γ(a, x) / Γ(a), the regularized upper incomplete gamma function, a > 0.

    Below x = a + 1 the series of the lower function P converges fast and Q = 1 - P;
    above it, the continued fraction of Q does (evaluated by the modified Lentz method).
    Both share the prefactor e^-x x^a / Γ(a), taken through logarithms."""
    if a <= 0:
        raise ValueError("a must be positive")
    if x <= 0:
        return 1.0
    log_prefactor = -x + a * math.log(x) - math.lgamma(a)
    if x < a + 1:
        # P(a, x) = e^-x x^a / Γ(a) · Σ_n x^n / (a (a+1) … (a+n))
        term = total = 1.0 / a
        n = a
        for _ in range(_MAX_ITER):
            n += 1
            term *= x / n
            total += term
            if abs(term) < abs(total) * _EPS:
                break
        return max(0.0, 1.0 - total * math.exp(log_prefactor))
    # Q(a, x) = e^-x x^a / Γ(a) · 1/(x+1-a- 1(1-a)/(x+3-a- 2(2-a)/(x+5-a- …)))
    b = x + 1 - a
    c = 1 / _TINY
    d = 1 / b
    h = d
    for i in range(1, _MAX_ITER):
        an = -i * (i - a)
        b += 2
        d = an * d + b
        if abs(d) < _TINY:
            d = _TINY
        c = b + an / c
        if abs(c) < _TINY:
            c = _TINY
        d = 1 / d
        delta = d * c
        h *= delta
        if abs(delta - 1) < _EPS:
            break
    return min(1.0, math.exp(log_prefactor) * h)


def chi2_sf(statistic: float, dof: int) -> float:
    """P(X >= statistic) for X chi-square distributed with `dof` degrees of freedom."""
    if dof <= 0:
        return 1.0
    return gamma_q(dof / 2, statistic / 2)


def normal_two_sided_p(z: float) -> float:
    """P(|Z| >= |z|) for a standard normal Z."""
    return math.erfc(abs(z) / math.sqrt(2))


# -- the statistics -----------------------------------------------------------------------


def chi_square(
    baseline_counts: dict[str, int],
    recent_counts: dict[str, int],
    *,
    min_expected: float = CHI_SQUARE_MIN_EXPECTED,
) -> tuple[float, int, float]:
    """The chi-square test of homogeneity of two windows' category counts: (statistic,
    degrees of freedom, p-value).

    The 2-by-k table has a row per window and a column per category (the union of both;
    a category with no runs in either is dropped). Expected count E = row total * column
    total / grand total; statistic = Σ (O - E)² / E over the 2k cells; dof = k - 1;
    p = Q((k-1)/2, statistic/2). Categories whose expected count is below `min_expected`
    in either row are first pooled into one (kept only if it then holds runs). Fewer than
    two categories left: nothing to compare, (0.0, 0, 1.0)."""
    columns = {
        name: (baseline_counts.get(name, 0), recent_counts.get(name, 0))
        for name in sorted(set(baseline_counts) | set(recent_counts))
    }
    columns = {name: pair for name, pair in columns.items() if pair[0] + pair[1] > 0}
    rows = (sum(b for b, _ in columns.values()), sum(r for _, r in columns.values()))
    total = rows[0] + rows[1]
    if total == 0 or 0 in rows:
        return 0.0, 0, 1.0

    def expected(col_total: int) -> tuple[float, float]:
        return rows[0] * col_total / total, rows[1] * col_total / total

    if min_expected > 0:
        rare = [n for n, (b, r) in columns.items() if min(expected(b + r)) < min_expected]
        if rare:
            pooled = [sum(columns[n][i] for n in rare) for i in (0, 1)]
            columns = {n: pair for n, pair in columns.items() if n not in rare}
            columns[POOLED] = (pooled[0], pooled[1])
    k = len(columns)
    if k < 2:
        return 0.0, 0, 1.0
    statistic = 0.0
    for b, r in columns.values():
        eb, er = expected(b + r)
        statistic += (b - eb) ** 2 / eb + (r - er) ** 2 / er
    dof = k - 1
    return statistic, dof, chi2_sf(statistic, dof)


def psi_edges(baseline_values: list[float], bins: int = 10) -> list[float]:
    """The bin edges: the baseline's 1/bins, 2/bins, … quantiles by nearest rank (the
    value at position ceil(i·n/bins) of the sorted baseline, counting from 1), equal
    edges merged."""
    ordered = sorted(baseline_values)
    n = len(ordered)
    if n == 0:
        return []
    edges = {ordered[math.ceil(i * n / bins) - 1] for i in range(1, bins)}
    return sorted(edges)


def psi_shares(values: list[float], edges: list[float]) -> list[float]:
    """The share of `values` in each bin: (-inf, e1], (e1, e2], …, (em, +inf)."""
    counts = [0] * (len(edges) + 1)
    for v in values:
        counts[bisect_left(edges, v)] += 1
    n = len(values)
    return [c / n for c in counts] if n else [0.0] * len(counts)


def psi(baseline_values: list[float], recent_values: list[float], bins: int = 10) -> float:
    """The population stability index of the recent values against the baseline:
    Σ (r - b) · ln(r / b) over the bins of psi_edges, r and b the shares of each window
    in a bin, an empty bin's share taken as PSI_EPSILON."""
    if not baseline_values or not recent_values:
        return 0.0
    edges = psi_edges(baseline_values, bins)
    b_shares = psi_shares(baseline_values, edges)
    r_shares = psi_shares(recent_values, edges)
    total = 0.0
    for b, r in zip(b_shares, r_shares, strict=True):
        b = b or PSI_EPSILON
        r = r or PSI_EPSILON
        total += (r - b) * math.log(r / b)
    return total


def two_proportions(baseline: Count, recent: Count) -> tuple[float, float, float]:
    """(change, z, two-sided p) of recent.k/recent.n against baseline.k/baseline.n: the
    two-proportion z-test with the pooled proportion, z = (p_r - p_b) / sqrt(p (1 - p)
    (1/n_b + 1/n_r)). When the pooled proportion is 0 or 1 the rates are equal: z = 0,
    p = 1."""
    if baseline.n == 0 or recent.n == 0:
        return 0.0, 0.0, 1.0
    p_b = baseline.k / baseline.n
    p_r = recent.k / recent.n
    pooled = (baseline.k + recent.k) / (baseline.n + recent.n)
    se = math.sqrt(pooled * (1 - pooled) * (1 / baseline.n + 1 / recent.n))
    if se == 0:
        return p_r - p_b, 0.0, 1.0
    z = (p_r - p_b) / se
    return p_r - p_b, z, normal_two_sided_p(z)


# -- judging ------------------------------------------------------------------------------


@dataclass(frozen=True)
class DriftWindow:
    """One window's runs at L4/L5, as traces/services/drift.py counts them."""

    # Proposals per action type.
    actions: dict[str, int] = field(default_factory=dict)
    # Run.value of the runs that carry one.
    values: tuple[float, ...] = ()
    # Escalated by the policy, of the runs the policy decided (allow, escalate or deny).
    escalation: Count = field(default_factory=Count)
    # Audited correct, of the audited runs.
    audit: Count = field(default_factory=Count)


@dataclass(frozen=True)
class Check:
    name: str
    label: str
    verdict: str  # ok | breach | insufficient
    sentence: str
    value: float | None = None
    bound: float | None = None
    # The figures behind the value (counts, p-values): enough to recompute it.
    detail: dict = field(default_factory=dict)

    @property
    def breached(self) -> bool:
        return self.verdict == BREACH

    def as_json(self) -> dict:
        return {**asdict(self), "breached": self.breached}


@dataclass(frozen=True)
class DriftResult:
    checks: tuple[Check, ...]

    @property
    def breached(self) -> bool:
        return any(c.breached for c in self.checks)

    @property
    def insufficient(self) -> bool:
        """No check had enough runs to judge."""
        return all(c.verdict == INSUFFICIENT for c in self.checks)

    def breaches(self) -> list[Check]:
        return [c for c in self.checks if c.breached]


def _pct(x: float) -> str:
    return f"{x * 100:.1f}%"


def _p(p: float) -> str:
    return "p < 0.0001" if p < 0.0001 else f"p = {p:.4f}"


def _too_few(what: str, b: int, r: int, need: int) -> str:
    return (
        f"Too few to judge: {b:,} {what} in the baseline and {r:,} in the recent window; "
        f"each needs at least {need:,}."
    )


def _action_mix(baseline: DriftWindow, recent: DriftWindow, bounds: dict) -> Check:
    b_n, r_n = sum(baseline.actions.values()), sum(recent.actions.values())
    p_max = bounds["p_max"]
    detail = {"baseline": dict(baseline.actions), "recent": dict(recent.actions)}
    if min(b_n, r_n) < bounds["min_runs"]:
        return Check(
            "action_mix",
            "Action mix",
            INSUFFICIENT,
            _too_few("proposals", b_n, r_n, bounds["min_runs"]),
            bound=p_max,
            detail=detail,
        )
    statistic, dof, p = chi_square(baseline.actions, recent.actions)
    detail |= {"statistic": statistic, "dof": dof}
    breach = dof > 0 and p < p_max
    sentence = (
        f"The action types proposed in the recent window ({r_n:,} proposals) against the "
        f"baseline ({b_n:,}): chi-square {statistic:.2f} on {dof} degree"
        f"{'' if dof == 1 else 's'} of freedom, {_p(p)}; "
        + (
            f"below {p_max:g}, the mix has changed."
            if breach
            else f"drift needs p below {p_max:g}."
        )
    )
    return Check("action_mix", "Action mix", BREACH if breach else OK, sentence, p, p_max, detail)


def _values(baseline: DriftWindow, recent: DriftWindow, bounds: dict) -> Check:
    b_n, r_n = len(baseline.values), len(recent.values)
    bound = bounds["psi_max"]
    detail = {"baseline_n": b_n, "recent_n": r_n, "bins": bounds["psi_bins"]}
    if min(b_n, r_n) < bounds["min_runs"]:
        return Check(
            "value",
            "Value distribution",
            INSUFFICIENT,
            _too_few("runs with a value", b_n, r_n, bounds["min_runs"]),
            bound=bound,
            detail=detail,
        )
    edges = psi_edges(list(baseline.values), bounds["psi_bins"])
    value = psi(list(baseline.values), list(recent.values), bounds["psi_bins"])
    detail |= {
        "edges": edges,
        "baseline_shares": psi_shares(list(baseline.values), edges),
        "recent_shares": psi_shares(list(recent.values), edges),
    }
    breach = value > bound
    sentence = (
        f"The values of {r_n:,} recent runs against the baseline's {b_n:,}, binned at the "
        f"baseline's deciles: population stability index {value:.3f}; "
        + (f"above {bound:g}, a major shift." if breach else f"drift is above {bound:g}.")
    )
    return Check(
        "value", "Value distribution", BREACH if breach else OK, sentence, value, bound, detail
    )


def _rate_check(
    *,
    name: str,
    label: str,
    what: str,
    of: str,
    baseline: Count,
    recent: Count,
    bound: float,
    need: int,
    p_max: float,
    drop_only: bool,
) -> Check:
    detail = {"baseline": asdict(baseline), "recent": asdict(recent)}
    if min(baseline.n, recent.n) < need:
        return Check(
            name, label, INSUFFICIENT, _too_few(of, baseline.n, recent.n, need), bound=bound,
            detail=detail,
        )  # fmt: skip
    change, z, p = two_proportions(baseline, recent)
    detail |= {"z": z, "p": p}
    moved = -change if drop_only else abs(change)
    breach = moved > bound and p < p_max
    direction = "fell" if change < 0 else "rose" if change > 0 else "held"
    limit = f"a {'drop' if drop_only else 'change'} of more than {bound * 100:.1f} points"
    sentence = (
        f"{what} {direction} from {_pct(baseline.k / baseline.n)} ({baseline.k:,} of "
        f"{baseline.n:,}) to {_pct(recent.k / recent.n)} ({recent.k:,} of {recent.n:,}), "
        f"{_p(p)}; drift is {limit} with p below {p_max:g}" + (": breached." if breach else ".")
    )
    return Check(name, label, BREACH if breach else OK, sentence, change, bound, detail)


def drift_judge(baseline: DriftWindow, recent: DriftWindow, bounds: dict) -> DriftResult:
    """Every check of the recent window against the baseline, each with its verdict."""
    return DriftResult(
        checks=(
            _action_mix(baseline, recent, bounds),
            _values(baseline, recent, bounds),
            _rate_check(
                name="escalation_rate",
                label="Escalation rate",
                what="The share of runs the policy escalated",
                of="policy-decided runs",
                baseline=baseline.escalation,
                recent=recent.escalation,
                bound=bounds["escalation_change_max"],
                need=bounds["min_runs"],
                p_max=bounds["p_max"],
                drop_only=False,
            ),
            _rate_check(
                name="audit_agreement",
                label="Audit agreement",
                what="The share of audited runs found correct",
                of="audited runs",
                baseline=baseline.audit,
                recent=recent.audit,
                bound=bounds["audit_drop_max"],
                need=bounds["min_audits"],
                p_max=bounds["p_max"],
                drop_only=True,
            ),
        )
    )
