"""POST /runs keeps token scopes and workflow rules in memory; its INSERT re-checks them.

Every test here first primes the memo with one stored run, then changes the database
behind the gateway's back (the way another process, the admin or a demotion would) and
checks that the very next submission is judged on the new state, with nothing stored on
a refusal.
"""

import pytest
from django.utils import timezone

from ladder.models import ActionType, Workflow
from tests.traces.test_gateway import body
from traces import fastpath
from traces.models import AgentToken, Run

pytestmark = pytest.mark.django_db


@pytest.fixture
def primed(make_workflow, agent):
    wf = make_workflow(rung=3, personal_fields=[])
    a = agent(wf)
    first = a.post("/runs", body(wf, key="prime"))
    assert first.status_code == 201, first.content
    assert fastpath.WORKFLOWS.get(wf.slug) is not None
    return wf, a


def _count_statements(monkeypatch):
    seen = []
    real = fastpath.prepared_cursor

    def counting():
        seen.append(1)
        return real()

    monkeypatch.setattr(fastpath, "prepared_cursor", counting)
    return seen


def test_a_known_token_and_workflow_cost_one_statement(primed, monkeypatch):
    wf, a = primed
    seen = _count_statements(monkeypatch)
    resp = a.post("/runs", body(wf, key="second"))
    assert resp.status_code == 201, resp.content
    assert len(seen) == 1  # the guarded INSERT; no token or workflow lookup
    assert Run.objects.filter(workflow=wf).count() == 2


def test_a_revoked_token_is_refused_on_the_next_run(primed):
    wf, a = primed
    AgentToken.objects.update(revoked_at=timezone.now())
    resp = a.post("/runs", body(wf, key="after-revoke"))
    assert resp.status_code == 401
    assert resp.json()["error"]["code"] == "invalid_token"
    assert not Run.objects.filter(idempotency_key="after-revoke").exists()


def test_a_narrowed_scope_is_refused_on_the_next_run(primed, make_workflow):
    wf, a = primed
    token = AgentToken.objects.get()
    token.workflows.set([make_workflow()])
    resp = a.post("/runs", body(wf, key="after-scope"))
    assert resp.status_code == 403
    assert not Run.objects.filter(idempotency_key="after-scope").exists()


def test_a_widened_scope_is_honoured_at_once(primed, make_workflow):
    _wf, a = primed
    other = make_workflow(rung=1)
    AgentToken.objects.get().workflows.add(other)
    resp = a.post("/runs", body(other, key="widened"))
    assert resp.status_code == 201, resp.content
    assert resp.json()["status"] == "pending_review"


def test_a_demotion_to_l0_applies_to_the_next_run(primed):
    wf, a = primed
    Workflow.objects.filter(pk=wf.pk).update(rung=0)
    resp = a.post("/runs", body(wf, key="after-demotion"))
    assert resp.status_code == 409
    assert resp.json()["error"]["code"] == "rung_forbids_action"
    assert not Run.objects.filter(idempotency_key="after-demotion").exists()


def test_a_promotion_out_of_l0_applies_to_the_next_run(make_workflow, agent):
    wf = make_workflow(rung=0)
    a = agent(wf)
    assert a.post("/runs", body(wf, key="at-l0", proposal=None)).status_code == 201
    assert a.post("/runs", body(wf, key="refused")).status_code == 409
    wf.rung = 2
    wf.save()
    resp = a.post("/runs", body(wf, key="after-promotion"))
    assert resp.status_code == 201, resp.content
    assert Run.objects.get(idempotency_key="after-promotion").queue == "l2"


def test_a_new_personal_field_is_redacted_from_the_next_run(primed):
    wf, a = primed
    wf.personal_fields = ["customer"]
    wf.save(update_fields=["personal_fields"])
    data = body(wf, key="after-fields", input={"customer": "Ada Lovelace"})
    assert a.post("/runs", data).status_code == 201
    run = Run.objects.get(idempotency_key="after-fields")
    document = run.events.get(seq=1).document
    assert "Ada Lovelace" not in document
    assert "<CUSTOMER:" in document


def test_a_new_action_type_is_accepted_on_the_next_run(primed):
    wf, a = primed
    proposal = {"action": "credit.issue", "params": {"amount": 3}}
    assert a.post("/runs", body(wf, key="unknown", proposal=proposal)).status_code == 422
    ActionType.objects.create(workflow=wf, name="credit.issue")
    resp = a.post("/runs", body(wf, key="known", proposal=proposal))
    assert resp.status_code == 201, resp.content


def test_a_tightened_param_schema_applies_to_the_next_run(primed):
    wf, a = primed
    action = ActionType.objects.get(workflow=wf, name="refund.issue")
    action.param_schema = {"ticket": {"type": "string", "required": True}}
    action.save()
    resp = a.post("/runs", body(wf, key="after-schema"))
    assert resp.status_code == 422
    assert not Run.objects.filter(idempotency_key="after-schema").exists()


def test_a_renamed_workflow_is_not_found_under_its_old_slug(primed):
    wf, a = primed
    old = wf.slug
    Workflow.objects.filter(pk=wf.pk).update(slug=f"{old}-renamed")
    resp = a.post("/runs", body(wf, key="after-rename"))
    assert resp.status_code == 404
    assert not Run.objects.filter(idempotency_key="after-rename").exists()


def test_every_change_to_a_workflow_or_its_actions_bumps_rules_version(make_workflow):
    wf = make_workflow(actions=())

    def version():
        return Workflow.objects.values_list("rules_version", flat=True).get(pk=wf.pk)

    start = version()
    Workflow.objects.filter(pk=wf.pk).update(rung=2)
    assert version() == start + 1
    stale = Workflow.objects.get(pk=wf.pk)
    stale.rules_version = 1  # an old in-memory copy cannot move the number back
    stale.save()
    assert version() == start + 2
    action = ActionType.objects.create(workflow=wf, name="refund.issue")
    assert version() == start + 3
    action.value_param = "amount"
    action.save()
    assert version() == start + 4
    action.delete()
    assert version() == start + 5


def test_deleting_a_workflow_with_actions_still_works(make_workflow):
    wf = make_workflow(actions=("refund.issue", "credit.issue"))
    wf.delete()
    assert not ActionType.objects.exists()
