"""The drift statistics (ladder/drift.py) against values worked out by hand, and the
p-values against printed chi-square and normal tables. No database."""

import math

import pytest

from ladder import drift
from ladder.gates import Count

# -- the chi-square distribution -----------------------------------------------------------


@pytest.mark.parametrize(
    ("statistic", "dof", "p"),
    [
        # The 5% and 1% critical values every chi-square table prints.
        (3.841, 1, 0.05),
        (5.991, 2, 0.05),
        (7.815, 3, 0.05),
        (11.345, 3, 0.01),
        (13.277, 4, 0.01),
        (18.307, 10, 0.05),
        (43.773, 30, 0.05),
    ],
)
def test_the_chi_square_tail_matches_the_printed_tables(statistic, dof, p):
    # The tables round the critical values to 3 decimals: p agrees to about 1e-4.
    assert drift.chi2_sf(statistic, dof) == pytest.approx(p, abs=2e-4)


@pytest.mark.parametrize("x", [0.01, 0.5, 1.0, 3.0, 9.0, 25.0, 80.0])
def test_the_chi_square_tail_matches_its_closed_forms(x):
    # dof 1: P(X >= x) = erfc(sqrt(x/2)); dof 2: e^(-x/2); dof 4: e^(-x/2) (1 + x/2).
    assert drift.chi2_sf(x, 1) == pytest.approx(math.erfc(math.sqrt(x / 2)), rel=1e-12)
    assert drift.chi2_sf(x, 2) == pytest.approx(math.exp(-x / 2), rel=1e-12)
    assert drift.chi2_sf(x, 4) == pytest.approx(math.exp(-x / 2) * (1 + x / 2), rel=1e-12)


def test_the_incomplete_gamma_function_has_its_limits():
    assert drift.gamma_q(2.5, 0) == 1.0
    assert drift.gamma_q(0.5, 1e-12) == pytest.approx(1.0, abs=1e-5)
    assert drift.gamma_q(3.0, 500.0) == pytest.approx(0.0, abs=1e-100)
    with pytest.raises(ValueError):
        drift.gamma_q(0, 1.0)
    assert drift.chi2_sf(12.0, 0) == 1.0


# -- chi-square test of homogeneity --------------------------------------------------------


def test_chi_square_of_a_two_by_two_table_by_hand():
    # baseline: a 60, b 40 (100); recent: a 30, b 70 (100); N = 200.
    # Column totals a 90, b 110. Expected: a 100*90/200 = 45 in each row, b 55 in each.
    # Statistic = 15²/45 + 15²/45 + 15²/55 + 15²/55 = 10 + 8.1818… = 200/11 = 18.1818…
    # dof = (2-1)(2-1) = 1; p = erfc(sqrt(18.1818/2)) = 2.00787e-05.
    statistic, dof, p = drift.chi_square({"a": 60, "b": 40}, {"a": 30, "b": 70})
    assert statistic == pytest.approx(200 / 11)
    assert dof == 1
    assert p == pytest.approx(2.007866e-05, rel=1e-5)


def test_chi_square_takes_the_union_of_categories():
    # baseline: x 50, y 30, z 20; recent: x 20, y 30, w 50 (a new action type).
    # Rows 100 and 100, N = 200; columns x 70, y 60, z 20, w 50 -> expected 35, 30, 10, 25
    # in each row. Statistic = 2·15²/35 + 0 + 2·10²/10 + 2·25²/25
    #   = 12.857143 + 20 + 50 = 82.857143 (= 580/7); dof = 4 - 1 = 3; p = 7.4826e-18.
    statistic, dof, p = drift.chi_square({"x": 50, "y": 30, "z": 20}, {"x": 20, "y": 30, "w": 50})
    assert statistic == pytest.approx(580 / 7)
    assert dof == 3
    assert p == pytest.approx(7.4826e-18, rel=1e-4)


def test_chi_square_pools_rare_categories_first():
    # baseline: a 98, b 100, c 2 (200); recent: a 50, b 48, d 2 (100); N = 300.
    # c and d expect 100*2/300 = 0.67 runs in the recent row (< 5): pooled into one
    # column (baseline 2, recent 2). Columns a 148, b 148, pooled 4.
    # Expected: a, b 98.667 | 49.333; pooled 2.667 | 1.333.
    # Statistic = 0.6667²/98.667 + 0.6667²/49.333 + 1.3333²/98.667 + 1.3333²/49.333
    #           + 0.6667²/2.6667 + 0.6667²/1.3333
    #   = 0.004505 + 0.009009 + 0.018018 + 0.036036 + 0.166667 + 0.333333 = 21/37
    # dof = 3 - 1 = 2; p = e^(-21/74) = 0.752929.
    statistic, dof, p = drift.chi_square({"a": 98, "b": 100, "c": 2}, {"a": 50, "b": 48, "d": 2})
    assert statistic == pytest.approx(21 / 37)
    assert dof == 2
    assert p == pytest.approx(0.752929, rel=1e-5)


def test_chi_square_with_nothing_to_compare_is_no_evidence():
    assert drift.chi_square({"a": 80}, {"a": 20}) == (0.0, 0, 1.0)
    assert drift.chi_square({}, {"a": 20}) == (0.0, 0, 1.0)
    assert drift.chi_square({"a": 0, "b": 0}, {"a": 0}) == (0.0, 0, 1.0)


# -- population stability index ------------------------------------------------------------


def test_psi_edges_are_the_baseline_deciles_by_nearest_rank():
    # n = 10, bins = 10: edge i is sorted[ceil(i*10/10) - 1] = the i-th value: 1 … 9.
    assert drift.psi_edges([float(v) for v in range(10, 0, -1)], 10) == list(range(1, 10))
    # Ties merge: 50 twenties and 50 thirties -> positions 9, 19 … 49 are 20; 59 … 89 are 30.
    assert drift.psi_edges([20.0] * 50 + [30.0] * 50, 10) == [20.0, 30.0]
    # Bins are (-inf, 20], (20, 30], (30, inf).
    assert drift.psi_shares([10.0, 20.0, 25.0, 30.0, 31.0], [20.0, 30.0]) == [0.4, 0.4, 0.2]


def test_psi_by_hand_without_empty_bins():
    # baseline 1 … 20, 4 bins: edges sorted[5i - 1] = 5, 10, 15; each bin holds 0.25.
    # recent 1 2 3 4 | 6 7 8 | 11 | 16 17 -> shares 0.4, 0.3, 0.1, 0.2.
    # PSI = 0.15 ln(1.6) + 0.05 ln(1.2) - 0.15 ln(0.4) - 0.05 ln(0.8)
    #     = 0.0705005 + 0.0091161 + 0.1374436 + 0.0111572 = 0.2282174
    baseline = [float(v) for v in range(1, 21)]
    recent = [1.0, 2.0, 3.0, 4.0, 6.0, 7.0, 8.0, 11.0, 16.0, 17.0]
    assert drift.psi(baseline, recent, bins=4) == pytest.approx(0.2282174, abs=1e-7)


def test_psi_by_hand_with_empty_bins_takes_epsilon():
    # baseline 1 … 10, 10 bins: edges 1 … 9, each bin 0.1.
    # recent 1 1 2 2 3 3 4 4 5 5: bins 0-4 hold 0.2, bins 5-9 none -> 0.0001 (epsilon).
    # PSI = 5 · 0.1 · ln 2 + 5 · (0.0001 - 0.1) · ln(0.0001 / 0.1)
    #     = 0.3465736 + 5 · (-0.0999) · (-6.9077553) = 0.3465736 + 3.4504238 = 3.7969974
    baseline = [float(v) for v in range(1, 11)]
    recent = [float(v) for v in (1, 1, 2, 2, 3, 3, 4, 4, 5, 5)]
    assert drift.psi(baseline, recent) == pytest.approx(3.7969974, abs=1e-7)


def test_psi_of_the_same_distribution_is_zero():
    values = [float(v % 37) for v in range(500)]
    assert drift.psi(values, list(reversed(values))) == pytest.approx(0.0)


# -- two proportions -----------------------------------------------------------------------


def test_two_proportions_by_hand():
    # 10/100 -> 30/100: pooled 40/200 = 0.2; se = sqrt(0.2 · 0.8 · (1/100 + 1/100))
    # = sqrt(0.0032) = 0.0565685; z = 0.2 / 0.0565685 = 3.5355339; p = erfc(z/√2)
    # = erfc(2.5) = 0.000406952.
    change, z, p = drift.two_proportions(Count(10, 100), Count(30, 100))
    assert change == pytest.approx(0.2)
    assert z == pytest.approx(3.5355339)
    assert p == pytest.approx(0.000406952, rel=1e-5)
    # Equal and certain: nothing to test.
    assert drift.two_proportions(Count(100, 100), Count(50, 50)) == (0.0, 0.0, 1.0)


# -- judging -------------------------------------------------------------------------------

BOUNDS = drift.drift_bounds_for({})


def window(actions=None, values=(), escalation=(0, 0), audit=(0, 0)):
    return drift.DriftWindow(
        actions=actions or {},
        values=tuple(values),
        escalation=Count(*escalation),
        audit=Count(*audit),
    )


def by_name(result):
    return {c.name: c for c in result.checks}


def test_a_shifted_action_mix_is_a_breach_and_the_rest_holds():
    values = [float(v % 50) for v in range(400)]
    baseline = window({"a": 300, "b": 100}, values, escalation=(40, 400), audit=(98, 100))
    recent = window({"a": 50, "b": 50}, values[:100], escalation=(10, 100), audit=(49, 50))
    result = drift.drift_judge(baseline, recent, BOUNDS)
    checks = by_name(result)
    assert result.breached and [c.name for c in result.breaches()] == ["action_mix"]
    # 300/100 vs 50/50: expected a 280 | 70, b 120 | 30 -> 20²/280 + 20²/70 + 20²/120
    # + 20²/30 = 1.428571 + 5.714286 + 3.333333 + 13.333333 = 23.809524.
    assert checks["action_mix"].detail["statistic"] == pytest.approx(23.809524)
    assert checks["action_mix"].value < 0.01 and checks["action_mix"].bound == 0.01
    assert "the mix has changed" in checks["action_mix"].sentence
    assert checks["value"].verdict == drift.OK
    assert checks["escalation_rate"].verdict == drift.OK
    assert checks["audit_agreement"].verdict == drift.OK
    assert not result.insufficient


def test_rate_changes_need_both_size_and_significance():
    values = [1.0] * 100
    same = {"a": 100}
    # Escalation 10% -> 30% of 100 each: +20 points, p = 0.0004 -> breach.
    # Audit 98% -> 90% of 100 each: -8 points but p = 0.0172 -> not drift (could be luck).
    result = drift.drift_judge(
        window(same, values, escalation=(10, 100), audit=(98, 100)),
        window(same, values, escalation=(30, 100), audit=(90, 100)),
        BOUNDS,
    )
    checks = by_name(result)
    assert checks["escalation_rate"].breached
    assert checks["escalation_rate"].value == pytest.approx(0.2)
    assert not checks["audit_agreement"].breached
    assert checks["audit_agreement"].detail["p"] == pytest.approx(0.0172205, rel=1e-4)
    # With 300 audits a side the same drop is not luck.
    result = drift.drift_judge(
        window(same, values, audit=(294, 300)), window(same, values, audit=(270, 300)), BOUNDS
    )
    assert by_name(result)["audit_agreement"].breached
    # A rise in agreement is never drift.
    result = drift.drift_judge(
        window(same, values, audit=(240, 300)), window(same, values, audit=(300, 300)), BOUNDS
    )
    assert not by_name(result)["audit_agreement"].breached


def test_too_little_data_is_insufficient_never_an_alert():
    baseline = window({"a": 40}, [1.0] * 40, escalation=(0, 40), audit=(10, 10))
    recent = window({"b": 40}, [900.0] * 40, escalation=(40, 40), audit=(0, 10))
    result = drift.drift_judge(baseline, recent, BOUNDS)
    assert not result.breached and result.insufficient
    assert all(c.verdict == drift.INSUFFICIENT for c in result.checks)
    assert "Too few to judge" in by_name(result)["action_mix"].sentence
    # A workflow that lowers its minimums gets judged.
    result = drift.drift_judge(
        baseline, recent, drift.drift_bounds_for({"min_runs": 20, "min_audits": 5})
    )
    assert {c.name for c in result.breaches()} == {
        "action_mix",
        "value",
        "escalation_rate",
        "audit_agreement",
    }


def test_a_value_shift_breaches_the_psi_bound():
    baseline = [float(v) for v in range(1, 101)]
    recent = [float(v) for v in range(60, 160)]
    result = drift.drift_judge(window({}, baseline), window({}, recent), BOUNDS)
    value = by_name(result)["value"]
    assert value.breached and value.value > 0.25
    assert value.detail["edges"] == [10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 80.0, 90.0]
    assert "a major shift" in value.sentence


# -- bounds ----------------------------------------------------------------------------------


def test_drift_bounds_are_validated():
    assert drift.drift_bounds_validate(None) == {}
    assert drift.drift_bounds_validate({"psi_max": 0.2, "recent_days": 14.0}) == {
        "psi_max": 0.2,
        "recent_days": 14,
    }
    with pytest.raises(drift.DriftBoundsError) as caught:
        drift.drift_bounds_validate(
            {"psi": 1, "p_max": 0.9, "recent_days": 2.5, "min_runs": True, "psi_bins": 1}
        )
    message = str(caught.value)
    for words in ("unknown bound 'psi'", "p_max", "recent_days", "min_runs", "psi_bins"):
        assert words in message
    with pytest.raises(drift.DriftBoundsError):
        drift.drift_bounds_validate([1, 2])
    # Invalid overrides never stop a nightly check: the defaults stand.
    assert drift.drift_bounds_for({"psi_max": -1}) == drift.DEFAULT_DRIFT_BOUNDS


def test_the_admin_refuses_bad_drift_bounds():
    from django.core.exceptions import ValidationError

    from ladder.models import Workflow

    with pytest.raises(ValidationError) as caught:
        Workflow(slug="w", name="w", rung=4, drift_bounds={"psi_max": -1}).clean()
    assert "drift_bounds" in caught.value.message_dict
    Workflow(slug="w", name="w", rung=4, drift_bounds={"psi_max": 0.2}).clean()
