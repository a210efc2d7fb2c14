"""Gate snapshots over a small history built through the public surfaces (the agent API
for runs, results and outcome labels, the review service the forms call), checked
against hand counts and recounted by an examiner from `GET /api/v1/runs/{id}/replay`
alone (docs/gates.md, "Recounting from the replays")."""

from collections import Counter
from datetime import datetime

import pytest
from django.core.management import call_command
from django.utils import timezone

from approvals import services
from ladder.models import GateSnapshot, RungChange
from ladder.services import rung_change
from traces.models import Run
from traces.services.gates import gates_recompute
from traces.services.policy import policy_set

pytestmark = pytest.mark.django_db

DRAFT = {
    "audit_sample_rate": 0,
    "rules": [
        {
            "id": "actions",
            "kind": "allow_actions",
            "actions": ["refund.issue"],
            "control": "allowed_tools",
        },
        {
            "id": "cap",
            "kind": "value_cap",
            "action": "refund.issue",
            "max": "50.00",
            "currency": "EUR",
            "then": "deny",
            "control": "value_cap",
        },
    ],
}


def post_run(api, wf, key, proposal):
    response = api.post(
        "/runs",
        {
            "workflow": wf.slug,
            "idempotency_key": key,
            "input": {"message": f"customer message {key}"},
            "proposal": proposal,
        },
    )
    assert response.status_code == 201, response.content
    return response.json()["id"]


def decide(run_id, user, decision):
    run = Run.objects.select_related("workflow").get(pk=run_id)
    view = services.review_open(run=run, user=user)
    services.review_decide(
        run=run, reviewer=user, seen_hash=view.hash, seen_version=run.version, decision=decision
    )


@pytest.fixture
def history(flows, people, agent):
    """L1 drafts, L2 picks over two action types, L3 approvals with results and labels."""
    rev = people["rev"]
    l1, l2, l3 = flows["l1"], flows["l2"], flows["l3"]
    policy_set(workflow=l3, document=DRAFT, by=people["owner"], note="draft")
    api = agent(l1, l2, l3)
    body = "Hello, your parcel left our warehouse this morning and arrives Friday."
    # L1: 3 light edits, 1 heavy rewrite, 1 discard.
    for i, (new_body, discard) in enumerate(
        [
            (body.replace("Friday", "Friday."), False),
            (body.replace("Hello", "Hi"), False),
            (body, False),
            ("We are sorry. A new parcel is on its way, with a voucher.", False),
            (body, True),
        ]
    ):
        rid = post_run(
            api,
            l1,
            f"d{i}",
            {"action": "reply.send", "params": {"to": "a@example.com", "body": body}},
        )
        decide(
            rid,
            rev,
            services.DraftSubmission(
                params={"to": "a@example.com", "body": new_body}, discard=discard, reason="dup"
            ),
        )
    # L2: refund.issue 3 matched + 1 other option; voucher.issue 1 matched, 1 rejected.
    picks = [("refund.issue", 0)] * 3 + [
        ("refund.issue", 1),
        ("voucher.issue", 0),
        ("voucher.issue", None),
    ]
    for i, (action, option) in enumerate(picks):
        rid = post_run(
            api,
            l2,
            f"p{i}",
            {
                "action": action,
                "params": {"amount": 20.0},
                "alternatives": [{"action": action, "params": {"amount": 10.0}}],
            },
        )
        decision = (
            services.Pick(option=None, reject=True, reason="not this")
            if option is None
            else services.Pick(option=option)
        )
        decide(rid, rev, decision)
    # L3: 6 approved (5 succeed, 1 fails; one success labelled wrong), 2 rejected,
    # 1 still waiting; amounts over 50 EUR are denied by the draft in shadow.
    plan = [
        (30, True, "succeeded", None),
        (30, True, "succeeded", "correct"),
        (30, True, "succeeded", "wrong"),
        (80, True, "succeeded", None),
        (40, True, "succeeded", None),
        (45, True, "failed", None),
        (90, False, None, None),
        (20, False, None, None),
    ]
    for i, (amount, approve, result, label) in enumerate(plan):
        rid = post_run(
            api,
            l3,
            f"a{i}",
            {"action": "refund.issue", "params": {"amount": amount, "currency": "EUR"}},
        )
        decide(rid, rev, services.Approval(approve=approve, reason="" if approve else "too much"))
        if result:
            response = api.post(f"/runs/{rid}/result", {"status": result})
            assert response.status_code == 200, response.content
        if label:
            response = api.post(f"/runs/{rid}/outcome", {"label": label, "source": "crm"})
            assert response.status_code in (200, 201), response.content
    post_run(
        api, l3, "waiting", {"action": "refund.issue", "params": {"amount": 5, "currency": "EUR"}}
    )
    return api


def tallies(snap: GateSnapshot) -> dict:
    return snap.tallies


def test_the_snapshot_counts_what_happened(flows, history):
    l1 = gates_recompute(workflow=flows["l1"], trigger="command").tallies
    assert l1["volume"] == 5
    assert l1["light_edit"] == {"k": 3, "n": 5}
    l2 = gates_recompute(workflow=flows["l2"], trigger="command").tallies
    assert l2["match"] == {"k": 4, "n": 6}
    assert l2["match_by_type"] == {
        "refund.issue": {"k": 3, "n": 4},
        "voucher.issue": {"k": 1, "n": 2},
    }
    l3 = gates_recompute(workflow=flows["l3"], trigger="command").tallies
    assert l3["volume"] == 8
    assert l3["approval"] == {"k": 6, "n": 8}
    assert l3["failure"] == {"k": 2, "n": 6}  # one failed, one labelled wrong
    assert l3["replay"] == {"k": 6, "n": 6}
    # Shadow, draft v1: deny over 50 EUR. Settled alone: 30,30,30,40,45,20 allowed,
    # 80,90 denied; agreement = allowed+approved (5) + denied+rejected (1).
    assert l3["shadow"] == {"k": 6, "n": 8}
    assert l3["shadow_version"] == 1
    assert l3["policy_version"] == 1


def test_the_api_shows_the_latest_snapshot(flows, history):
    snap = gates_recompute(workflow=flows["l3"], trigger="on_demand")
    shown = history.get(f"/workflows/{flows['l3'].slug}").json()["gate_snapshot"]
    assert shown["computed_at"] == snap.computed_at.isoformat()
    assert shown["rung"] == 3 and shown["target_rung"] == 4
    assert shown["eligible"] is False
    names = {g["name"]: g for g in shown["gates"]}
    assert names["approval_rate"]["n"] == 8
    assert names["volume"]["verdict"] == "insufficient"


def test_runs_handled_at_another_rung_are_not_counted(flows, history, people):
    rung_change(
        workflow=flows["l3"], from_rung=3, to_rung=2, kind=RungChange.Kind.DEMOTION, reason="test"
    )
    snap = gates_recompute(workflow=flows["l3"], trigger="command")
    assert snap.rung == 2
    assert snap.tallies["volume"] == 0


def test_snapshots_are_kept_and_cannot_be_rewritten(flows, history):
    from django.db import IntegrityError, transaction

    call_command("recompute_gates", "--quiet")
    call_command("recompute_gates", flows["l3"].slug, "--quiet")
    assert GateSnapshot.objects.filter(workflow=flows["l3"]).count() == 2
    snap = GateSnapshot.objects.filter(workflow=flows["l3"]).first()
    with pytest.raises(IntegrityError), transaction.atomic():
        GateSnapshot.objects.filter(pk=snap.pk).update(eligible=True)


# -- the examiner's recount --------------------------------------------------------------


def _step(replay, kind):
    return [s for s in replay["steps"] if s["type"] == kind]


def recount(api, workflow, snap: GateSnapshot) -> dict:
    """The snapshot's tallies from the replays alone, as docs/gates.md says an examiner
    computes them. Only the run ids come from elsewhere (the examiner's export)."""
    start = datetime.fromisoformat(snap.tallies and snap.window_start.isoformat())
    end = snap.window_end
    c = Counter()
    by_type: dict[str, list[int]] = {}
    for run_id in Run.objects.filter(workflow=workflow).values_list("id", flat=True):
        response = api.get(f"/runs/{run_id}/replay")
        if response.status_code == 404:
            continue  # an attention probe: no agent's run (docs/evals.md), counted apart
        replay = response.json()
        run = replay["run"]
        if run["rung"] != snap.rung:
            continue
        decisions = _step(replay, "review_decision")
        policy = [
            s for s in _step(replay, "policy_decision") if s["payload"]["decision"] != "escalate"
        ]
        if decisions:
            decider, decided_at = "person", datetime.fromisoformat(decisions[0]["payload"]["at"])
            verdict = decisions[0]["payload"]["verdict"]
        elif policy:
            decider, decided_at = "policy", datetime.fromisoformat(policy[0]["at"])
            verdict = "approved" if policy[0]["payload"]["decision"] == "allow" else "rejected"
        else:
            continue
        if not start <= decided_at < end:
            continue
        c["volume"] += 1
        finished = [
            s for s in _step(replay, "execution") if s["payload"].get("phase") == "finished"
        ]
        labels = [s["payload"].get("label") for s in _step(replay, "outcome")]
        if decider == "person":
            decision = decisions[0]["payload"]
            c["by_person"] += 1
            c["light"] += decision.get("light_edit") is True
            c["matched"] += decision.get("matched") is True
            c["approved"] += verdict == "approved"
            action = run["proposal"]["action"]
            pair = by_type.setdefault(action, [0, 0])
            pair[0] += decision.get("matched") is True
            pair[1] += 1
            shadow = run["shadow"]
            if shadow and shadow["policy_version"] == snap.tallies["policy_version"]:
                outcome = shadow["decision"]
                as_proposed = verdict == "approved" and (
                    decision["kind"] == "approve" or decision.get("matched") is True
                )
                if outcome in ("allow", "deny"):
                    c["shadow_n"] += 1
                    c["shadow_k"] += (outcome == "allow" and as_proposed) or (
                        outcome == "deny" and verdict == "rejected"
                    )
        if finished:
            c["executed"] += 1
            failed = finished[-1]["payload"]["status"] == "failed" or "wrong" in labels
            c["failed"] += failed
            c["replayed"] += replay["complete"] and replay["verified"]
    out = {
        "volume": c["volume"],
        "light_edit": {"k": c["light"], "n": c["by_person"]},
        "match": {"k": c["matched"], "n": c["by_person"]},
        "approval": {"k": c["approved"], "n": c["by_person"]},
        "failure": {"k": c["failed"], "n": c["executed"]},
        "replay": {"k": c["replayed"], "n": c["executed"]},
        "match_by_type": {a: {"k": k, "n": n} for a, (k, n) in by_type.items()},
    }
    if c["shadow_n"]:
        out["shadow"] = {"k": c["shadow_k"], "n": c["shadow_n"]}
    return out


@pytest.mark.parametrize("kind", ["l1", "l2", "l3"])
def test_an_examiner_recounts_every_number_from_the_replays(flows, history, kind):
    snap = gates_recompute(workflow=flows[kind], trigger="command")
    recounted = recount(history, flows[kind], snap)
    for key, value in recounted.items():
        assert snap.tallies[key] == value, key
    # And the gates' numbers are those tallies judged: the approval gate's n and value.
    gates_by_name = {g["name"]: g for g in snap.gates}
    if kind == "l3":
        approval = recounted["approval"]
        assert gates_by_name["approval_rate"]["n"] == approval["n"]
        assert gates_by_name["approval_rate"]["value"] == approval["k"] / approval["n"]


def test_finished_runs_never_checked_are_checked_before_counting(flows, history):
    # Runs that finished before replay checks existed carry no verdict (the migration
    # leaves replay_ok null): the recompute checks them rather than counting them missing.
    Run.objects.filter(workflow=flows["l3"]).update(replay_ok=None)
    snap = gates_recompute(workflow=flows["l3"], trigger="command")
    assert snap.tallies["replay"] == {"k": 6, "n": 6}
    assert not Run.objects.filter(
        workflow=flows["l3"], status__in=["executed", "failed"], replay_ok=None
    ).exists()


@pytest.mark.django_db(transaction=True)
def test_counting_on_two_connections_gives_the_numbers_of_one(flows, history, monkeypatch):
    # Outside a transaction the workflows' windows are counted in two halves at once.
    from ladder.models import Workflow
    from traces import gates as gate_sql
    from traces.gates import run_tallies, window_for

    for i in range(8):
        Workflow.objects.create(slug=f"extra-{i}", name=f"extra {i}", rung=1 + i % 5)
    now = timezone.now()
    windows = [
        window_for(workflow_id=w.pk, rung=w.rung, days=90, now=now)
        for w in Workflow.objects.order_by("pk")
    ]
    assert gate_sql._parallel(windows)
    split = run_tallies(windows)
    monkeypatch.setattr(gate_sql, "_parallel", lambda windows: False)
    assert run_tallies(windows) == split
    assert split[flows["l3"].pk].approval.n == 8


def test_the_database_packs_the_gate_columns_as_the_counting_code_unpacks_them(flows, history):
    from traces.gate_code import gate_code_decode, gate_code_encode

    for run in Run.objects.filter(workflow__in=list(flows.values())):
        columns = {
            "decider": run.decider,
            "status": run.status,
            "probe": run.probe,
            "audit": run.audit,
            "outcome": run.outcome,
            "shadow_outcome": run.shadow_outcome,
            "light_edit": run.light_edit,
            "matched": run.matched,
            "replay_ok": run.replay_ok,
        }
        assert run.gate_code == gate_code_encode(**columns)
        assert gate_code_decode(run.gate_code) == columns
