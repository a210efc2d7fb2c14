import pytest
from django.contrib.auth.models import User

from approvals.roles import role_grant
from ladder.models import ActionType
from tests.factories import UserFactory, WorkflowFactory
from traces.auth import AgentAuth
from traces.services.gateway import run_submit

REPLY_SCHEMA = {"to": {"type": "string", "required": True}, "body": {"type": "string"}}


@pytest.fixture
def people(db):
    return {
        name: UserFactory(username=name)
        for name in ("rev", "rev2", "owner", "compliance", "admin", "stranger")
    }


@pytest.fixture
def flows(db, people):
    """L1/L2/L3 workflows with roles granted like the demo."""
    l1 = WorkflowFactory(slug="drafts", rung=1)
    ActionType.objects.create(workflow=l1, name="reply.send", param_schema=REPLY_SCHEMA)
    l2 = WorkflowFactory(slug="picks", rung=2)
    for name in ("refund.issue", "voucher.issue"):
        ActionType.objects.create(
            workflow=l2,
            name=name,
            value_param="amount",
            currency_param="currency",
            param_schema={"amount": {"type": "number", "required": True}},
        )
    l3 = WorkflowFactory(slug="approvals", rung=3)
    ActionType.objects.create(
        workflow=l3,
        name="refund.issue",
        value_param="amount",
        currency_param="currency",
        param_schema={"amount": {"type": "number", "required": True}},
    )
    for wf in (l1, l2, l3):
        role_grant(workflow=wf, user=people["rev"], role="reviewer", by=None)
        role_grant(workflow=wf, user=people["rev2"], role="reviewer", by=None)
        role_grant(workflow=wf, user=people["owner"], role="owner", by=None)
        role_grant(workflow=wf, user=people["compliance"], role="compliance", by=None)
        role_grant(workflow=wf, user=people["admin"], role="admin", by=None)
    return {"l1": l1, "l2": l2, "l3": l3}


@pytest.fixture
def submit(flows):
    auth = AgentAuth(
        token_id=0, prefix="lat_test", workflow_ids=frozenset(w.id for w in flows.values())
    )
    counter = {"n": 0}

    def make(kind, **proposal_overrides):
        counter["n"] += 1
        wf = flows[kind]
        if kind == "l1":
            proposal = {
                "action": "reply.send",
                "summary": "Reply about the parcel",
                "params": {"to": "ana@example.com", "body": "Hello, your parcel is on its way."},
            }
        elif kind == "l2":
            proposal = {
                "action": "refund.issue",
                "params": {"amount": 20.0, "currency": "EUR"},
                "alternatives": [
                    {"action": "refund.issue", "params": {"amount": 10.0}, "score": 0.5},
                    {"action": "voucher.issue", "params": {"amount": 5.0}, "score": 0.2},
                ],
            }
        else:
            proposal = {"action": "refund.issue", "params": {"amount": 42.0, "currency": "EUR"}}
        proposal.update(proposal_overrides)
        run, _ = run_submit(
            auth=auth,
            body={
                "workflow": wf.slug,
                "idempotency_key": f"t-{counter['n']}",
                "input": {"message": "where is my parcel?"},
                "tool_calls": [{"name": "orders.lookup", "arguments": {"id": 1}, "result": "ok"}],
                "output": None,
                "proposal": proposal,
            },
        )
        return run

    return make


@pytest.fixture
def login(client):
    def as_(user: User):
        client.force_login(user)
        return client

    return as_


@pytest.fixture
def seen():
    """`seen(run)`: the hidden fields a review form carries for the run as it is now."""
    from approvals import services
    from approvals.review import snapshot_hash
    from traces.models import Run

    def fields(run) -> dict:
        fresh = Run.objects.select_related("workflow").get(pk=run.pk)
        return {
            "seen_version": fresh.version,
            "seen_hash": snapshot_hash(services.run_snapshot(run=fresh)),
        }

    return fields


@pytest.fixture
def world(people, flows):
    """Runs for the history's tests (tests/approvals/history_setup.py)."""
    from tests.approvals.history_setup import build_world

    return build_world(people, flows)
