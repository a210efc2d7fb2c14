"""L3 -> L4 on evidence, end to end on PostgreSQL, through the surfaces people and agents
use: runs, results and metric points through the agent API; the draft policy and the
eval set through their management commands; settings, promotion requests and decisions
through the pages' forms; reviewers' decisions through the review service the queue's
forms call. Then the certificate is verified offline, and a tampered one is not."""

import json
import re
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from approvals import services
from approvals.roles import role_grant
from ladder.models import ActionType, RungChange, Workflow
from tests.factories import UserFactory, WorkflowFactory
from traces.models import Run
from traces.services.probes import probes_seed

pytestmark = pytest.mark.django_db

DRAFT = {
    "audit_sample_rate": 0.05,
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
            "max": "500.00",
            "currency": "EUR",
            "then": "deny",
            "control": "value_cap",
        },
    ],
}


@pytest.fixture
def setup(agent, tmp_path):
    people = {n: UserFactory(username=n) for n in ("rev", "owner", "compliance")}
    wf = WorkflowFactory(
        slug="refunds",
        rung=3,
        max_rung=5,
        outcome_metric="csat",
        outcome_direction="up",
    )
    ActionType.objects.create(
        workflow=wf,
        name="refund.issue",
        value_param="amount",
        currency_param="currency",
        executor="server",
        executor_path="traces.demo_executors.refund_issue",
        param_schema={"amount": {"type": "number", "required": True}},
        reversible=True,
        compensating_action="refund.reverse",
    )
    ActionType.objects.create(
        workflow=wf,
        name="refund.reverse",
        executor="server",
        executor_path="traces.demo_executors.refund_reverse",
    )
    role_grant(workflow=wf, user=people["rev"], role="reviewer", by=None)
    role_grant(workflow=wf, user=people["owner"], role="owner", by=None)
    # The owner also holds compliance here: deciding their own request is still refused.
    role_grant(workflow=wf, user=people["owner"], role="compliance", by=None)
    role_grant(workflow=wf, user=people["compliance"], role="compliance", by=None)
    draft = tmp_path / "draft.json"
    draft.write_text(json.dumps(DRAFT))
    call_command("policy_set", wf.slug, str(draft), stdout=open(tmp_path / "out", "w"))  # noqa: SIM115
    cases = tmp_path / "cases.jsonl"
    cases.write_text(
        "\n".join(
            json.dumps(
                {
                    "input": {"message": f"Order {i} arrived broken, please refund"},
                    "expected": {
                        "action": "refund.issue",
                        "params": {"amount": 20 + i, "currency": "EUR"},
                    },
                    "wrong": {
                        "action": "refund.issue",
                        "params": {"amount": 2000 + i, "currency": "EUR"},
                        "why": "a hundred times the order",
                    },
                }
            )
            for i in range(30)
        )
    )
    call_command("eval_import", wf.slug, str(cases), stdout=open(tmp_path / "out", "w"))  # noqa: SIM115
    return wf, people, agent(wf)


def open_and_decide(run: Run, user, decision) -> None:
    view = services.review_open(run=run, user=user)
    services.review_decide(
        run=run, reviewer=user, seen_hash=view.hash, seen_version=run.version, decision=decision
    )


def build_history(wf, people, api, *, runs: int, on_commit) -> dict:
    """`runs` refunds through the gateway, each decided by the reviewer; attention probes
    seeded as the beat seeds them, every one caught. Returns what was done."""
    done = {"approved": 0, "rejected": 0, "probes_caught": 0}
    mine: set[str] = set()
    for i in range(runs):
        big = i % 100 == 0  # now and then an amount over the cap, which the reviewer refuses
        amount = 900 + i if big else 20 + (i % 150)
        response = api.post(
            "/runs",
            {
                "workflow": wf.slug,
                "idempotency_key": f"order-{i}",
                "input": {"message": f"Refund request for order {i}, item damaged"},
                "proposal": {
                    "action": "refund.issue",
                    "params": {"amount": amount, "currency": "EUR", "order": f"O-{i}"},
                },
            },
        )
        assert response.status_code == 201, response.content
        run_id = response.json()["id"]
        mine.add(run_id)
        run = Run.objects.select_related("workflow").get(pk=run_id)
        if big:
            open_and_decide(run, people["rev"], services.Approval(approve=False, reason="too much"))
            done["rejected"] += 1
        else:
            # The worker executes after the decision commits (Celery runs eagerly here).
            with on_commit(execute=True):
                open_and_decide(run, people["rev"], services.Approval(approve=True))
            done["approved"] += 1
        if i % 40 == 39:
            probes_seed(workflow=wf)
            # What waits in the queue that this agent did not send is a probe: the
            # reviewer looks, and refuses it.
            for other in Run.objects.filter(workflow=wf, status="pending_review").select_related(
                "workflow"
            ):
                if str(other.pk) not in mine:
                    open_and_decide(
                        other, people["rev"], services.Approval(approve=False, reason="wrong")
                    )
                    done["probes_caught"] += 1
    return done


def test_a_workflow_with_good_l3_history_climbs_to_l4(
    setup, client, clock, tmp_path, django_capture_on_commit_callbacks
):
    wf, people, api = setup
    client.force_login(people["owner"])
    response = client.post(f"/workflows/{wf.slug}/settings", {"form": "probes", "percent": "10"})
    assert response.status_code in (200, 302), response.content
    wf.refresh_from_db()
    assert wf.probe_rate == pytest.approx(0.10)
    # The business metric: a month of baseline before the rung began, then better since.
    began = wf.created_at
    points = [
        {
            "metric": "csat",
            "value": 4.0 + (i % 3) / 10,
            "at": (began - timedelta(days=1 + i)).isoformat(),
        }
        for i in range(15)
    ] + [
        {
            "metric": "csat",
            "value": 4.3 + (i % 3) / 10,
            "at": (began + timedelta(days=1 + i)).isoformat(),
        }
        for i in range(15)
    ]
    response = api.post(f"/workflows/{wf.slug}/metrics", {"points": points})
    assert response.status_code in (200, 201), response.content

    done = build_history(wf, people, api, runs=1010, on_commit=django_capture_on_commit_callbacks)
    assert done["probes_caught"] >= 20
    assert Run.objects.filter(workflow=wf, status="executed").count() == done["approved"]

    # Too early: a gate lacks time at the rung, and the page says so; nothing is stored.
    client.force_login(people["owner"])
    response = client.post(f"/workflows/{wf.slug}/promotion", {"to_rung": "4", "note": "early"})
    assert response.status_code == 422
    assert "Time at the rung" in response.content.decode()
    assert "Rollback drill: insufficient." in response.content.decode()  # none run yet
    clock.advance(29 * 86400)
    client.force_login(people["owner"])  # a month later: a new session

    # The owner runs a timed rollback drill from the workflow page (the workers revert
    # ten refunds through refund.reverse); the L3 -> L4 gate needs one passed.
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(f"/workflows/{wf.slug}/drills", {"batch": "10"})
    assert response.status_code == 302, response.content
    assert "Passed" in client.get(response["Location"]).content.decode()
    assert Run.objects.filter(workflow=wf, status="rolled_back").count() == 10

    # Skipping a rung is refused with the reason.
    response = client.post(f"/workflows/{wf.slug}/promotion", {"to_rung": "5", "note": "skip"})
    assert response.status_code == 422
    assert "one rung at a time" in response.content.decode()

    # The climb is asked for, with every gate shown on the request page.
    response = client.post(f"/workflows/{wf.slug}/promotion", {"to_rung": "4", "note": "ready"})
    assert response.status_code == 302, response.content.decode()[:3000]
    request_url = response["Location"]
    page = client.get(request_url).content.decode()
    assert "Over 1,0" in page and "95% CI" in page

    # The requester cannot decide it, even holding compliance.
    request_id = int(re.search(r"/promotions/(\d+)/", request_url).group(1))
    response = client.post(
        f"/promotions/{request_id}/decide", {"verdict": "approve", "reason": "mine"}
    )
    assert response.status_code == 403
    assert Workflow.objects.get(pk=wf.pk).rung == 3

    # Another compliance user approves; the workflow is at L4 at once.
    client.force_login(people["compliance"])
    response = client.post(
        f"/promotions/{request_id}/decide",
        {"verdict": "approve", "reason": "gates met, drill passed"},
    )
    assert response.status_code == 302
    assert Workflow.objects.get(pk=wf.pk).rung == 4
    change = RungChange.objects.filter(workflow=wf).order_by("-created_at").first()
    assert (change.kind, change.from_rung, change.to_rung) == ("promotion", 3, 4)

    # The gateway's very next run is decided by the policy, now in force.
    response = api.post(
        "/runs",
        {
            "workflow": wf.slug,
            "idempotency_key": "after-promotion",
            "input": {"message": "Refund for order 5000"},
            "proposal": {"action": "refund.issue", "params": {"amount": 25, "currency": "EUR"}},
        },
    )
    answer = response.json()
    assert answer["rung"] == 4
    assert answer["policy"]["outcome"] == "allow"

    # The certificate, downloaded from the workflow page, verifies offline.
    page = client.get(f"/workflows/{wf.slug}/").content.decode()
    link = re.search(r'href="(/workflows/refunds/certificates/[0-9a-f-]+\.json)"', page).group(1)
    cert = client.get(link)
    assert cert.status_code == 200
    good = tmp_path / "certificate.json"
    good.write_bytes(cert.content)
    call_command("verify_certificate", str(good), stdout=open(tmp_path / "ok", "w"))  # noqa: SIM115
    document = json.loads(cert.content)
    assert document["certificate"]["rung"] == 4
    document["certificate"]["rung"] = 5
    bad = tmp_path / "tampered.json"
    bad.write_text(json.dumps(document))
    with pytest.raises(CommandError):
        call_command("verify_certificate", str(bad), stdout=open(tmp_path / "bad", "w"))  # noqa: SIM115
