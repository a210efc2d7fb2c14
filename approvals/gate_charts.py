"""The gate history drawn on the workflow page: one small server-side SVG chart per gate
metric, from the stored gate snapshots (append-only, one per recompute).

The geometry is computed here from plain rows, so it is tested with hand-computed
coordinates and the template only prints numbers. No JavaScript, nothing fetched.
"""

import math
from dataclasses import dataclass
from datetime import datetime

from approvals.gate_display import gate_rows
from approvals.roles import Access
from ladder.models import GateSnapshot, Workflow

# The latest N snapshots: enough for a quarter of nightly recomputes, bounded whatever
# the number of on-demand recomputes.
CHART_SNAPSHOTS = 90

# Drawing box, in SVG user units (the CSS scales it to the column).
WIDTH = 320
HEIGHT = 120
LEFT = 44  # room for the y labels
RIGHT = 8
TOP = 8
BOTTOM = 20  # room for the dates
PLOT_W = WIDTH - LEFT - RIGHT
PLOT_H = HEIGHT - TOP - BOTTOM

# Gates worth a line over time. Days at rung and eval coverage only ever grow, and the
# pass/fail gates (policy, owner...) carry no number.
_RATE_STEP = 0.05
_SKIP = {"time_at_rung", "rollback_drill", "eval_coverage"}
_COUNTS = {"volume"}
_PLAIN = {"business_outcome"}


@dataclass(frozen=True)
class Point:
    at: datetime
    value: float
    lower: float | None
    upper: float | None
    bar: float | None
    gate: dict


def _base(name: str) -> str:
    return name.split(":")[0]


def _is_rate(name: str) -> bool:
    return _base(name) not in _COUNTS | _PLAIN


def chart_names(latest_gates: list[dict]) -> list[str]:
    """The gates to chart, in the order the latest snapshot lists them: every gate with
    a number, but those that only count days or coverage of the eval set."""
    return [
        gate["name"]
        for gate in latest_gates
        if _base(gate["name"]) not in _SKIP
        and (gate.get("value") is not None or gate.get("bar") is not None)
    ]


def series(rows: list[tuple[datetime, list[dict]]], name: str) -> list[Point]:
    """The points of one gate, oldest first, from (computed_at, gates) rows; snapshots
    where the gate is absent or has no number are left out."""
    points = []
    for at, gate_list in sorted(rows, key=lambda row: row[0]):
        for gate in gate_list:
            if gate.get("name") == name and gate.get("value") is not None:
                points.append(
                    Point(
                        at=at,
                        value=float(gate["value"]),
                        lower=_float(gate.get("lower")),
                        upper=_float(gate.get("upper")),
                        bar=_float(gate.get("bar")),
                        gate=gate,
                    )
                )
                break
    return points


def _float(x) -> float | None:
    return None if x is None else float(x)


def y_domain(name: str, points: list[Point]) -> tuple[float, float]:
    """The value range the y axis spans.

    Rates: from every value, interval end and bar, widened to whole steps of 5 points
    and held within 0..100%, so a 97-99% history is not drawn flat against the top.
    Counts: from 0 to the largest value or bar. Other numbers (the business metric):
    their smallest to largest, widened by 10% of the span (or 1 when flat).
    """
    seen = [p.value for p in points]
    seen += [x for p in points for x in (p.lower, p.upper, p.bar) if x is not None]
    lo, hi = min(seen), max(seen)
    if _is_rate(name):
        steps = round(1 / _RATE_STEP)
        lo = max(0.0, math.floor(lo * steps + 1e-9) / steps)
        hi = min(1.0, math.ceil(hi * steps - 1e-9) / steps)
        if hi <= lo:
            lo, hi = (max(0.0, hi - _RATE_STEP), hi) if hi > 0 else (0.0, _RATE_STEP)
        return round(lo, 4), round(hi, 4)
    if _base(name) in _COUNTS:
        return 0.0, max(hi, 1.0)
    pad = (hi - lo) * 0.1 if hi > lo else 1.0
    return lo - pad, hi + pad


def x_of(at: datetime, start: datetime, end: datetime) -> float:
    """Across the plot by time; a single snapshot (start == end) sits in the middle."""
    if end <= start:
        return round(LEFT + PLOT_W / 2, 1)
    share = (at - start).total_seconds() / (end - start).total_seconds()
    return round(LEFT + share * PLOT_W, 1)


def y_of(value: float, lo: float, hi: float) -> float:
    """Down the plot: `hi` at the top edge, `lo` at the bottom, clamped to the box."""
    share = (min(max(value, lo), hi) - lo) / (hi - lo)
    return round(TOP + (1 - share) * PLOT_H, 1)


def _pairs(coords: list[tuple[float, float]]) -> str:
    return " ".join(f"{x:g},{y:g}" for x, y in coords)


def geometry(name: str, points: list[Point]) -> dict:
    """Everything the SVG draws, in user units: the value line, the 95% band (a polygon
    along the upper bounds and back along the lower ones), the bar as a line (it may move
    between snapshots), the latest point, and the axis labels' positions."""
    lo, hi = y_domain(name, points)
    start, end = points[0].at, points[-1].at
    xs = [x_of(p.at, start, end) for p in points]
    if len(points) == 1:
        # One snapshot: its bar and value drawn across the plot, not as a dot alone.
        line_xs = [float(LEFT), float(LEFT + PLOT_W)]
        line_points = [points[0], points[0]]
    else:
        line_xs, line_points = xs, points
    placed = list(zip(line_xs, line_points, strict=True))
    value_line = _pairs([(x, y_of(p.value, lo, hi)) for x, p in placed])
    banded = [(x, p) for x, p in placed if p.lower is not None]
    band = ""
    if banded and all(p.upper is not None for _, p in banded):
        top = [(x, y_of(p.upper, lo, hi)) for x, p in banded]
        bottom = [(x, y_of(p.lower, lo, hi)) for x, p in reversed(banded)]
        band = _pairs(top + bottom)
    barred = [(x, y_of(p.bar, lo, hi)) for x, p in placed if p.bar is not None]
    latest = points[-1]
    return {
        "width": WIDTH,
        "height": HEIGHT,
        "left": LEFT,
        "right": LEFT + PLOT_W,
        "top": TOP,
        "bottom": TOP + PLOT_H,
        "plot_w": PLOT_W,
        "plot_h": PLOT_H,
        "label_x": LEFT - 4,
        "date_y": HEIGHT - 6,
        "value_line": value_line,
        "band": band,
        "bar_line": _pairs(barred) if len(barred) >= 2 else "",
        "dot_x": xs[-1],
        "dot_y": y_of(latest.value, lo, hi),
        "lo": lo,
        "hi": hi,
        "lo_y": TOP + PLOT_H,
        "hi_y": TOP,
    }


def _axis_text(name: str, x: float) -> str:
    if _is_rate(name):
        return f"{x * 100:g}%"
    if _base(name) in _COUNTS:
        return f"{int(x):,}"
    return f"{x:.4g}"


def chart(name: str, points: list[Point]) -> dict:
    """One chart as the partial prints it: geometry, words for screen readers, and the
    rows of its data table."""
    rows = [(p, gate_rows([p.gate])[0]) for p in points]
    latest = rows[-1][1]
    words = f"{latest['label']}: latest {latest['number']}"
    if latest["interval"]:
        words += f" (95% interval {latest['interval']})"
    if latest["bar_text"]:
        words += f", bar {latest['bar_text']}"
    words += f", {latest['verdict_words']}; {len(points)} snapshot"
    words += "" if len(points) == 1 else "s"
    words += f" from {points[0].at:%Y-%m-%d} to {points[-1].at:%Y-%m-%d}."
    shape = geometry(name, points)
    return {
        "name": name,
        "label": latest["label"],
        "words": words,
        "latest": latest,
        "banded": bool(shape["band"]),
        "barred": bool(shape["bar_line"]) or points[-1].bar is not None,
        "lo_text": _axis_text(name, shape["lo"]),
        "hi_text": _axis_text(name, shape["hi"]),
        "first_day": f"{points[0].at:%Y-%m-%d}",
        "last_day": f"{points[-1].at:%Y-%m-%d}",
        "shape": shape,
        "table": [
            {
                "at": f"{p.at:%Y-%m-%d %H:%M}",
                "number": row["number"],
                "interval": row["interval"],
                "bar": row["bar_text"],
                "verdict": row["verdict_words"],
            }
            for p, row in reversed(rows)
        ],
    }


def charts(rows: list[tuple[datetime, list[dict]]]) -> list[dict]:
    """Every chart for (computed_at, gates) rows in any order."""
    if not rows:
        return []
    latest = max(rows, key=lambda row: row[0])[1]
    found = []
    for name in chart_names(latest):
        points = series(rows, name)
        if points:
            found.append(chart(name, points))
    return found


def gate_charts_context(*, workflow: Workflow, access: Access) -> dict:
    """What `_gate_charts.html` needs: the charts over the latest snapshots, and whether
    the person may open the evidence dossier (owners and compliance)."""
    rows = list(
        GateSnapshot.objects.filter(workflow=workflow)
        .order_by("-computed_at", "-id")
        .values_list("computed_at", "gates")[:CHART_SNAPSHOTS]
    )
    return {
        "gate_charts": charts(rows),
        "gate_chart_snapshots": len(rows),
        "may_dossier": workflow.pk in access.own | access.comply,
    }
