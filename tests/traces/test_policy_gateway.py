"""POST /runs at L4/L5 under a real policy envelope, and shadow decisions at L2/L3.

Everything goes through the agent's API and `policy_set` (the service behind the command
and the editor); the answers are read from what the agent and the replay show.
"""

import copy
from decimal import Decimal

import pytest
from django.core.management import call_command
from django.db import connection
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ladder.models import PolicyVersion
from tests.factories import certify
from tests.ladder.test_policy import CONTRACT
from traces.services.policy import policy_set

pytestmark = pytest.mark.django_db


def envelope(**extra_rules):
    """The contract's first three rules (tests/ladder/test_policy.py CONTRACT: actions, a
    200.00 EUR cap, fraud_adjacent escalates), a deny flag, and any `extra_rules`."""
    blocked = {"id": "blocked", "kind": "flag", "flag": "blocked_customer", "then": "deny",
               "control": "rbac"}  # fmt: skip
    rules = [*copy.deepcopy(CONTRACT["rules"][:3]), blocked, *extra_rules.values()]
    return {"audit_sample_rate": 0, "rules": rules}


def run(key, amount, *, wf, flags=(), **params):
    return {
        "workflow": wf.slug,
        "idempotency_key": key,
        "input": {"message": f"refund please, order {key}"},
        "proposal": {
            "action": "refund.issue",
            "params": {"order_id": key, "amount": amount, "currency": "EUR", **params},
            "flags": list(flags),
        },
    }


def test_allow_escalate_and_deny_each_answer_the_agent_with_the_policy(make_workflow, agent):
    wf = make_workflow(rung=4)
    version = policy_set(workflow=wf, document=envelope(), by=None)
    client = agent(wf)

    allowed = client.post("/runs", run("a", "200.00", wf=wf)).json()
    assert allowed["status"] == "approved"
    assert allowed["policy"] == {"version": version.number, "outcome": "allow", "rules_fired": []}

    over = client.post("/runs", run("b", "200.01", wf=wf)).json()
    assert over["status"] == "pending_review" and over["queue"] == "escalated"
    assert over["policy"]["outcome"] == "escalate" and over["policy"]["rules_fired"] == ["cap"]
    assert "200.00" in over["escalation_reason"]
    assert over["deadline_at"] is not None

    flagged = client.post("/runs", run("c", 5, wf=wf, flags=["fraud_adjacent"])).json()
    assert flagged["policy"]["rules_fired"] == ["fraud"]

    denied = client.post("/runs", run("d", 5, wf=wf, flags=["blocked_customer"])).json()
    assert denied["status"] == "denied"
    assert denied["decision"]["verdict"] == "denied" and denied["decision"]["reason"]
    assert denied["policy"]["rules_fired"] == ["blocked"]

    # The trace holds the same decision, with the version and what it was made on.
    replay = client.get(f"/runs/{over['id']}/replay").json()
    assert replay["complete"] and replay["verified"]
    rebuilt = replay["run"]["policy"]
    assert rebuilt["decision"] == "escalate"
    assert rebuilt["policy_version"] == version.number
    assert rebuilt["rules_fired"] == ["cap"]
    again = client.get(f"/runs/{denied['id']}").json()
    assert again["policy"] == denied["policy"]


def test_without_a_policy_an_l4_action_escalates_and_says_so(make_workflow, agent):
    wf = make_workflow(rung=5)
    data = agent(wf).post("/runs", run("a", 1, wf=wf)).json()
    assert data["status"] == "pending_review" and data["queue"] == "escalated"
    assert data["policy"] == {"version": None, "outcome": "escalate", "rules_fired": []}
    assert "no policy envelope is in force" in data["escalation_reason"]


def test_a_new_version_applies_to_the_very_next_run(make_workflow, agent):
    wf = make_workflow(rung=4)
    client = agent(wf)
    policy_set(workflow=wf, document=envelope(), by=None)
    assert client.post("/runs", run("a", 150, wf=wf)).json()["status"] == "approved"
    tighter = envelope()
    tighter["rules"][1]["max"] = "100"
    v2 = policy_set(workflow=wf, document=tighter, by=None)
    data = client.post("/runs", run("b", 150, wf=wf)).json()
    assert data["status"] == "pending_review"
    assert data["policy"]["version"] == v2.number == 2


def test_the_workflow_api_shows_the_policy_in_force_or_the_draft(make_workflow, agent):
    wf = make_workflow(rung=3)
    client = agent(wf)
    assert client.get(f"/workflows/{wf.slug}").json()["policy"] is None
    policy_set(workflow=wf, document=envelope(), by=None)
    data = client.get(f"/workflows/{wf.slug}").json()
    assert data["policy"] is None
    assert data["draft_policy"]["version"] == 1
    assert "refund.issue above 200.00 EUR always goes to a person" in " ".join(
        data["draft_policy"]["text"]
    )
    wf.rung = 4
    wf.save()
    data = client.get(f"/workflows/{wf.slug}").json()
    assert data["policy"]["version"] == 1 and data["draft_policy"] is None
    assert data["policy"]["rules"][1] == {
        "id": "cap",
        "kind": "value_cap",
        "action": "refund.issue",
        "max": "200.00",
        "currency": "EUR",
        "then": "escalate",
        "control": "value_cap",
    }


def test_shadow_decisions_at_l3_decide_nothing_and_are_kept_beside_the_run(make_workflow, agent):
    wf = make_workflow(rung=3)
    policy_set(workflow=wf, document=envelope(), by=None)
    client = agent(wf)
    small = client.post("/runs", run("a", 10, wf=wf)).json()
    big = client.post("/runs", run("b", 900, wf=wf)).json()
    for data in (small, big):
        assert data["status"] == "pending_review" and data["queue"] == "l3"
        assert data["policy"] is None
    from traces.models import Run

    assert Run.objects.get(pk=small["id"]).shadow["outcome"] == "allow"
    assert Run.objects.get(pk=big["id"]).shadow == {
        "version": 1,
        "outcome": "escalate",
        "rules_fired": ["cap"],
    }
    replay = client.get(f"/runs/{big['id']}/replay").json()
    assert replay["complete"] and replay["verified"]


def test_policy_set_command_prints_the_version_and_refuses_bad_documents(make_workflow, tmp_path):
    import json
    from io import StringIO

    from django.core.management.base import CommandError

    wf = make_workflow(rung=4)
    good = tmp_path / "good.json"
    good.write_text(json.dumps(envelope()))
    out = StringIO()
    call_command("policy_set", wf.slug, str(good), stdout=out)
    assert out.getvalue().strip() == "1"
    bad = tmp_path / "bad.json"
    bad.write_text(
        json.dumps(
            {
                "audit_sample_rate": 0,
                "rules": [
                    {
                        "id": "a",
                        "kind": "allow_actions",
                        "actions": ["refund.issue"],
                        "control": "allowed_tools",
                    },
                    {"id": "x", "kind": "nonsense", "then": "deny", "control": "rbac"},
                    {
                        "id": "c",
                        "kind": "value_cap",
                        "action": "refund.issue",
                        "max": "lots",
                        "then": "escalate",
                        "control": "value_cap",
                    },
                    {
                        "id": "r",
                        "kind": "rate_limit",
                        "action": "refund.issue",
                        "window_seconds": 0,
                        "max_count": 1,
                        "per": "workflow",
                        "then": "escalate",
                        "control": "rate_limit",
                    },
                    {
                        "id": "g",
                        "kind": "flag",
                        "flag": "f",
                        "action": "ghost.action",
                        "then": "deny",
                        "control": "rbac",
                    },
                ],
            }
        )
    )
    with pytest.raises(CommandError) as refused:
        call_command("policy_set", wf.slug, str(bad))
    message = str(refused.value)
    for rule in ("x.kind", "c.max", "r.window_seconds", "g.action"):
        assert rule in message
    assert PolicyVersion.objects.filter(workflow=wf).count() == 1  # nothing half-saved


def test_policy_versions_cannot_be_rewritten(make_workflow):
    wf = make_workflow(rung=4)
    policy_set(workflow=wf, document=envelope(), by=None)
    from django.db import IntegrityError, transaction

    for sql in ("UPDATE ladder_policyversion SET note = 'x'", "DELETE FROM ladder_policyversion"):
        with (
            pytest.raises(IntegrityError, match="append-only"),
            transaction.atomic(),
            connection.cursor() as cur,
        ):
            cur.execute(sql)


def limit(rule_id="rate", **fields):
    return {
        "id": rule_id,
        "kind": "rate_limit",
        "action": "refund.issue",
        "window_seconds": 3600,
        "per": "workflow",
        "then": "escalate",
        "control": "rate_limit",
        **fields,
    }


def statuses(client, wf, n, *, prefix, amount=1, **params):
    return [
        client.post("/runs", run(f"{prefix}-{i}", amount, wf=wf, **params)).json()["status"]
        for i in range(n)
    ]


def test_a_rate_limit_of_n_allows_exactly_n_and_retries_do_not_count(make_workflow, agent):
    wf = make_workflow(rung=4)
    policy_set(workflow=wf, document=envelope(rate=limit(max_count=3)), by=None)
    client = agent(wf)
    first = client.post("/runs", run("k-0", 1, wf=wf)).json()
    # The same request again is the same run: it is not counted a second time.
    assert client.post("/runs", run("k-0", 1, wf=wf)).json()["id"] == first["id"]
    rest = statuses(client, wf, 4, prefix="k-x")
    assert [first["status"], *rest] == ["approved"] * 3 + ["pending_review"] * 2
    over = client.get(f"/runs/{client.post('/runs', run('k-y', 1, wf=wf)).json()['id']}/replay")
    event = over.json()["run"]["policy"]
    assert event["rules_fired"] == ["rate"]
    assert event["counters"]["rates"]["rate"] == {"count": 3, "total": "3.0000"}


def test_a_per_customer_limit_counts_each_customer_apart(make_workflow, agent):
    wf = make_workflow(rung=4)
    per_customer = limit(max_count=2, per="param:customer", then="deny")
    policy_set(workflow=wf, document=envelope(rate=per_customer), by=None)
    client = agent(wf)
    ana = statuses(client, wf, 3, prefix="ana", customer="ana@example.com")
    bo = statuses(client, wf, 2, prefix="bo", customer="bo@example.com")
    assert ana == ["approved", "approved", "denied"]
    assert bo == ["approved", "approved"]


def test_a_value_limit_lets_through_up_to_its_total(make_workflow, agent):
    wf = make_workflow(rung=4)
    policy_set(workflow=wf, document=envelope(rate=limit(max_value="100.00")), by=None)
    client = agent(wf)
    got = [
        client.post("/runs", run(f"v-{i}", amount, wf=wf)).json()["status"]
        for i, amount in enumerate(["60.00", "40.00", "0.01"])
    ]
    assert got == ["approved", "approved", "pending_review"]


def test_escalated_and_denied_runs_do_not_use_up_the_budget(make_workflow, agent):
    wf = make_workflow(rung=4)
    policy_set(workflow=wf, document=envelope(rate=limit(max_count=1)), by=None)
    client = agent(wf)
    flagged = client.post("/runs", run("f", 1, wf=wf, flags=["fraud_adjacent"])).json()
    assert flagged["status"] == "pending_review"
    assert client.post("/runs", run("g", 1, wf=wf)).json()["status"] == "approved"


def test_first_seen_means_never_in_any_earlier_run(make_workflow, agent):
    wf = make_workflow(rung=3)
    client = agent(wf)
    # History from before the rule existed counts: it is filled in when the version is saved.
    client.post("/runs", run("old", 1, wf=wf, customer="old@example.com"))
    wf.rung = 4
    wf.save()
    certify(wf)
    new = {"id": "new", "kind": "first_seen", "per": "param:customer", "then": "escalate",
           "control": "rbac"}  # fmt: skip
    policy_set(workflow=wf, document=envelope(new=new), by=None)
    first = client.post("/runs", run("a", 1, wf=wf, customer="cy@example.com")).json()
    assert first["status"] == "pending_review" and first["policy"]["rules_fired"] == ["new"]
    again = client.post("/runs", run("b", 1, wf=wf, customer="cy@example.com")).json()
    assert again["status"] == "approved"
    known = client.post("/runs", run("c", 1, wf=wf, customer="old@example.com")).json()
    assert known["status"] == "approved"
    missing = client.post("/runs", run("d", 1, wf=wf)).json()  # no customer: cannot tell
    assert missing["status"] == "pending_review"


def test_allowed_runs_are_sampled_for_audit_by_the_documented_formula(make_workflow, agent):
    from ladder.policy import audit_sampled
    from traces.models import Run

    wf = make_workflow(rung=4)
    doc = envelope()
    doc["audit_sample_rate"] = 0.5
    policy_set(workflow=wf, document=doc, by=None)
    client = agent(wf)
    ids = [client.post("/runs", run(f"s-{i}", 1, wf=wf)).json()["id"] for i in range(12)]
    for run_id in ids:
        sampled = audit_sampled(run_id, 0.5)
        assert Run.objects.get(pk=run_id).audit == ("due" if sampled else "")
        event = client.get(f"/runs/{run_id}/replay").json()["run"]["policy"]
        assert event["audit_sampled"] is sampled


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    cap=st.decimals(min_value=0, max_value=10**6, places=2),
    spelling=st.sampled_from(["str", "num"]),
    other=st.sampled_from(["USD", "GBP"]),
)
def test_caps_hold_at_the_boundary_through_the_gateway(make_workflow, agent, cap, spelling, other):
    wf = make_workflow(rung=4)
    doc = envelope()
    doc["rules"][1]["max"] = str(cap)
    policy_set(workflow=wf, document=doc, by=None)
    client = agent(wf)

    def spelled(value):
        return str(value) if spelling == "str" else float(value)

    def status(key, value, currency="EUR"):
        body = run(key, spelled(value), wf=wf)
        body["proposal"]["params"]["currency"] = currency
        return client.post("/runs", body).json()["status"]

    assert status("at", cap) == "approved"
    assert status("over", cap + Decimal("0.01")) == "pending_review"
    assert status("other", cap, other) == "pending_review"


def test_an_allow_on_counters_that_filled_up_meanwhile_is_decided_again(
    make_workflow, agent, monkeypatch
):
    """The gateway reads the counters without a lock; its INSERT re-checks an allow under
    the counters' locks. Here the read is made stale on purpose (as if a concurrent run
    was allowed in between): the stale allow is refused by the database, nothing is stored
    for it, and the proposal is decided again on fresh counters."""
    from ladder.policy import Counters
    from traces.models import PolicyAllowance
    from traces.services import policy as policy_service

    wf = make_workflow(rung=4)
    policy_set(workflow=wf, document=envelope(rate=limit(max_count=1)), by=None)
    client = agent(wf)
    assert client.post("/runs", run("first", 1, wf=wf)).json()["status"] == "approved"
    real = policy_service.read_counters
    reads = []

    def stale_once(*args, **kwargs):
        fresh = real(*args, **kwargs)
        reads.append(fresh)
        if len(reads) == 1:
            return Counters(rates={"rate": (0, Decimal(0))}, seen=fresh.seen)
        return fresh

    monkeypatch.setattr(policy_service, "read_counters", stale_once)
    second = client.post("/runs", run("second", 1, wf=wf)).json()
    assert len(reads) == 2
    assert second["status"] == "pending_review" and second["policy"]["rules_fired"] == ["rate"]
    assert PolicyAllowance.objects.filter(workflow=wf).count() == 1
    replay = client.get(f"/runs/{second['id']}/replay").json()
    assert replay["run"]["policy"]["counters"]["rates"]["rate"]["count"] == 1


def test_the_counters_are_read_by_index_even_in_the_generic_plan(make_workflow):
    """The gateway's counters statement is prepared, and PostgreSQL switches a prepared
    statement to a generic plan after a few runs: that plan too must look each key up
    by every column of its index, or each submission would read the workflow's whole
    history of allowances and customers."""
    import re as regex

    from traces.services.policy import _READ_SQL

    wf = make_workflow(rung=4)
    numbered = iter(range(1, 100))
    sql = regex.sub("%s", lambda _: f"${next(numbered)}", _READ_SQL)
    with connection.cursor() as cur:
        cur.execute("SET LOCAL plan_cache_mode = force_generic_plan")
        cur.execute(f"PREPARE counters_probe AS {sql}")
        try:
            cur.execute(
                "EXPLAIN EXECUTE counters_probe(%s, %s, ARRAY[now()]::timestamptz[], %s, "
                "%s, false, %s, %s)",
                [["refund.issue"], ["a" * 64], [""], wf.id, ["b" * 64], wf.id],
            )
            plan = "\n".join(row[0] for row in cur.fetchall())
        finally:
            cur.execute("DEALLOCATE counters_probe")
    assert "Bitmap" not in plan and "Hash" not in plan and "Seq Scan" not in plan, plan
    assert regex.search(r"allowance_window_idx.*\n.*subject\)::text = r\.subject", plan), plan
    assert regex.search(r"subject_seen_unique.*\n.*\(subject = m\.subject\)", plan), plan
