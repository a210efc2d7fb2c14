"""Gates as the pages show them: each gate's number, interval and bar in words, and the
small drawing of where the interval sits against the bar. Plain data in, plain data out
(templates hold no logic)."""

from ladder import gates
from ladder.rungs import Rung

# Gates whose numbers are not rates: how each is written.
_COUNTS = {"volume", "eval_coverage"}
_DAYS = {"time_at_rung", "rollback_drill"}
_PLAIN = {"business_outcome"}
# Width of the drawn bar, in SVG user units (the CSS scales it).
WIDTH = 200


def _pct(x: float | None) -> str:
    return "—" if x is None else f"{x * 100:.1f}%"


def _number(name: str, x: float | None) -> str:
    if x is None:
        return "—"
    if name in _COUNTS:
        return f"{int(x):,}"
    if name in _DAYS:
        return f"{x:.1f} days"
    if name in _PLAIN:
        return f"{x:.4g}"
    return _pct(x)


def _is_rate(gate: dict) -> bool:
    name = gate["name"].split(":")[0]
    return name not in _COUNTS | _DAYS | _PLAIN and gate.get("bar") is not None


def _drawing(gate: dict) -> dict | None:
    """x positions (0..WIDTH) of the interval, the value and the bar, for a rate."""
    if not _is_rate(gate) or gate.get("value") is None:
        return None

    def x(v: float) -> float:
        return round(max(0.0, min(1.0, v)) * WIDTH, 1)

    lower = gate.get("lower")
    upper = gate.get("upper")
    low_x = x(lower) if lower is not None else x(gate["value"])
    high_x = x(upper) if upper is not None else x(gate["value"])
    return {
        "width": WIDTH,
        "low": low_x,
        "span": round(max(high_x - low_x, 1.0), 1),
        "value": x(gate["value"]),
        "bar": x(gate["bar"]),
    }


VERDICT_WORDS = {
    gates.PASS: "pass",
    gates.FAIL: "fail",
    gates.INSUFFICIENT: "too few to judge",
    gates.MISSING: "not measured yet",
}


def gate_rows(gate_list: list[dict]) -> list[dict]:
    """One row per gate: its figures as text, its verdict in words and its drawing."""
    rows = []
    for gate in gate_list:
        name = gate["name"].split(":")[0]
        interval = ""
        if gate.get("lower") is not None and gate.get("upper") is not None:
            interval = f"{gate['lower'] * 100:.1f}\N{EN DASH}{_pct(gate['upper'])}"
        rows.append(
            {
                **gate,
                "number": _number(name, gate.get("value")),
                "interval": interval,
                "bar_text": _number(name, gate.get("bar")) if gate.get("bar") is not None else "",
                "verdict_words": VERDICT_WORDS.get(gate["verdict"], gate["verdict"]),
                "drawing": _drawing(gate),
            }
        )
    return rows


def verdict_counts(gate_list: list[dict]) -> dict[str, int]:
    """How many gates passed, failed, lacked volume or are not measured: required ones
    only, as eligibility counts them."""
    counts = dict.fromkeys(gates.VERDICTS, 0)
    for gate in gate_list:
        if gate.get("required", True):
            counts[gate["verdict"]] = counts.get(gate["verdict"], 0) + 1
    return counts


def ladder_rungs(*, rung: int, max_rung: int) -> list[dict]:
    """L0..L5 for drawing the ladder: the current rung marked, rungs past the max
    marked out of reach."""
    return [
        {
            "value": value,
            "label": label,
            "short": label[3:],
            "current": value == rung,
            "beyond": value > max_rung,
        }
        for value, label in Rung.choices
    ]


# Evidence keys shown in the rung history, with how to print them.
CHANGE_FIGURES = (
    ("breaker", "tripped on", str),
    ("failures", "failures", str),
    ("executed", "executed runs", str),
    ("rate", "rate", lambda v: f"{v:.1%}"),
    ("lower", "95% lower bound", lambda v: f"{v:.1%}"),
    ("coverage", "replay coverage", lambda v: f"{v:.1%}"),
    ("bound", "limit", lambda v: f"{v:.1%}" if isinstance(v, float) else str(v)),
    ("age_days", "eval age (days)", lambda v: f"{v:.1f}"),
    ("promotion_request", "promotion request", lambda v: f"#{v}"),
    ("valid_until", "certificate valid until", str),
)


def change_figures(evidence) -> list[tuple[str, str]]:
    """The numbers a rung change rests on, as label/value pairs for the history."""
    if not isinstance(evidence, dict):
        return []
    figures = []
    for key, label, show in CHANGE_FIGURES:
        value = evidence.get(key)
        if value is None:
            continue
        try:
            figures.append((label, show(value)))
        except (TypeError, ValueError):
            figures.append((label, str(value)))
    return figures
