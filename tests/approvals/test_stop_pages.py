"""The stop button on the workflow page (docs/stop.md), through the Django test client
as people use it: plain form posts, no JavaScript."""

import pytest

from ladder.models import RungChange
from traces.models import Run

pytestmark = pytest.mark.django_db


def page(client, wf):
    return client.get(f"/workflows/{wf.slug}/").content.decode()


def test_an_owner_stops_and_resumes_with_a_reason_and_the_page_says_so(
    client, flows, people, submit
):
    wf = flows["l3"]
    client.force_login(people["owner"])
    assert "Stop workflow" in page(client, wf)

    stopped = client.post(f"/workflows/{wf.slug}/stop", {"reason": "wrong amounts"})

    assert stopped.status_code == 302 and stopped["Location"].endswith("#stop")
    body = page(client, wf)
    assert "Stopped</strong> by owner at" in body and "wrong amounts" in body
    assert "Resume workflow" in body and "Stop workflow" not in body
    # The queue marks nothing held at L3 (a person decides as always).
    run = submit("l3")
    assert not Run.objects.get(pk=run.pk).held

    resumed = client.post(f"/workflows/{wf.slug}/resume", {"reason": "amounts fixed"})

    assert resumed.status_code == 302
    assert "Stop workflow" in page(client, wf)
    changes = RungChange.objects.filter(workflow=wf, kind__in=["stop", "resume"])
    assert [(c.kind, c.reason, c.actor) for c in changes.order_by("created_at")] == [
        ("stop", "wrong amounts", people["owner"]),
        ("resume", "amounts fixed", people["owner"]),
    ]


def test_compliance_and_admins_may_stop_too(client, flows, people):
    for name, wf in (("compliance", flows["l1"]), ("admin", flows["l2"])):
        client.force_login(people[name])
        assert client.post(f"/workflows/{wf.slug}/stop", {"reason": "x"}).status_code == 302
        wf.refresh_from_db()
        assert wf.stopped_at is not None


def test_a_reviewer_may_not_stop_and_is_not_offered_the_button(client, flows, people):
    wf = flows["l3"]
    client.force_login(people["rev"])
    assert "Stop workflow" not in page(client, wf)

    answer = client.post(f"/workflows/{wf.slug}/stop", {"reason": "I think it is wrong"})

    assert answer.status_code == 403
    wf.refresh_from_db()
    assert wf.stopped_at is None


def test_a_stranger_gets_a_404(client, flows, people):
    client.force_login(people["stranger"])
    assert client.post(f"/workflows/{flows['l3'].slug}/stop", {"reason": "x"}).status_code == 404


def test_a_stop_without_a_reason_is_refused_on_the_page_and_a_resume_keeps_what_was_typed(
    client, flows, people
):
    wf = flows["l3"]
    client.force_login(people["owner"])

    refused = client.post(f"/workflows/{wf.slug}/stop", {"reason": "  "})

    assert refused.status_code == 422
    assert "say why the workflow stops or resumes" in refused.content.decode()
    wf.refresh_from_db()
    assert wf.stopped_at is None
    client.post(f"/workflows/{wf.slug}/stop", {"reason": "checking"})
    long = "x" * 400
    kept = client.post(f"/workflows/{wf.slug}/resume", {"reason": long})
    assert kept.status_code == 422
    assert f'value="{long}"' in kept.content.decode()
    wf.refresh_from_db()
    assert wf.stopped_at is not None


def test_a_second_stop_is_told_it_is_already_stopped(client, flows, people):
    wf = flows["l3"]
    client.force_login(people["owner"])
    client.post(f"/workflows/{wf.slug}/stop", {"reason": "one"})

    again = client.post(f"/workflows/{wf.slug}/stop", {"reason": "two"}, follow=True)

    assert "already stopped" in again.content.decode()
    wf.refresh_from_db()
    assert wf.stop_reason == "one"
    assert RungChange.objects.filter(workflow=wf, kind="stop").count() == 1


def test_the_queue_marks_runs_held_by_a_stop(client, people, agent):
    from approvals.roles import role_grant
    from ladder.services import workflow_stop
    from tests.factories import ActionTypeFactory, WorkflowFactory

    wf = WorkflowFactory(rung=4)
    ActionTypeFactory(workflow=wf)
    role_grant(workflow=wf, user=people["rev"], role="reviewer", by=None)
    workflow_stop(workflow=wf, actor=people["owner"], reason="incident 7")
    body = {
        "workflow": wf.slug,
        "idempotency_key": "k",
        "input": {},
        "proposal": {"action": "refund.issue", "params": {"order_id": "1", "amount": 5}},
    }
    assert agent(wf).post("/runs", body).status_code == 201
    client.force_login(people["rev"])

    queue = client.get("/").content.decode()

    assert "workflow stopped</span>" in queue and "workflow stopped: incident 7" in queue


def test_an_l3_reviewer_sees_the_stop_on_the_queue_and_on_the_run(client, flows, people, submit):
    from ladder.services import workflow_stop

    run = submit("l3")
    client.force_login(people["rev"])
    assert "workflow stopped</span>" not in client.get("/queue/").content.decode()
    assert 'id="workflow-stopped"' not in client.get(f"/runs/{run.pk}/").content.decode()
    workflow_stop(workflow=flows["l3"], actor=people["owner"], reason="bank outage")

    assert "workflow stopped</span>" in client.get("/queue/").content.decode()
    review = client.get(f"/runs/{run.pk}/").content.decode()
    assert 'id="workflow-stopped"' in review and "bank outage" in review
    assert "an approval is carried out only once the workflow is resumed" in review
