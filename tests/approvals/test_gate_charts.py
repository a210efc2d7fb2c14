"""The gate charts' geometry, checked against coordinates worked out by hand, and the
charts on the workflow page.

The box: 320 x 120 user units, plot from x=44 to x=312 (268 wide) and y=8 to y=100
(92 high). A value v in a domain lo..hi sits at y = 8 + (1 - (v - lo) / (hi - lo)) * 92.
"""

from datetime import UTC, datetime, timedelta

import pytest

from approvals import gate_charts
from approvals.gate_charts import chart, chart_names, charts, geometry, series, x_of, y_domain

T0 = datetime(2026, 3, 1, 2, 0, tzinfo=UTC)


def approval(value, lower, upper, bar=0.95, verdict="pass"):
    return {
        "name": "approval_rate",
        "label": "Approval rate",
        "value": value,
        "n": 1000,
        "lower": lower,
        "upper": upper,
        "bar": bar,
        "verdict": verdict,
        "sentence": "…",
        "required": True,
    }


def test_the_plot_box_is_what_the_hand_computations_assume():
    assert (gate_charts.LEFT, gate_charts.PLOT_W) == (44, 268)
    assert (gate_charts.TOP, gate_charts.PLOT_H) == (8, 92)


def test_a_rate_is_drawn_with_its_band_and_bar_at_hand_computed_coordinates():
    rows = [
        (T0 + timedelta(days=1), [approval(0.98, 0.97, 0.99)]),
        (T0, [approval(0.96, 0.94, 0.975)]),  # out of order: sorted by time
    ]
    points = series(rows, "approval_rate")
    # lowest seen 0.94 → down to 0.90, highest 0.99 → up to 1.00 (steps of 5 points)
    assert y_domain("approval_rate", points) == (0.9, 1.0)
    shape = geometry("approval_rate", points)
    # y(0.96) = 8 + 0.4*92 = 44.8; y(0.98) = 8 + 0.2*92 = 26.4
    assert shape["value_line"] == "44,44.8 312,26.4"
    # along the uppers (0.975 → 31, 0.99 → 17.2), back along the lowers (0.97 → 35.6,
    # 0.94 → 63.2)
    assert shape["band"] == "44,31 312,17.2 312,35.6 44,63.2"
    # the bar 0.95 → 8 + 0.5*92 = 54
    assert shape["bar_line"] == "44,54 312,54"
    assert (shape["dot_x"], shape["dot_y"]) == (312, 26.4)


def test_snapshots_sit_across_the_plot_by_time_not_by_index():
    # day 1 of a 4-day span: 44 + 268/4 = 111
    assert x_of(T0 + timedelta(days=1), T0, T0 + timedelta(days=4)) == 111.0
    assert x_of(T0, T0, T0) == 178.0  # a single snapshot: the middle, 44 + 134


def test_one_snapshot_is_drawn_across_the_plot_with_its_dot_in_the_middle():
    volume = {"name": "volume", "label": "Volume", "value": 150, "bar": 300, "verdict": "fail"}
    points = series([(T0, [volume])], "volume")
    assert y_domain("volume", points) == (0.0, 300.0)
    shape = geometry("volume", points)
    assert shape["value_line"] == "44,54 312,54"  # 150 of 300: 8 + 0.5*92
    assert shape["bar_line"] == "44,8 312,8"
    assert shape["band"] == ""
    assert (shape["dot_x"], shape["dot_y"]) == (178.0, 54.0)


def test_the_y_domain_of_each_kind_of_number():
    def pts(name, *gates):
        return series([(T0 + timedelta(hours=i), [g]) for i, g in enumerate(gates)], name)

    failure = {"name": "failure_rate", "value": 0.01, "lower": 0.002, "upper": 0.03, "bar": 0.05}
    assert y_domain("failure_rate", pts("failure_rate", failure)) == (0.0, 0.05)
    outcome = [{"name": "business_outcome", "value": v, "bar": 11.0} for v in (10.0, 12.0)]
    lo, hi = y_domain("business_outcome", pts("business_outcome", *outcome))
    assert (round(lo, 6), round(hi, 6)) == (9.8, 12.2)  # span 2, widened by 0.2 each side
    full = {"name": "replay_coverage", "value": 1.0, "bar": 1.0}
    assert y_domain("replay_coverage", pts("replay_coverage", full)) == (0.95, 1.0)


def test_a_value_outside_the_domain_is_held_at_the_edge():
    assert gate_charts.y_of(1.2, 0.0, 1.0) == 8.0
    assert gate_charts.y_of(-1.0, 0.0, 1.0) == 100.0


def test_only_gates_with_a_number_are_charted_in_the_latest_snapshots_order():
    latest = [
        {"name": "volume", "value": 10, "bar": 300},
        {"name": "time_at_rung", "value": 3.0, "bar": 14},
        {"name": "approval_rate", "value": 0.9, "bar": 0.95},
        {"name": "policy", "value": None, "bar": None},
        {"name": "failure_rate", "value": None, "bar": 0.05},
    ]
    assert chart_names(latest) == ["volume", "approval_rate", "failure_rate"]


def test_a_snapshot_without_the_gate_or_its_number_leaves_a_gap():
    rows = [
        (T0, [approval(0.9, 0.85, 0.93)]),
        (T0 + timedelta(days=1), [{"name": "volume", "value": 5}]),
        (T0 + timedelta(days=2), [approval(None, None, None)]),
        (T0 + timedelta(days=3), [approval(0.97, 0.96, 0.98)]),
    ]
    assert [p.value for p in series(rows, "approval_rate")] == [0.9, 0.97]


def test_a_chart_tells_screen_readers_the_latest_value_and_lists_its_numbers_newest_first():
    rows = [
        (T0, [approval(0.96, 0.94, 0.975)]),
        (T0 + timedelta(days=1), [approval(0.98, 0.97, 0.99)]),
    ]
    drawn = chart("approval_rate", series(rows, "approval_rate"))
    assert drawn["words"] == (
        "Approval rate: latest 98.0% (95% interval 97.0\N{EN DASH}99.0%), bar 95.0%, pass; "
        "2 snapshots from 2026-03-01 to 2026-03-02."
    )
    assert [r["number"] for r in drawn["table"]] == ["98.0%", "96.0%"]
    assert (drawn["lo_text"], drawn["hi_text"]) == ("90%", "100%")


def test_no_snapshots_no_charts():
    assert charts([]) == []


# -- on the workflow page ------------------------------------------------------------------


@pytest.mark.django_db
def test_the_workflow_page_charts_the_latest_snapshots_only(client, people, flows, monkeypatch):
    from ladder import gates
    from tests.approvals.test_promotion_pages import snapshot_of

    wf = flows["l3"]
    for k in (4000, 4050, 4100, 4120):
        snapshot_of(wf, volume=4200, approval=gates.Count(k, 4200))
    monkeypatch.setattr(gate_charts, "CHART_SNAPSHOTS", 3)
    client.force_login(people["rev"])
    page = client.get(f"/workflows/{wf.slug}/").content.decode()
    assert 'data-chart="approval_rate"' in page
    assert 'data-chart="volume"' in page
    assert 'aria-label="Approval rate: latest 98.1%' in page
    assert "over the latest 3 snapshots" in page
    chart_html = page.split('data-chart="approval_rate"')[1].split("</figure>")[0]
    assert chart_html.count("<tr><td>") == 3  # the oldest (95.2%) is past the bound
    assert "95.2%" not in chart_html
    # A reviewer has no dossier link; an owner has.
    assert 'id="dossier-link"' not in page
    client.force_login(people["owner"])
    assert 'id="dossier-link"' in client.get(f"/workflows/{wf.slug}/").content.decode()


@pytest.mark.django_db
def test_a_workflow_without_snapshots_says_the_charts_start_with_the_first_recompute(
    client, people, flows
):
    client.force_login(people["rev"])
    page = client.get(f"/workflows/{flows['l1'].slug}/").content.decode()
    assert 'id="no-gate-charts"' in page
