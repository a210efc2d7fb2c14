"""Approval deadlines seen by people: the owners' settings form, the time left in the
queue and on the run page, and a reviewer's decision that comes too late."""

import re

import pytest

from approvals.services import workflow_deadline_set
from ladder.errors import Forbidden, Unprocessable
from ladder.models import Workflow
from traces.models import Run
from traces.services.deadlines import deadlines_sweep

pytestmark = pytest.mark.django_db


def settings_url(wf) -> str:
    return f"/workflows/{wf.slug}/settings"


def test_an_owner_sets_the_deadline_and_the_next_run_waits_that_long(
    people, flows, login, agent, clock
):
    wf = flows["l3"]
    client = login(people["owner"])
    page = client.get(settings_url(wf)).content.decode()
    assert "a run waits at most <b>3 days</b>" in page
    assert 'value="3"' in page  # 72 h shown as 3 days

    saved = client.post(settings_url(wf), {"amount": "1", "unit": "60", "action": "deny"})
    assert saved.status_code == 302
    assert "Settings of approvals saved." in client.get(saved["Location"]).content.decode()

    api = agent(wf)
    assert api.get(f"/workflows/{wf.slug}").json()["review_deadline_seconds"] == 60
    run = api.post(
        "/runs",
        {
            "workflow": wf.slug,
            "idempotency_key": "after-setting",
            "input": {"m": "refund"},
            "proposal": {"action": "refund.issue", "params": {"amount": 5}},
        },
    ).json()
    clock.advance(61)
    got = api.get(f"/runs/{run['id']}").json()
    assert (got["status"], got["decision"]["reason"]) == ("denied", "no decision within 1 min")


@pytest.mark.parametrize(
    ("form", "message"),
    [
        ({"amount": "31", "unit": "86400", "action": "deny"}, "31 days is too long."),
        ({"amount": "0", "unit": "60", "action": "deny"}, "greater than or equal to 1"),
        ({"amount": "abc", "unit": "60", "action": "deny"}, "Enter a whole number."),
        ({"amount": "2", "unit": "7", "action": "deny"}, "Select a valid choice."),
        ({"amount": "2", "unit": "3600", "action": "forever"}, "Select a valid choice."),
        ({"amount": "", "unit": "3600", "action": "deny"}, "This field is required."),
    ],
)
def test_a_bad_setting_is_refused_in_place_and_nothing_is_saved(
    people, flows, login, form, message
):
    wf = flows["l3"]
    resp = login(people["owner"]).post(settings_url(wf), form)
    assert resp.status_code == 422
    page = resp.content.decode()
    assert message in page
    # What the owner typed is still in the form.
    if form["amount"]:
        assert f'value="{form["amount"]}"' in page
    fresh = Workflow.objects.get(pk=wf.pk)
    assert (fresh.review_deadline_seconds, fresh.deadline_action) == (72 * 3600, "deny")


def test_thirty_days_and_one_minute_are_the_bounds(people, flows, login):
    wf = flows["l3"]
    client = login(people["owner"])
    assert client.post(settings_url(wf), {"amount": "30", "unit": "86400", "action": "escalate"})[
        "Location"
    ]
    fresh = Workflow.objects.get(pk=wf.pk)
    assert (fresh.review_deadline_seconds, fresh.deadline_action) == (30 * 86400, "escalate")
    assert client.post(settings_url(wf), {"amount": "1", "unit": "60", "action": "deny"})[
        "Location"
    ]
    assert Workflow.objects.get(pk=wf.pk).review_deadline_seconds == 60


@pytest.mark.parametrize(
    ("who", "status"), [("rev", 403), ("compliance", 403), ("stranger", 404), ("admin", 200)]
)
def test_only_owners_may_open_or_post_the_settings(people, flows, login, who, status):
    wf = flows["l3"]
    client = login(people[who])
    assert client.get(settings_url(wf)).status_code == status
    posted = client.post(settings_url(wf), {"amount": "5", "unit": "60", "action": "deny"})
    assert posted.status_code == (302 if status == 200 else status)
    expected = 300 if status == 200 else 72 * 3600
    assert Workflow.objects.get(pk=wf.pk).review_deadline_seconds == expected


def test_the_settings_of_an_unknown_workflow_are_not_found(people, login):
    assert login(people["owner"]).get("/workflows/nope/settings").status_code == 404


def test_the_service_refuses_non_owners_and_out_of_range_values(people, flows):
    wf = flows["l3"]
    with pytest.raises(Forbidden):
        workflow_deadline_set(workflow=wf, seconds=600, action="deny", by=people["rev"])
    for seconds in (59, 30 * 86400 + 1):
        with pytest.raises(Unprocessable, match="from 1 min to 30 days"):
            workflow_deadline_set(workflow=wf, seconds=seconds, action="deny", by=people["owner"])
    with pytest.raises(Unprocessable, match="denies or escalates"):
        workflow_deadline_set(workflow=wf, seconds=600, action="ignore", by=people["owner"])
    assert Workflow.objects.get(pk=wf.pk).review_deadline_seconds == 72 * 3600


# -- the queue and the run page ------------------------------------------------------------


def deadline_cells(page: str) -> list[str]:
    return [
        re.sub(r"\s+", " ", cell).strip()
        for cell in re.findall(r'<td class="deadline[^"]*"[^>]*>(.*?)</td>', page, re.S)
    ]


def test_the_queue_shows_the_time_left_for_each_waiting_run(people, submit, login, clock):
    submit("l3")
    clock.advance(72 * 3600 - (2 * 3600 + 10 * 60 + 30))
    submit("l1")  # a fresh one: almost three days left
    page = login(people["rev"]).get("/").content.decode()
    assert deadline_cells(page) == ["2 h 10 min left", "2 days 23 h left"]

    clock.advance(2 * 3600 + 11 * 60)
    page = login(people["rev"]).get("/").content.decode()
    assert deadline_cells(page)[0] == "overdue"  # the queue shows it until the sweep runs


def test_the_run_page_shows_the_deadline_and_what_it_will_do(people, submit, login, clock):
    run = submit("l3")
    clock.advance(3600)
    page = login(people["rev"]).get(f"/runs/{run.id}/").content.decode()
    assert "(<b>2 days 22 h left</b>): undecided by then, it is denied by the deadline." in page
    assert f"Deadline {run.deadline_at:%Y-%m-%d %H:%M} UTC" in page


def test_opening_a_run_past_its_deadline_shows_the_denial_not_the_buttons(
    people, submit, login, clock
):
    run = submit("l3")
    clock.advance(72 * 3600 + 1)
    page = login(people["rev"]).get(f"/runs/{run.id}/").content.decode()
    assert "by the deadline (nobody decided in time)" in page
    assert "Reason: no decision within 3 days" in page
    assert 'value="approve"' not in page
    assert Run.objects.get(pk=run.pk).status == "denied"


# -- a decision that comes too late -----------------------------------------------------------


def test_a_decision_after_the_deadline_is_refused_and_the_deadline_decides(
    people, submit, login, seen, agent, flows, clock
):
    run = submit("l3")
    client = login(people["rev"])
    form = {**seen(run), "verdict": "approve"}
    clock.advance(72 * 3600)

    resp = client.post(f"/runs/{run.id}/decide", form, headers={"HX-Request": "true"})
    assert resp.status_code == 409
    page = resp.content.decode()
    assert "the deadline passed; the run was denied" in page
    stored = Run.objects.get(pk=run.pk)
    assert stored.status == "denied" and stored.decided_by is None
    assert not stored.reviews.exists()


def test_a_decision_after_the_sweep_denied_the_run_is_told_the_same(
    people, submit, login, seen, clock
):
    run = submit("l3")
    client = login(people["rev"])
    form = {**seen(run), "verdict": "approve"}
    clock.advance(72 * 3600 + 1)
    assert deadlines_sweep() == 1

    resp = client.post(f"/runs/{run.id}/decide", form, follow=True)
    assert "the deadline passed; the run was denied" in resp.content.decode()
    assert Run.objects.get(pk=run.pk).status == "denied"


def test_an_escalating_deadline_refuses_the_old_screen_and_the_escalated_run_can_be_decided(
    people, flows, submit, login, seen, clock
):
    login(people["owner"]).post(
        settings_url(flows["l3"]), {"amount": "1", "unit": "3600", "action": "escalate"}
    )
    run = submit("l3")
    client = login(people["rev"])
    old = {**seen(run), "verdict": "approve"}
    clock.advance(3601)

    refused = client.post(f"/runs/{run.id}/decide", old, headers={"HX-Request": "true"})
    assert refused.status_code == 409
    assert "the deadline passed; the run was escalated" in refused.content.decode()
    escalated = Run.objects.get(pk=run.pk)
    assert (escalated.status, escalated.queue) == ("pending_review", "escalated")
    assert escalated.escalation_reason == "waited past the 1 h deadline"

    page = client.get(f"/runs/{run.id}/").content.decode()
    assert "waited past the 1 h deadline" in page
    assert "undecided by then, it is denied by the deadline." in page
    approved = client.post(f"/runs/{run.id}/decide", {**seen(run), "verdict": "approve"})
    assert approved.status_code == 302
    assert Run.objects.get(pk=run.pk).status == "approved"
