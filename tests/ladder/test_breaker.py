"""The breaker's pure rules (ladder/breaker.py), with numbers worked by hand.

Wilson lower bound, z = 1.959964 (z^2 = 3.841459):
  3 of 3:  centre = (1 + 3.841459/6) / (1 + 3.841459/3) = 1.640243 / 2.280486 = 0.719252;
           half = z * sqrt(3.841459/36) / 2.280486 = 0.280752; lower = 0.438503.
  3 of 10: p = 0.3, denom = 1.384146; centre = (0.3 + 0.192073) / 1.384146 = 0.355506;
           half = z * sqrt(0.021 + 0.009604) / 1.384146 = 0.247715; lower = 0.107791.
  2 of 10: centre = (0.2 + 0.192073) / 1.384146 = 0.283260;
           half = z * sqrt(0.016 + 0.009604) / 1.384146 = 0.226578; lower = 0.056682.
"""

import pytest

from ladder import breaker
from ladder.breaker import DEFAULT_BOUNDS, BoundsError, Window, bounds_for, bounds_validate, judge


def window(executed, failures, checked=None, ok=None):
    checked = executed if checked is None else checked
    return Window(executed, failures, checked, checked if ok is None else ok)


def test_three_failures_of_three_trip_the_default_ten_percent_bound():
    trip = judge(window(3, 3), DEFAULT_BOUNDS)
    assert trip is not None and trip.bound == "failure_rate"
    assert trip.evidence["lower"] == pytest.approx(0.438503, abs=1e-6)
    assert "3 of the last 3 executed runs" in trip.reason


def test_three_of_ten_trip_and_two_of_ten_do_not():
    tripped = judge(window(10, 3), DEFAULT_BOUNDS)
    assert tripped.evidence["lower"] == pytest.approx(0.107791, abs=1e-6)
    assert judge(window(10, 2), DEFAULT_BOUNDS) is None  # lower bound 0.056682 <= 0.10


def test_one_unlucky_run_among_many_does_not_trip():
    assert judge(window(50, 1), DEFAULT_BOUNDS) is None
    assert judge(window(0, 0, 0, 0), DEFAULT_BOUNDS) is None


def test_a_tighter_workflow_bound_trips_earlier():
    bounds = bounds_for({"failure_rate_max": 0.05})
    assert judge(window(10, 2), bounds) is not None  # 0.056682 > 0.05


def test_replay_coverage_below_its_bound_trips():
    trip = judge(window(20, 0, checked=20, ok=19), DEFAULT_BOUNDS)
    assert trip.bound == "replay_coverage"
    assert trip.evidence["coverage"] == pytest.approx(0.95)
    # Runs whose replay was not checked yet count neither way.
    assert judge(window(20, 0, checked=0, ok=0), DEFAULT_BOUNDS) is None
    assert judge(window(20, 0, checked=20, ok=19), bounds_for({"replay_coverage_min": 0.9})) is None


def test_the_breaker_only_moves_l4_and_l5_down_one_rung():
    assert [breaker.demoted_rung(r) for r in range(6)] == [None, None, None, None, 3, 4]


def test_bounds_are_validated_with_every_problem_named():
    assert bounds_validate({"window_runs": 20, "drift_trips": True}) == {
        "window_runs": 20,
        "drift_trips": True,
    }
    with pytest.raises(BoundsError) as exc:
        bounds_validate(
            {"window_runs": 2, "failure_rate_max": 1.5, "drift_trips": "yes", "speed": 1}
        )
    message = str(exc.value)
    for part in ("window_runs", "failure_rate_max", "drift_trips", "unknown bound 'speed'"):
        assert part in message
    with pytest.raises(BoundsError):
        bounds_validate([1])
    # Invalid overrides never stop the breaker from judging: the defaults apply.
    assert bounds_for({"window_runs": "many"}) == DEFAULT_BOUNDS


def test_l5_needs_a_recent_eval_pass_at_the_bar():
    bounds = DEFAULT_BOUNDS  # eval_max_age_days 7
    ok = breaker.judge_evals(rung=5, age_days=2, matched=100, total=100, bar=0.9, bounds=bounds)
    assert ok is None
    assert (
        breaker.judge_evals(rung=4, age_days=None, matched=0, total=0, bar=0.9, bounds=bounds)
        is None
    )
    none = breaker.judge_evals(rung=5, age_days=None, matched=0, total=0, bar=0.9, bounds=bounds)
    assert none.bound == "evals" and "no eval pass" in none.reason
    stale = breaker.judge_evals(
        rung=5, age_days=8.5, matched=100, total=100, bar=0.9, bounds=bounds
    )
    assert "8.5 days old" in stale.reason
    # 95 of 100: Wilson lower bound 0.888250 < 0.9.
    low = breaker.judge_evals(rung=5, age_days=1, matched=95, total=100, bar=0.9, bounds=bounds)
    assert low.evidence["lower"] == pytest.approx(0.888250, abs=1e-6)
