"""The gate rules on plain numbers (ladder/gates.py), checked against figures worked out
by hand."""

from datetime import UTC, datetime, timedelta

import pytest

from ladder import gates
from ladder.gates import Count, EvalPass, Outcome, Tallies, WorkflowFacts

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


def facts(rung, *, days_at_rung=365, risk="low", max_rung=5, actions=("refund.issue",), **kw):
    return WorkflowFacts(
        rung=rung,
        max_rung=max_rung,
        risk_class=risk,
        action_types=actions,
        has_owner=True,
        rung_since=NOW - timedelta(days=days_at_rung),
        now=NOW,
        window_days=90,
        **kw,
    )


def by_name(found):
    return {g.name: g for g in found}


# -- Wilson -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("k", "n", "lower", "upper"),
    [
        # p = 1: lower = n / (n + z^2) = 10 / 13.8415
        (10, 10, 0.72246, 1.0),
        # 1 of 2: centre 0.5, half-width 1.96 * sqrt(0.125 + z^2/16) / (1 + z^2/2)
        (1, 2, 0.09453, 0.90547),
        # 95 of 100: centre (0.95 + z^2/200) / (1 + z^2/100), half 0.045104
        (95, 100, 0.88825, 0.97845),
        (0, 5, 0.0, 0.43448),
    ],
)
def test_the_wilson_interval_matches_the_hand_computed_bounds(k, n, lower, upper):
    low, high = gates.wilson(k, n)
    assert low == pytest.approx(lower, abs=5e-5)
    assert high == pytest.approx(upper, abs=5e-5)


def test_nothing_is_known_from_no_trials():
    assert gates.wilson(0, 0) == (0.0, 1.0)


def test_a_small_perfect_sample_cannot_pass_a_high_bar_by_luck():
    # 20 of 20 approved looks like 100%, but the lower bound is 0.839 < 0.95.
    gate = gates.rate_gate(
        name="approval_rate",
        label="Approval rate",
        count=Count(20, 20),
        bar=0.95,
        min_n=1,
        what="approved",
    )
    assert gate.verdict == gates.FAIL
    assert gate.lower == pytest.approx(0.83887, abs=5e-5)


def test_a_rate_below_its_volume_is_insufficient_not_failed():
    gate = gates.rate_gate(
        name="x", label="X", count=Count(1, 10), bar=0.9, min_n=200, what="matched"
    )
    assert gate.verdict == gates.INSUFFICIENT
    assert "Too few to judge" in gate.sentence


def test_an_upper_bar_judges_the_upper_bound():
    # 2 failures in 1,000: upper bound 0.0072 <= 0.05.
    ok = gates.rate_gate(
        name="f", label="F", count=Count(2, 1000), bar=0.05, min_n=1, what="w", upper_bar=True
    )
    # 3 in 40: 7.5%, upper bound 0.199 > 0.05.
    bad = gates.rate_gate(
        name="f", label="F", count=Count(3, 40), bar=0.05, min_n=1, what="w", upper_bar=True
    )
    assert (ok.verdict, bad.verdict) == (gates.PASS, gates.FAIL)


def test_the_sentence_says_the_number_its_interval_and_its_bar():
    gate = gates.rate_gate(
        name="match_rate",
        label="Match rate",
        count=Count(4120, 4200),
        bar=0.9,
        min_n=300,
        what="the chosen action matched the agent's first recommendation",
    )
    assert gate.sentence == (
        "Over 4,200 runs the chosen action matched the agent's first recommendation 98.1% "
        "(95% CI 97.6\N{EN DASH}98.5%); the lower bound must be at least 90.0%."
    )


# -- the tail ------------------------------------------------------------------------------


def l2_tallies(by_type, **kw):
    total = Count(sum(c.k for c in by_type.values()), sum(c.n for c in by_type.values()))
    base = dict(
        rung=2,
        volume=total.n,
        match=total,
        match_by_type=by_type,
        eval_cases_by_type={"refund.issue": 40, "voucher.issue": 25},
        eval_pass=EvalPass(
            label="v7",
            at=NOW,
            by_type={"refund.issue": Count(39, 40), "voucher.issue": Count(24, 25)},
        ),
    )
    return Tallies(**{**base, **kw})


def test_an_aggregate_of_97_percent_fails_when_one_action_type_matches_80_percent():
    tallies = l2_tallies({"refund.issue": Count(932, 950), "voucher.issue": Count(40, 50)})
    f = facts(2, actions=("refund.issue", "voucher.issue"))
    found = by_name(gates.gates_evaluate(f, tallies))
    assert tallies.match.rate == pytest.approx(0.972)
    assert found["match_rate"].verdict == gates.PASS
    assert found["match_rate:refund.issue"].verdict == gates.PASS
    assert found["match_rate:voucher.issue"].verdict == gates.FAIL
    verdict = gates.eligibility(f, list(found.values()))
    assert not verdict.eligible
    assert "Match rate, voucher.issue: fail." in verdict.reasons


def test_the_same_history_without_the_bad_tail_is_eligible():
    # 50 of 50: lower bound 0.929 (49 of 50 would be 0.895, under the bar).
    tallies = l2_tallies({"refund.issue": Count(932, 950), "voucher.issue": Count(50, 50)})
    f = facts(2, actions=("refund.issue", "voucher.issue"))
    verdict = gates.eligibility(f, gates.gates_evaluate(f, tallies))
    assert verdict.eligible, verdict.reasons


def test_a_rare_type_is_left_to_the_eval_set_and_does_not_block():
    tallies = l2_tallies({"refund.issue": Count(980, 1000), "voucher.issue": Count(3, 5)})
    f = facts(2, actions=("refund.issue", "voucher.issue"))
    found = by_name(gates.gates_evaluate(f, tallies))
    assert found["match_rate:voucher.issue"].verdict == gates.INSUFFICIENT
    assert not found["match_rate:voucher.issue"].required
    assert gates.eligibility(f, list(found.values())).eligible


def test_an_eval_set_missing_an_action_type_blocks_l3():
    tallies = l2_tallies({"refund.issue": Count(980, 1000)}, eval_pass=None)
    tallies = Tallies(**{**tallies.__dict__, "eval_cases_by_type": {"refund.issue": 3}})
    f = facts(2, actions=("refund.issue", "voucher.issue"))
    found = by_name(gates.gates_evaluate(f, tallies))
    assert found["eval_coverage"].verdict == gates.FAIL
    assert "voucher.issue" in found["eval_coverage"].sentence
    assert found["eval_match_rate"].verdict == gates.INSUFFICIENT


def test_the_latest_eval_pass_must_meet_the_bar_for_every_type():
    tallies = l2_tallies({"refund.issue": Count(980, 1000)})
    weak = EvalPass(
        label="v8", at=NOW, by_type={"refund.issue": Count(40, 40), "voucher.issue": Count(20, 25)}
    )
    tallies = Tallies(**{**tallies.__dict__, "eval_pass": weak})
    found = by_name(
        gates.gates_evaluate(facts(2, actions=("refund.issue", "voucher.issue")), tallies)
    )
    assert found["eval_match_rate"].verdict == gates.FAIL
    assert found["eval_match_rate"].value == pytest.approx(0.8)


# -- L3 -> L4 ------------------------------------------------------------------------------


def l3_tallies(**kw):
    base = dict(
        rung=3,
        volume=1200,
        approval=Count(1190, 1200),
        failure=Count(3, 1190),
        replay=Count(1190, 1190),
        probes=Count(24, 25),
        shadow=Count(1150, 1160),
        shadow_version=2,
        outcome=Outcome("csat", "up", 4.1, 30, 4.3, 40),
        policy_version=2,
        drill=drill(days_ago=3),
    )
    base.update(kw)
    return Tallies(**base)


def drill(*, days_ago, passed=True, under_load=False):
    return {
        "id": 7,
        "at": NOW - timedelta(days=days_ago),
        "passed": passed,
        "size": 50,
        "duration_seconds": 4.25,
        "under_load": under_load,
    }


def test_a_good_l3_history_with_a_recent_drill_is_eligible_for_l4():
    f = facts(3, days_at_rung=60)
    found = gates.gates_evaluate(f, l3_tallies())
    verdict = gates.eligibility(f, found)
    assert verdict.eligible, verdict.reasons
    gate = by_name(found)["rollback_drill"]
    assert (gate.verdict, gate.required) == (gates.PASS, True)
    assert gate.value == pytest.approx(3.0)
    assert gate.sentence == (
        "Latest drill 3.0 days ago (50 runs in 4.2 s) passed; "
        "a drill passed in the last 30 days is needed."
    )


@pytest.mark.parametrize(
    ("tallied", "verdict"),
    [
        (None, gates.INSUFFICIENT),  # never drilled
        (drill(days_ago=30), gates.PASS),  # exactly 30 days: still within
        (drill(days_ago=30.5), gates.FAIL),  # too old
        (drill(days_ago=1, passed=False), gates.FAIL),  # the latest drill failed
    ],
)
def test_l4_needs_a_drill_passed_in_the_last_30_days(tallied, verdict):
    f = facts(3, days_at_rung=60)
    found = gates.gates_evaluate(f, l3_tallies(drill=tallied))
    assert by_name(found)["rollback_drill"].verdict == verdict
    eligible = gates.eligibility(f, found)
    assert eligible.eligible is (verdict == gates.PASS)
    if verdict != gates.PASS:
        assert eligible.reasons == (f"Rollback drill: {verdict}.",)


def test_a_drill_date_read_back_from_a_stored_snapshot_is_judged_alike():
    stored = {**drill(days_ago=2), "at": (NOW - timedelta(days=2)).isoformat()}
    found = by_name(gates.gates_evaluate(facts(3, days_at_rung=60), l3_tallies(drill=stored)))
    assert found["rollback_drill"].verdict == gates.PASS


def test_an_approval_rate_does_not_count_while_reviewers_miss_probes():
    f = facts(3, days_at_rung=60)
    found = by_name(gates.gates_evaluate(f, l3_tallies(probes=Count(15, 25))))
    assert found["probe_catch_rate"].verdict == gates.FAIL
    assert found["approval_rate"].verdict == gates.INSUFFICIENT
    assert "attention" in found["approval_rate"].sentence


def test_too_few_probes_leave_the_approval_rate_unproven():
    f = facts(3, days_at_rung=60)
    found = by_name(gates.gates_evaluate(f, l3_tallies(probes=Count(19, 19))))
    assert found["probe_catch_rate"].verdict == gates.INSUFFICIENT
    assert found["approval_rate"].verdict == gates.INSUFFICIENT


def test_l4_needs_a_written_policy():
    f = facts(3, days_at_rung=60)
    found = by_name(gates.gates_evaluate(f, l3_tallies(policy_version=None, shadow=None)))
    assert found["policy"].verdict == gates.FAIL
    assert not gates.eligibility(f, list(found.values())).eligible


def test_a_business_metric_moving_the_wrong_way_fails():
    f = facts(3, days_at_rung=60)
    worse = Outcome("handling_minutes", "down", 4.0, 30, 4.5, 30)
    found = by_name(gates.gates_evaluate(f, l3_tallies(outcome=worse)))
    assert found["business_outcome"].verdict == gates.FAIL


def test_a_consequential_workflow_waits_six_weeks_at_l3_and_stops_at_l4():
    young = facts(3, days_at_rung=30, risk="consequential", max_rung=4)
    found = by_name(gates.gates_evaluate(young, l3_tallies()))
    assert found["time_at_rung"].bar == 42
    assert found["time_at_rung"].verdict == gates.INSUFFICIENT
    at_l4 = facts(4, risk="consequential", max_rung=4)
    verdict = gates.eligibility(at_l4, [])
    assert not verdict.eligible
    assert "past this workflow's max rung" in verdict.reasons[0]
    assert gates.max_rung_for("consequential") == 4
    assert gates.max_rung_for("low") == 5


# -- L4 -> L5 ------------------------------------------------------------------------------


def test_audit_agreement_must_hold_in_every_third_of_the_window():
    steady = (Count(1000, 1001), Count(1000, 1001), Count(1000, 1001))
    slipping = (Count(1000, 1001), Count(1000, 1001), Count(900, 1000))
    base = dict(
        rung=4,
        volume=4000,
        failure=Count(2, 3000),
        replay=Count(3000, 3000),
        outcome=Outcome("csat", "up", 4.1, 30, 4.3, 40),
        policy_version=3,
    )
    f = facts(4)
    good = by_name(
        gates.gates_evaluate(f, Tallies(**base, audit=Count(3000, 3003), audit_thirds=steady))
    )
    bad = by_name(
        gates.gates_evaluate(f, Tallies(**base, audit=Count(2900, 3002), audit_thirds=slipping))
    )
    assert good["audit_sustained"].verdict == gates.PASS
    assert bad["audit_sustained"].verdict == gates.FAIL


def l4_tallies(**kw):
    base = dict(
        rung=4,
        volume=4000,
        audit=Count(3000, 3003),
        audit_thirds=(Count(1000, 1001), Count(1000, 1001), Count(1000, 1001)),
        failure=Count(2, 3000),
        replay=Count(3000, 3000),
        outcome=Outcome("csat", "up", 4.1, 30, 4.3, 40),
        policy_version=3,
        drill=drill(days_ago=5, under_load=True),
    )
    base.update(kw)
    return Tallies(**base)


def test_l5_needs_a_recent_drill_passed_under_load():
    f = facts(4)
    good = gates.gates_evaluate(f, l4_tallies())
    assert gates.eligibility(f, good).eligible
    gate = by_name(good)["rollback_drill"]
    assert gate.sentence == (
        "Latest drill 5.0 days ago (50 runs in 4.2 s) passed, under load; "
        "a drill passed in the last 30 days, run under load, is needed."
    )
    quiet = by_name(gates.gates_evaluate(f, l4_tallies(drill=drill(days_ago=5))))
    assert quiet["rollback_drill"].verdict == gates.FAIL
    assert "not under load" in quiet["rollback_drill"].sentence
    failed = drill(days_ago=5, passed=False, under_load=True)
    assert by_name(gates.gates_evaluate(f, l4_tallies(drill=failed)))["rollback_drill"].verdict == (
        gates.FAIL
    )
    assert (
        by_name(gates.gates_evaluate(f, l4_tallies(drill=None)))["rollback_drill"].verdict
        == gates.INSUFFICIENT
    )


def test_replay_coverage_needs_every_executed_run():
    f = facts(4)
    tallies = Tallies(rung=4, replay=Count(2999, 3000))
    assert by_name(gates.gates_evaluate(f, tallies))["replay_coverage"].verdict == gates.FAIL


# -- leaving L0, the top, thresholds ----------------------------------------------------------


def test_leaving_l0_takes_an_action_type_and_an_owner_only():
    f = facts(0)
    assert gates.eligibility(f, gates.gates_evaluate(f, Tallies(rung=0))).eligible
    bare = WorkflowFacts(**{**f.__dict__, "action_types": (), "has_owner": False})
    assert not gates.eligibility(bare, gates.gates_evaluate(bare, Tallies(rung=0))).eligible


def test_l5_is_the_top():
    f = facts(5)
    assert gates.gates_evaluate(f, Tallies(rung=5)) == []
    assert gates.eligibility(f, []).target_rung is None


def test_a_workflow_may_tighten_its_bars_but_never_loosen_them():
    assert gates.thresholds_validate(
        risk_class="low", overrides={"4": {"approval_rate": 0.97, "volume": 2000}}
    ) == {"4": {"approval_rate": 0.97, "volume": 2000}}
    with pytest.raises(gates.ThresholdError) as err:
        gates.thresholds_validate(
            risk_class="low",
            overrides={"4": {"approval_rate": 0.9, "failure_rate_max": 0.2, "nope": 1}, "9": {}},
        )
    message = str(err.value)
    assert "looser than the default 0.95" in message
    assert "'failure_rate_max': 0.2 is looser" in message
    assert "'nope': no such bar" in message
    assert "'9': not a target rung" in message
    # A consequential workflow cannot loosen its tighter start either.
    with pytest.raises(gates.ThresholdError):
        gates.thresholds_validate(
            risk_class="consequential", overrides={"4": {"time_at_rung_days": 28}}
        )


def test_tightened_bars_are_the_ones_judged():
    f = facts(3, days_at_rung=60, thresholds={"4": {"approval_rate": 0.995}})
    found = by_name(gates.gates_evaluate(f, l3_tallies()))
    assert found["approval_rate"].bar == 0.995
    assert found["approval_rate"].verdict == gates.FAIL


@pytest.mark.django_db
def test_the_admin_refuses_a_looser_bar_on_a_workflow():
    from django.core.exceptions import ValidationError

    from tests.factories import WorkflowFactory

    wf = WorkflowFactory(rung=3, gate_thresholds={"4": {"approval_rate": 0.5}})
    with pytest.raises(ValidationError) as err:
        wf.full_clean()
    assert "looser than the default" in str(err.value)
    wf.gate_thresholds = {"4": {"approval_rate": 0.99}}
    wf.full_clean()
