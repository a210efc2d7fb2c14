"""The workflow and promotion pages through the Django test client: who sees and does
what, the gates as the page writes them, refusals on the page, and constant query counts
on the lists."""

from datetime import timedelta

import pytest
from django.utils import timezone

from approvals.models import PromotionRequest
from approvals.roles import role_grant
from approvals.services import promotion_decide, promotion_request
from ladder import gates
from ladder.models import ActionType, GateSnapshot
from tests.factories import UserFactory, WorkflowFactory

pytestmark = pytest.mark.django_db

HTMX = {"HX-Request": "true"}


def snapshot_of(wf, **tallies) -> GateSnapshot:
    """A stored snapshot computed by ladder.gates from the given tallies: for tests of
    how a page draws a snapshot, not of how one is counted."""
    now = timezone.now()
    facts = gates.WorkflowFacts(
        rung=wf.rung,
        max_rung=wf.max_rung,
        risk_class=wf.risk_class,
        action_types=("refund.issue",),
        has_owner=True,
        rung_since=now - timedelta(days=60),
        now=now,
        window_days=90,
    )
    counted = gates.Tallies(rung=wf.rung, **tallies)
    found = gates.gates_evaluate(facts, counted)
    verdict = gates.eligibility(facts, found)
    return GateSnapshot.objects.create(
        workflow=wf,
        computed_at=now,
        rung=wf.rung,
        target_rung=verdict.target_rung,
        window_days=90,
        window_start=now - timedelta(days=90),
        window_end=now,
        eligible=verdict.eligible,
        reasons=list(verdict.reasons),
        tallies={"volume": counted.volume},
        gates=[g.as_json() for g in found],
        trigger=GateSnapshot.Trigger.NIGHTLY,
    )


@pytest.fixture
def l0(people):
    wf = WorkflowFactory(slug="assist", rung=0, owner=people["owner"])
    ActionType.objects.create(workflow=wf, name="reply.send")
    for name in ("owner", "compliance", "admin"):
        role_grant(workflow=wf, user=people[name], role=name, by=None)
    role_grant(workflow=wf, user=people["rev"], role="reviewer", by=None)
    return wf


@pytest.fixture
def other_compliance(db):
    user = UserFactory(username="other_compliance")
    role_grant(workflow=WorkflowFactory(slug="elsewhere"), user=user, role="compliance", by=None)
    return user


# -- who may see and do what ---------------------------------------------------------------

ROLES = ["anonymous", "rev", "owner", "compliance", "admin", "stranger", "other_compliance"]
# fmt: off
EXPECTED = {
    #              anon rev  owner compl admin stranger other_compliance
    "list":       (302, 200, 200, 200, 200, 200, 200),
    "detail":     (302, 200, 200, 200, 200, 404, 404),
    "decide":     (302, 403, 403, 302, 302, 404, 404),
    "withdraw":   (302, 403, 302, 403, 403, 404, 404),
    "recompute":  (302, 403, 302, 302, 302, 404, 404),
    "request":    (302, 403, 409, 403, 409, 404, 404),
}
# fmt: on


@pytest.mark.parametrize("view", list(EXPECTED))
@pytest.mark.parametrize("role", ROLES)
def test_each_role_gets_the_status_it_must_on_every_promotion_page(
    client, people, l0, other_compliance, view, role
):
    request = promotion_request(workflow=l0, by=people["owner"], note="")
    if role == "other_compliance":
        client.force_login(other_compliance)
    elif role != "anonymous":
        client.force_login(people[role])
    paths = {
        "list": lambda: client.get("/promotions/"),
        "detail": lambda: client.get(f"/promotions/{request.pk}/"),
        "decide": lambda: client.post(
            f"/promotions/{request.pk}/decide", {"verdict": "decline", "reason": "not yet"}
        ),
        "withdraw": lambda: client.post(f"/promotions/{request.pk}/withdraw"),
        "recompute": lambda: client.post(f"/workflows/{l0.slug}/gates/recompute"),
        # The open request blocks a second one: an owner is told so (409).
        "request": lambda: client.post(f"/workflows/{l0.slug}/promotion", {"note": "again"}),
    }
    expected = dict(zip(ROLES, EXPECTED[view], strict=True))[role]
    assert paths[view]().status_code == expected


def test_home_takes_owners_to_their_workflows_and_compliance_to_the_history(client, people, l0):
    owner_only = UserFactory(username="owner_only")
    role_grant(workflow=l0, user=owner_only, role="owner", by=None)
    client.force_login(owner_only)
    assert client.get("/").url == "/workflows/"
    client.force_login(people["compliance"])  # compliance on every flow, no review role
    assert client.get("/").url == "/history/"
    # A promotion waiting for a decision compliance may take: home is the promotions.
    promotion_request(workflow=l0, by=people["owner"], note="")
    assert client.get("/").url == "/promotions/"
    client.force_login(people["rev"])
    assert client.get("/").status_code == 200


def test_the_menu_offers_promotions_to_owners_and_compliance_only(client, people, l0):
    for name, shown in (("owner", True), ("compliance", True), ("rev", False)):
        client.force_login(people[name])
        page = client.get("/workflows/").content.decode()
        assert ('href="/promotions/"' in page) is shown, name


# -- the workflow page -----------------------------------------------------------------------


def test_the_workflow_page_shows_each_gate_with_its_number_interval_bar_and_sentence(
    client, people, flows
):
    wf = flows["l3"]
    snapshot_of(
        wf,
        volume=4200,
        approval=gates.Count(4120, 4200),
        probes=gates.Count(24, 25),
        failure=gates.Count(12, 4000),
        replay=gates.Count(4000, 4000),
    )
    client.force_login(people["rev"])
    page = client.get(f"/workflows/{wf.slug}/").content.decode()
    assert "Gates for L3 → L4" in page
    assert 'data-gate="approval_rate"' in page
    assert "Over 4,200 runs reviewers approved the agent&#x27;s action 98.1%" in page
    assert "(95% CI 97.6\N{EN DASH}98.5%)" in page
    assert "<td>97.6\N{EN DASH}98.5%</td>" in page
    assert "at least 95.0%" in page
    assert "Not eligible for L4" in page
    assert "<svg" in page  # the interval drawn against the bar
    # A reviewer neither recomputes nor asks.
    assert 'id="recompute"' not in page
    assert 'id="request-form"' not in page


def test_an_owner_sees_the_request_button_disabled_with_the_reasons(client, people, flows):
    wf = flows["l1"]
    snapshot_of(wf, volume=12)
    client.force_login(people["owner"])
    page = client.get(f"/workflows/{wf.slug}/").content.decode()
    assert "Request promotion to L2" in page
    assert 'id="request-promotion" disabled' in page
    assert "Volume: insufficient." in page
    assert 'id="recompute"' in page


def test_an_eligible_owner_asks_from_the_page_and_lands_on_the_request(client, people, l0):
    snapshot_of(l0)
    client.force_login(people["owner"])
    page = client.get(f"/workflows/{l0.slug}/").content.decode()
    assert 'id="request-promotion">' in page  # enabled
    response = client.post(f"/workflows/{l0.slug}/promotion", {"note": "ready", "to_rung": "1"})
    request = PromotionRequest.objects.get(workflow=l0)
    assert response.url == f"/promotions/{request.pk}/"
    page = client.get(f"/workflows/{l0.slug}/").content.decode()
    assert f'Request <a href="/promotions/{request.pk}/">#{request.pk}</a>' in page


def test_a_refused_request_shows_why_on_the_page_and_keeps_the_note(client, people, flows):
    client.force_login(people["owner"])
    response = client.post(
        f"/workflows/{flows['l3'].slug}/promotion", {"note": "my long note", "to_rung": "4"}
    )
    assert response.status_code == 422
    page = response.content.decode()
    assert "L4 needs a written policy envelope" in page
    assert "my long note</textarea>" in page
    skip = client.post(f"/workflows/{flows['l3'].slug}/promotion", {"note": "x", "to_rung": "5"})
    assert skip.status_code == 422
    assert "from L3 the next is L4, not L5" in skip.content.decode()
    assert not PromotionRequest.objects.exists()


def test_recompute_now_stores_a_fresh_snapshot_and_htmx_gets_the_panel(client, people, flows):
    wf = flows["l1"]
    client.force_login(people["compliance"])
    response = client.post(f"/workflows/{wf.slug}/gates/recompute", headers=HTMX)
    assert response.status_code == 200
    panel = response.content.decode()
    assert panel.lstrip().startswith('<section id="gates"')
    assert "recomputed on demand by compliance" in panel
    snapshot = GateSnapshot.objects.get(workflow=wf)
    assert (snapshot.trigger, snapshot.requested_by) == ("on_demand", people["compliance"])


def test_the_rung_history_lists_every_change_with_reason_and_who(client, people, l0):
    request = promotion_request(workflow=l0, by=people["owner"], note="")
    client.force_login(people["compliance"])
    client.post(f"/promotions/{request.pk}/decide", {"verdict": "approve", "reason": "fine"})
    client.force_login(people["rev"])
    page = client.get(f"/workflows/{l0.slug}/").content.decode()
    assert "Promotion: L0 → L1" in page
    assert "approved by compliance: fine" in page


# -- the promotion pages ---------------------------------------------------------------------


def test_compliance_approves_from_the_request_page_and_the_workflow_moves(client, people, l0):
    request = promotion_request(workflow=l0, by=people["owner"], note="ready now")
    client.force_login(people["compliance"])
    page = client.get(f"/promotions/{request.pk}/").content.decode()
    assert request.evidence_hash in page
    assert "matches the stored evidence" in page
    assert 'id="approve"' in page
    response = client.post(
        f"/promotions/{request.pk}/decide", {"verdict": "approve", "reason": "both gates pass"}
    )
    assert response.status_code == 302
    l0.refresh_from_db()
    assert l0.rung == 1
    page = client.get(response.url).content.decode()
    assert "is now at L1" in page
    request.refresh_from_db()
    assert f"/workflows/{l0.slug}/certificates/{request.certificate_id}.json" in page
    assert "both gates pass" in page
    # A double click: told who decided, nothing moves twice.
    again = client.post(f"/promotions/{request.pk}/decide", {"verdict": "approve", "reason": "x"})
    assert again.status_code == 409
    assert "Already approved by compliance" in again.content.decode()


def test_the_requester_sees_no_decision_form_and_a_posted_decision_is_refused(client, people, l0):
    request = promotion_request(workflow=l0, by=people["admin"], note="")
    client.force_login(people["admin"])
    page = client.get(f"/promotions/{request.pk}/").content.decode()
    assert 'id="decide-form"' not in page
    assert 'id="withdraw"' in page
    response = client.post(
        f"/promotions/{request.pk}/decide", {"verdict": "approve", "reason": "me"}
    )
    assert response.status_code == 403
    assert "Nobody may decide their own promotion request." in response.content.decode()


def test_a_decision_without_a_reason_keeps_the_form_and_says_so(client, people, l0):
    request = promotion_request(workflow=l0, by=people["owner"], note="")
    client.force_login(people["compliance"])
    response = client.post(f"/promotions/{request.pk}/decide", {"verdict": "approve", "reason": ""})
    assert response.status_code == 422
    assert "A decision needs a reason." in response.content.decode()


def test_the_promotions_list_offers_decisions_to_compliance_and_lists_past_ones(
    client, people, l0, flows
):
    open_one = promotion_request(workflow=l0, by=people["owner"], note="")
    client.force_login(people["compliance"])
    page = client.get("/promotions/").content.decode()
    assert f'action="/promotions/{open_one.pk}/decide"' in page
    client.post(f"/promotions/{open_one.pk}/decide", {"verdict": "decline", "reason": "wait"})
    page = client.get("/promotions/").content.decode()
    assert "No promotion request waits." in page
    assert "Declined</span> by compliance" in page


# -- query counts ----------------------------------------------------------------------------


def _many_workflows(people, n):
    made = []
    for i in range(n):
        wf = WorkflowFactory(slug=f"many-{i}", rung=0, owner=people["owner"])
        ActionType.objects.create(workflow=wf, name="reply.send")
        role_grant(workflow=wf, user=people["owner"], role="owner", by=None)
        role_grant(workflow=wf, user=people["compliance"], role="compliance", by=None)
        snapshot_of(wf)
        made.append(wf)
    return made


@pytest.mark.parametrize("n", [1, 4])
def test_the_workflow_list_costs_the_same_queries_for_one_or_many(
    client, people, django_assert_num_queries, n
):
    _many_workflows(people, n)
    client.force_login(people["owner"])
    with django_assert_num_queries(8):
        assert client.get("/workflows/").status_code == 200


@pytest.mark.parametrize("n", [1, 4])
def test_the_promotions_list_costs_the_same_queries_for_one_or_many(
    client, people, django_assert_num_queries, n
):
    made = _many_workflows(people, n)
    for wf in made:
        promotion_request(workflow=wf, by=people["owner"], note="")
    # Half of them decided: the page lists open and past ones.
    for request in PromotionRequest.objects.filter(workflow__in=made[::2]):
        promotion_decide(request=request, by=people["compliance"], approve=False, reason="no")
    client.force_login(people["compliance"])
    with django_assert_num_queries(6):
        assert client.get("/promotions/").status_code == 200


def test_evidence_altered_after_the_request_shows_as_not_matching_its_hash(client, people, l0):
    request = promotion_request(workflow=l0, by=people["owner"], note="")
    altered = request.evidence_canonical.replace('"verdict":"pass"', '"verdict":"fail"', 1)
    PromotionRequest.objects.filter(pk=request.pk).update(evidence_canonical=altered)
    client.force_login(people["compliance"])
    page = client.get(f"/promotions/{request.pk}/").content.decode()
    assert "does NOT match the stored evidence" in page
