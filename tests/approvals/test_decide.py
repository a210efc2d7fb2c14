import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connections

from approvals import services
from approvals.models import Review
from ladder.errors import Conflict, Forbidden, Unprocessable
from traces.models import Run, TraceEvent
from traces.selectors import run_replay
from traces.services.trace import EventSpec, trace_append

pytestmark = pytest.mark.django_db


def opened(run, user):
    run = Run.objects.select_related("workflow").get(pk=run.pk)
    return run, services.review_open(run=run, user=user)


def decide(run, user, decision):
    run, view = opened(run, user)
    return services.review_decide(
        run=run, reviewer=user, seen_hash=view.hash, seen_version=run.version, decision=decision
    )


def test_opening_a_run_puts_what_was_shown_in_the_trace_once(submit, people):
    run = submit("l3")
    _, first = opened(run, people["rev"])
    _, again = opened(run, people["rev"])
    shown = TraceEvent.objects.filter(run=run, type="review_shown")
    assert shown.count() == 1
    assert shown.get().payload["hash"] == first.hash == again.hash
    # The screen is referred to by the chain events it was built from, not copied again,
    # and the replay rebuilds it to the very hash the reviewer's form carries.
    assert "snapshot" not in shown.get().payload
    referred = {ref["seq"] for ref in shown.get().payload["events"]}
    proposal = TraceEvent.objects.get(run=run, type="proposal")
    assert proposal.seq in referred
    replayed = run_replay(run=Run.objects.get(pk=run.pk))
    assert replayed["run"]["shown"] == [
        {"seq": shown.get().seq, "by": "rev", "hash": first.hash, "matches": True}
    ]


def test_an_l1_draft_edit_stores_the_version_diff_and_distance(submit, people):
    run = submit("l1")
    review = decide(
        run,
        people["rev"],
        services.DraftSubmission(
            params={"to": "ana@example.com", "body": "Hello, your parcel arrives tomorrow."}
        ),
    )
    run.refresh_from_db()
    assert run.status == "approved"
    assert run.decision["params"]["body"] == "Hello, your parcel arrives tomorrow."
    assert review.verdict == "submitted"
    assert 0 < review.edit_distance < 1
    assert "+body: Hello, your parcel arrives tomorrow." in review.diff
    assert "-body: Hello, your parcel is on its way." in review.diff
    decision_event = TraceEvent.objects.get(run=run, type="review_decision")
    assert decision_event.payload["by"] == "rev"
    assert decision_event.payload["seen_hash"] == review.seen_hash


def test_an_unchanged_l1_draft_is_a_light_edit_of_zero(submit, people):
    run = submit("l1")
    review = decide(run, people["rev"], services.DraftSubmission(params=run.proposal["params"]))
    assert review.edit_distance == 0 and review.light_edit is True


def test_pii_typed_into_a_draft_is_redacted_before_it_is_stored(submit, people):
    run = submit("l1")
    decide(
        run,
        people["rev"],
        services.DraftSubmission(
            params={"to": "ana@example.com", "body": "Call me at +49 1512 3456610"}
        ),
    )
    run.refresh_from_db()
    assert "+49" not in run.decision["params"]["body"]
    assert "<PHONE:" in run.decision["params"]["body"]


def test_discarding_an_l1_draft_rejects_it(submit, people):
    run = submit("l1")
    review = decide(
        run,
        people["rev"],
        services.DraftSubmission(params={}, discard=True, reason="wrong customer"),
    )
    run.refresh_from_db()
    assert run.status == "rejected" and review.verdict == "discarded"


def test_an_l2_pick_of_the_first_recommendation_matches(submit, people):
    run = submit("l2")
    review = decide(run, people["rev"], services.Pick(option=0))
    run.refresh_from_db()
    assert review.matched is True and review.chosen_option == 0
    assert run.decision["params"] == {"amount": 20.0, "currency": "EUR"}


def test_an_l2_pick_of_an_alternative_does_not_match(submit, people):
    run = submit("l2")
    review = decide(run, people["rev"], services.Pick(option=2))
    run.refresh_from_db()
    assert review.matched is False
    assert run.decision["action"] == "voucher.issue"


def test_an_l2_own_action_is_validated_and_stored(submit, people):
    run = submit("l2")
    with pytest.raises(Unprocessable):
        decide(
            run,
            people["rev"],
            services.Pick(option=None, own_action="refund.issue", own_params={"amount": "lots"}),
        )
    review = decide(
        run,
        people["rev"],
        services.Pick(option=None, own_action="refund.issue", own_params={"amount": 15.0}),
    )
    assert review.matched is False and review.chosen_option is None
    assert Run.objects.get(pk=run.pk).decision["params"] == {"amount": 15.0}


def test_an_l2_own_action_equal_to_the_first_recommendation_matches(submit, people):
    run = submit("l2")
    review = decide(
        run,
        people["rev"],
        services.Pick(
            option=None, own_action="refund.issue", own_params={"currency": "EUR", "amount": 20.0}
        ),
    )
    assert review.matched is True


def test_an_l3_approval_records_the_approver(submit, people):
    run = submit("l3")
    decide(run, people["rev"], services.Approval(approve=True))
    run.refresh_from_db()
    assert run.status == "approved" and run.decided_by == people["rev"]


def test_an_l3_rejection_needs_a_reason(submit, people):
    run = submit("l3")
    with pytest.raises(Unprocessable):
        decide(run, people["rev"], services.Approval(approve=False, reason="  "))
    decide(run, people["rev"], services.Approval(approve=False, reason="duplicate"))
    run.refresh_from_db()
    assert run.status == "rejected" and run.decision["reason"] == "duplicate"


def test_a_second_decision_is_refused_naming_who_decided(submit, people):
    run = submit("l3")
    decide(run, people["rev"], services.Approval(approve=True))
    with pytest.raises(Conflict, match="already decided by rev"):
        decide(run, people["rev2"], services.Approval(approve=True))
    assert Review.objects.filter(run=run).count() == 1


def test_a_decision_on_a_changed_run_is_refused_as_stale(submit, people):
    run = submit("l3")
    run, view = opened(run, people["rev"])
    with connections["default"].cursor():
        locked = Run.objects.get(pk=run.pk)
        trace_append(
            run=locked,
            bump_version=True,
            specs=[
                EventSpec("tool_call", {"name": "late.lookup", "result": "new facts"}, "agent:x")
            ],
        )
    with pytest.raises(Conflict) as err:
        services.review_decide(
            run=Run.objects.get(pk=run.pk),
            reviewer=people["rev"],
            seen_hash=view.hash,
            seen_version=run.version,
            decision=services.Approval(approve=True),
        )
    assert err.value.code == "stale_view"
    assert Run.objects.get(pk=run.pk).status == "pending_review"


def test_a_tampered_seen_hash_is_refused(submit, people):
    run = submit("l3")
    run, _ = opened(run, people["rev"])
    with pytest.raises(Conflict):
        services.review_decide(
            run=run,
            reviewer=people["rev"],
            seen_hash="0" * 64,
            seen_version=run.version,
            decision=services.Approval(approve=True),
        )


def test_someone_without_the_reviewer_role_cannot_decide(submit, people):
    run = submit("l3")
    for who in ("owner", "compliance", "stranger"):
        with pytest.raises(Forbidden):
            decide(run, people[who], services.Approval(approve=True))
    assert Run.objects.get(pk=run.pk).status == "pending_review"


def test_a_reservation_shows_who_has_a_run_open(submit, people):
    run = submit("l3")
    assert services.review_open(run=run, user=people["rev"]).held_by is None
    assert services.review_open(run=run, user=people["rev2"]).held_by == "rev"
    services.reservation_release(run_id=run.id, user=people["rev"])
    assert services.review_open(run=run, user=people["rev2"]).held_by is None


@pytest.mark.django_db(transaction=True)
def test_twenty_concurrent_decisions_make_exactly_one(flows, submit, people):
    from django.contrib.auth.models import User

    from approvals.roles import role_grant

    run = submit("l3")
    reviewers = [User.objects.create_user(f"racer{i}") for i in range(20)]
    for user in reviewers:
        role_grant(workflow=flows["l3"], user=user, role="reviewer", by=None)
    views = {u.pk: opened(run, u)[1].hash for u in reviewers}
    version = Run.objects.get(pk=run.pk).version
    barrier = threading.Barrier(len(reviewers))

    def attempt(user):
        try:
            fresh = Run.objects.select_related("workflow", "decided_by").get(pk=run.pk)
            barrier.wait()
            services.review_decide(
                run=fresh,
                reviewer=user,
                seen_hash=views[user.pk],
                seen_version=version,
                decision=services.Approval(approve=True),
            )
            return "won"
        except Conflict as exc:
            return exc.message
        finally:
            connections.close_all()

    with ThreadPoolExecutor(max_workers=len(reviewers)) as pool:
        outcomes = list(pool.map(attempt, reviewers))
    assert outcomes.count("won") == 1, outcomes
    winner = Run.objects.get(pk=run.pk).decided_by.username
    assert all(o == "won" or f"already decided by {winner}" in o for o in outcomes), outcomes
    assert Review.objects.filter(run=run).count() == 1
    assert TraceEvent.objects.filter(run=run, type="review_decision").count() == 1


def _executors(flows, *, refund: str, voucher: str):
    """The L2 workflow's refund.issue and voucher.issue, each run by `agent` or `server`
    (a server one pays into the demo ledger)."""
    from ladder.models import ActionType

    for name, executor in (("refund.issue", refund), ("voucher.issue", voucher)):
        path = "traces.demo_executors.refund_issue" if executor == "server" else ""
        ActionType.objects.filter(workflow=flows["l2"], name=name).update(
            executor=executor, executor_path=path
        )


def test_a_picked_alternative_of_another_type_is_carried_out_by_its_own_executor(
    flows, submit, people, monkeypatch
):
    """Picking the agent-run voucher over the server-run refund: the server executes
    nothing, and the agent may claim the run (it was the other way round before)."""
    from traces.auth import AgentAuth
    from traces.services import decisions
    from traces.services.agent import run_claim

    queued = []
    monkeypatch.setattr(decisions, "execution_enqueue", lambda run_id: queued.append(run_id))
    _executors(flows, refund="server", voucher="agent")
    run = submit("l2")
    decide(run, people["rev"], services.Pick(option=2))
    run = Run.objects.select_related("action_type").get(pk=run.pk)
    assert run.action_type.name == "voucher.issue" and run.status == "approved"
    assert queued == []  # nothing sent to the server's executor
    auth = AgentAuth(token_id=0, prefix="lat_test", workflow_ids=frozenset({flows["l2"].id}))
    assert run_claim(auth=auth, run=run).status == "executing"
    # The proposal as the agent made it stays in the trace.
    proposal = TraceEvent.objects.get(run=run, type="proposal").payload
    assert proposal["action"] == "refund.issue"


def test_a_picked_server_alternative_is_executed_by_the_server_once(flows, submit, people):
    from traces.models import DemoLedgerEntry
    from traces.services.execution import run_execute

    _executors(flows, refund="agent", voucher="server")
    run = submit("l2")
    decide(run, people["rev"], services.Pick(option=2))
    assert run_execute(run_id=run.id).status == "executed"
    assert run_execute(run_id=run.id).status == "executed"
    entry = DemoLedgerEntry.objects.get()
    assert entry.idempotency_key == f"voucher.issue:{run.id}"
