"""Drift checks as the workflow page shows them (docs/drift.md): each check's number and
bound in words, its verdict, its sentence. Plain data in, plain data out (templates hold
no logic)."""

from approvals.roles import Access
from ladder import drift
from ladder.models import DriftCheck, Workflow
from ladder.rungs import Rung
from traces.selectors import drift_check_latest

# Verdict -> (the CSS class the gate table uses for the same colour, the words shown).
VERDICTS = {
    drift.OK: ("pass", "no drift"),
    drift.BREACH: ("fail", "drift"),
    drift.INSUFFICIENT: ("insufficient", "too few to judge"),
}


def _points(x: float) -> str:
    return f"{x * 100:+.1f} points"


def _figures(check: dict, p_max: float) -> tuple[str, str]:
    """(the number, the bound) of one check, in words."""
    name, value, bound = check["name"], check.get("value"), check.get("bound")
    if name == "action_mix":
        number = "—" if value is None else ("p < 0.0001" if value < 0.0001 else f"p = {value:.4f}")
        return number, f"drift when p < {bound:g}"
    if name == "value":
        number = "—" if value is None else f"PSI {value:.3f}"
        return number, f"drift when PSI > {bound:g}"
    number = "—" if value is None else _points(value)
    if name == "audit_agreement":
        return number, f"drift when it drops more than {bound * 100:.1f} points (p < {p_max:g})"
    return number, f"drift when it moves more than {bound * 100:.1f} points (p < {p_max:g})"


def drift_rows(check: DriftCheck) -> list[dict]:
    p_max = check.bounds.get("p_max", drift.DEFAULT_DRIFT_BOUNDS["p_max"])
    rows = []
    for c in check.checks:
        css, words = VERDICTS.get(c["verdict"], ("missing", c["verdict"]))
        number, bound = _figures(c, p_max)
        rows.append(
            {
                "name": c["name"],
                "label": c["label"],
                "number": number,
                "bound": bound,
                "verdict": css,
                "verdict_words": words,
                "sentence": c["sentence"],
            }
        )
    return rows


def drift_panel(*, workflow: Workflow, access: Access) -> dict:
    """What approvals/_drift.html needs: the latest check, its rows, and whether the
    person may run one now (owners and compliance, at L4/L5)."""
    check = drift_check_latest(workflow=workflow)
    return {
        "drift": check,
        "drift_rows": drift_rows(check) if check is not None else [],
        "drift_breaches": "; ".join(c["label"].lower() for c in check.breached_checks)
        if check is not None
        else "",
        "drift_applies": workflow.rung >= Rung.L4,
        "drift_stale": check is not None and check.rung != workflow.rung,
        "can_check_drift": workflow.rung >= Rung.L4 and workflow.pk in access.own | access.comply,
    }
