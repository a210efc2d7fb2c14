"""Shadow agreement: what an L2/L3 draft policy would have done beside what people did,
on a small hand-made history. Runs come in through the gateway (POST /api/v1/runs),
people decide through the review service, and the counts are checked three ways: the
selector, the workflow page, and a recount from the replays (docs/policy.md, "Shadow
decisions")."""

from collections import Counter
from decimal import Decimal

import pytest

from approvals import services
from traces.models import Run
from traces.selectors import person_verdict, shadow_agreement
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
            "id": "cap-eur",
            "kind": "value_cap",
            "action": "refund.issue",
            "max": "200.00",
            "currency": "EUR",
            "then": "escalate",
            "control": "value_cap",
        },
        {
            "id": "cap-usd",
            "kind": "value_cap",
            "action": "refund.issue",
            "max": "300.00",
            "currency": "USD",
            "then": "escalate",
            "control": "value_cap",
        },
        {
            "id": "country",
            "kind": "condition",
            "when": {"param": "country", "op": "not_in", "value": ["DE", "NL"]},
            "then": "deny",
            "control": "data_scope",
        },
    ],
}


def submit(client, wf, key, amount, currency="EUR", country="DE", **proposal):
    body = {
        "workflow": wf.slug,
        "idempotency_key": key,
        "input": {"message": f"refund for {key}"},
        "proposal": {
            "action": "refund.issue",
            "params": {"amount": amount, "currency": currency, "country": country},
            **proposal,
        },
    }
    response = client.post("/runs", body)
    assert response.status_code == 201, response.content
    return response.json()["id"]


def decide(run_id, user, decision):
    run = Run.objects.select_related("workflow").get(pk=run_id)
    view = services.review_open(run=run, user=user)
    services.review_decide(
        run=run, reviewer=user, seen_hash=view.hash, seen_version=run.version, decision=decision
    )


APPROVE = services.Approval(approve=True)
REJECT = services.Approval(approve=False, reason="not owed")


@pytest.fixture
def history(flows, people, agent):
    """On the L3 workflow with draft version 1:

    run  value       the draft would  the person
    a    50 EUR      allow            approves
    b    120 EUR     allow            rejects     (would-be mistake)
    c    75.50 USD   allow            rejects     (would-be mistake)
    d    10 EUR      allow            rejects     (would-be mistake)
    e    900 EUR     escalate         approves
    f    950 EUR     escalate         rejects
    g    30 EUR, FR  deny             rejects
    h    40 EUR, FR  deny             approves
    i    60 EUR      allow            has not decided yet
    then version 2 is saved, and
    j    20 EUR      allow (v2)       approves
    """
    wf = flows["l3"]
    policy_set(workflow=wf, document=DRAFT, by=people["owner"])
    client = agent(wf)
    rev = people["rev"]
    plan = [
        ("a", 50, "EUR", "DE", APPROVE),
        ("b", 120, "EUR", "DE", REJECT),
        ("c", "75.50", "USD", "NL", REJECT),
        ("d", 10, "EUR", "DE", REJECT),
        ("e", 900, "EUR", "DE", APPROVE),
        ("f", 950, "EUR", "DE", REJECT),
        ("g", 30, "EUR", "FR", REJECT),
        ("h", 40, "EUR", "FR", APPROVE),
        ("i", 60, "EUR", "DE", None),
    ]
    ids = {}
    for key, amount, currency, country, decision in plan:
        ids[key] = submit(client, wf, key, amount, currency, country)
        if decision is not None:
            decide(ids[key], rev, decision)
    policy_set(workflow=wf, document={**DRAFT, "audit_sample_rate": 0.1}, by=people["owner"])
    ids["j"] = submit(client, wf, "j", 20)
    decide(ids["j"], rev, APPROVE)
    return wf, ids, client


def test_the_counts_match_the_hand_made_history(history):
    wf, ids, _ = history
    result = shadow_agreement(wf, version=1)
    assert result.versions == [(2, 1), (1, 9)]
    assert result.table == {
        "allow": {"approved": 1, "other": 0, "rejected": 3},
        "escalate": {"approved": 1, "other": 0, "rejected": 1},
        "deny": {"approved": 1, "other": 0, "rejected": 1},
    }
    assert result.decided == 8 and result.waiting == 1
    assert (result.agreed, result.settled) == (2, 6)  # a approved; g rejected / 4 + 2
    assert result.mistakes_count == 3
    assert {str(r.id) for r in result.mistakes} == {ids["b"], ids["c"], ids["d"]}
    assert result.mistakes_value == [("EUR", Decimal("130.0000")), ("USD", Decimal("75.5000"))]
    assert result.mistakes_without_value == 0
    # By default the newest version that left shadow decisions: only run j.
    newest = shadow_agreement(wf)
    assert newest.version == 2 and newest.decided == 1 and newest.mistakes_count == 0


def test_the_counts_can_be_recomputed_from_the_replays(history):
    """docs/policy.md: the policy_shadow event's decision and version, the review_decision
    event's verdict, the proposal's value and currency, from each run's replay alone."""
    wf, ids, client = history
    table, mistakes = Counter(), Counter()
    for run_id in ids.values():
        replay = client.get(f"/runs/{run_id}/replay").json()
        assert replay["verified"]
        rebuilt = replay["run"]
        shadow, decision = rebuilt["shadow"], rebuilt["decision"]
        if shadow["policy_version"] != 1 or decision is None:
            continue
        table[(shadow["decision"], decision["verdict"])] += 1
        if shadow["decision"] == "allow" and decision["verdict"] == "rejected":
            params = rebuilt["proposal"]["params"]
            mistakes[params["currency"]] += Decimal(str(params["amount"]))
    result = shadow_agreement(wf, version=1)
    for outcome, verdicts in result.table.items():
        assert table[(outcome, "approved")] == verdicts["approved"] + verdicts["other"]
        assert table[(outcome, "rejected")] == verdicts["rejected"]
    assert dict(mistakes) == {c: v.normalize() for c, v in result.mistakes_value}


def test_the_workflow_page_shows_the_agreement_and_links_each_mistake(history, login, people):
    wf, ids, _ = history
    client = login(people["compliance"])
    page = client.get(f"/workflows/{wf.slug}/?version=1").content.decode()
    assert "Draft policy against people: version 1" in page
    assert (
        'allowed <b class="n-allow">4</b>, escalated <b class="n-escalate">2</b> and '
        'denied <b class="n-deny">2</b>' in page
    )
    assert "1 more still waits for a person" in page
    assert (
        '<tr data-outcome="allow"><th scope="row">Allowed it</th><td class="num">1</td>'
        '<td class="num">0</td><td class="num">3</td></tr>' in page
    )
    assert '<b id="agreed">2 of 6</b>' in page
    assert '<span class="count" id="mistakes-count">3</span>' in page
    assert '<b class="mistakes-value">130.00 EUR</b> + <b class="mistakes-value">75.50 USD</b>' in (
        page
    )
    for key in ("b", "c", "d"):
        assert f'href="/runs/{ids[key]}/"' in page
    assert f'href="/runs/{ids["a"]}/"' not in page
    # The version links swap the panel alone.
    partial = client.get(f"/workflows/{wf.slug}/?version=2", headers={"HX-Request": "true"})
    body = partial.content.decode().strip()
    assert body.startswith('<section id="shadow"') and "version 2" in body
    assert '<span class="count" id="mistakes-count">0</span>' in body


def test_an_l2_pick_of_another_option_is_neither_agreement_nor_a_mistake(flows, people, agent):
    wf = flows["l2"]
    policy_set(workflow=wf, document={**DRAFT, "rules": DRAFT["rules"][:2]}, by=None)
    client = agent(wf)
    alternatives = [{"action": "refund.issue", "params": {"amount": 5.0, "currency": "EUR"}}]
    first = submit(client, wf, "p1", 20, alternatives=alternatives)
    other = submit(client, wf, "p2", 20, alternatives=alternatives)
    decide(first, people["rev"], services.Pick(option=0))
    decide(other, people["rev"], services.Pick(option=1))
    result = shadow_agreement(wf)
    assert result.table["allow"] == {"approved": 1, "other": 1, "rejected": 0}
    assert result.mistakes_count == 0
    assert [str(r.id) for r in result.other] == [other]


def test_the_panel_takes_four_queries_at_l3_whatever_the_history(
    history, django_assert_num_queries
):
    wf, _, _ = history
    with django_assert_num_queries(4):
        result = shadow_agreement(wf, version=1)
        assert len(result.mistakes) == 3


@pytest.mark.parametrize(
    ("status", "kind", "matched", "verdict"),
    [
        ("approved", "approve", None, "approved"),
        ("executed", "pick", "true", "approved"),  # PostgreSQL reads a JSON true as "true"
        ("executed", "pick", 1, "approved"),  # SQLite as 1
        ("approved", "pick", "false", "other"),
        ("rolled_back", "pick", 0, "other"),
        ("rejected", "approve", None, "rejected"),
        ("denied", None, None, None),  # a deadline: nobody decided
        ("pending_review", None, None, None),
    ],
)
def test_a_persons_verdict_reads_the_same_on_either_database(status, kind, matched, verdict):
    assert person_verdict(status, kind, matched) == verdict
