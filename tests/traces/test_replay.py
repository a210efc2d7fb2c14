"""The replay's rebuild, on plain events: what came after a decision never stands in for
what the decision was made on."""

from traces.replay import rebuild, snapshot, snapshot_hash


def ev(seq, kind, payload):
    return {"seq": seq, "type": kind, "payload": payload, "hash": f"h{seq}"}


def test_context_sent_after_the_decision_is_listed_apart_not_in_its_place():
    # As an older gateway let an agent write: a forged input after the approval.
    events = [
        ev(1, "input", {"input": "refund 50 EUR"}),
        ev(2, "proposal", {"action": "refund.issue", "params": {"amount": 50}}),
        ev(3, "review_decision", {"verdict": "approved", "by": "rev"}),
        ev(4, "input", {"input": "refund 5000 EUR"}),
        ev(5, "output", {"output": "done"}),
    ]
    run = rebuild(events)
    assert run["input"] == "refund 50 EUR"
    assert run["output"] is None
    assert [(e["seq"], e["type"]) for e in run["after_decision"]] == [(4, "input"), (5, "output")]


def test_context_before_anyone_saw_it_counts_with_the_last_input_winning():
    events = [
        ev(1, "input", {"input": "first"}),
        ev(2, "proposal", {"action": "a", "params": {}}),
        ev(3, "input", {"input": "clarified"}),
        ev(4, "review_shown", {"by": "rev", "hash": "x", "events": []}),
        ev(5, "input", {"input": "too late"}),
    ]
    run = rebuild(events)
    assert run["input"] == "clarified"
    assert run["after_decision"][0]["input"] == "too late"


def test_a_second_decision_or_proposal_never_replaces_the_first():
    events = [
        ev(1, "input", {"input": "x"}),
        ev(2, "proposal", {"action": "a", "params": {"n": 1}}),
        ev(3, "review_decision", {"verdict": "approved", "by": "rev"}),
        ev(4, "proposal", {"action": "a", "params": {"n": 2}}),
        ev(5, "review_decision", {"verdict": "rejected", "by": "mallory"}),
    ]
    run = rebuild(events)
    assert run["proposal"]["params"] == {"n": 1}
    assert run["decision"]["verdict"] == "approved" and run["approver"] == "rev"


def test_a_screen_referred_to_by_events_is_rebuilt_to_its_hash():
    events = [
        ev(1, "input", {"input": "x"}),
        ev(2, "tool_call", {"name": "lookup", "result": 1}),
        ev(3, "proposal", {"action": "a", "params": {}}),
    ]
    screen = snapshot(
        run_id="r1",
        version=1,
        workflow="wf",
        rung=3,
        queue="l3",
        context={"input": "x", "tool_calls": [{"name": "lookup", "result": 1}], "output": None},
        proposal={"action": "a", "params": {}},
        escalation_reason="",
    )
    shown = {
        "by": "rev",
        "hash": snapshot_hash(screen),
        "events": [{"seq": n, "hash": f"h{n}"} for n in (1, 2, 3)],
        "version": 1,
        "workflow": "wf",
        "rung": 3,
        "queue": "l3",
        "escalation_reason": "",
    }
    assert rebuild([*events, ev(4, "review_shown", shown)], run_id="r1")["shown"][0]["matches"]
    tampered = {**shown, "events": [{"seq": 1, "hash": "other"}, *shown["events"][1:]]}
    assert not rebuild([*events, ev(4, "review_shown", tampered)], run_id="r1")["shown"][0][
        "matches"
    ]


def test_one_wrong_label_outweighs_any_number_of_correct_ones():
    events = [
        ev(1, "outcome", {"label": "correct", "source": "a"}),
        ev(2, "outcome", {"label": "wrong", "source": "b"}),
        ev(3, "outcome", {"label": "correct", "source": "c"}),
    ]
    assert rebuild(events)["outcome"] == "wrong"
    assert rebuild(events[:1])["outcome"] == "correct"
    assert rebuild([])["outcome"] is None
