from approvals import review
from ladder.gates import LIGHT_EDIT_MAX


def test_light_edit_threshold_is_a_normalized_distance():
    before = review.draft_text({"body": "Hello Ana, your parcel ships today."}, None)
    small = review.draft_text({"body": "Hello Ana, your parcel ships tomorrow."}, None)
    rewrite = review.draft_text({"body": "We cannot help with this request, sorry."}, None)
    assert review.edit_distance(before, before) == 0
    assert 0 < review.edit_distance(before, small) <= LIGHT_EDIT_MAX
    assert review.edit_distance(before, rewrite) > LIGHT_EDIT_MAX


def test_the_diff_shows_removed_and_added_lines():
    diff = review.unified_diff("a: 1\nb: 2", "a: 1\nb: 3")
    assert "-b: 2" in diff and "+b: 3" in diff


def test_match_compares_action_and_params_regardless_of_key_order():
    proposal = {"action": "refund.issue", "params": {"amount": 5, "currency": "EUR"}}
    assert review.matches_first(proposal, "refund.issue", {"currency": "EUR", "amount": 5})
    assert not review.matches_first(proposal, "refund.issue", {"currency": "EUR", "amount": 6})
    assert not review.matches_first(proposal, "voucher.issue", proposal["params"])


def test_options_put_the_agents_first_choice_first():
    opts = review.options(
        {
            "action": "a.b",
            "params": {},
            "alternatives": [{"action": "c.d", "params": {"x": 1}, "score": 0.3}],
        }
    )
    assert [o["first"] for o in opts] == [True, False]
    assert opts[1]["score"] == 0.3


def test_the_snapshot_hash_changes_with_anything_shown():
    snap = review.snapshot(
        run_id="r",
        version=1,
        workflow="w",
        rung=3,
        queue="l3",
        context={"input": "x"},
        proposal={"action": "a.b"},
        escalation_reason="",
    )
    changed = {**snap, "context": {"input": "y"}}
    assert review.snapshot_hash(snap) != review.snapshot_hash(changed)
    assert review.snapshot_hash(snap) == review.snapshot_hash(dict(snap))
