"""The replay page a person reads (/runs/<id>/replay) and the trace it hands an examiner
(/runs/<id>/replay.json)."""

import json
import re
from datetime import UTC, datetime

import pytest

from approvals import replay_page
from ladder.policy import parse_policy, rule_text
from tests.approvals.replay_setup import POLICY, every_step_run, shadow_run
from tests.factories import UserFactory
from traces.chain import verify_chain
from traces.models import TraceEvent

pytestmark = pytest.mark.django_db

EVERY_TYPE = {
    "input",
    "tool_call",
    "output",
    "proposal",
    "review_shown",
    "review_decision",
    "policy_decision",
    "execution",
    "outcome",
    "rollback",
    "hold",
    "deadline",
}


def readable_text(html: str) -> str:
    """What a person reads: the page without its raw-JSON toggles and without tags (so
    without the exact ISO times kept in title attributes)."""
    html = re.sub(r'<details class="raw">.*?</details>', "", html, flags=re.S)
    return " ".join(re.sub(r"<[^>]+>", " ", html).split())


def section(html: str, step_type: str) -> str:
    """The first step of one type, as HTML."""
    match = re.search(
        rf'<li class="step step-{step_type}".*?(?=<li class="step |</ol>)', html, re.S
    )
    assert match, f"no {step_type} step on the page"
    return match.group(0)


@pytest.fixture
def full(django_capture_on_commit_callbacks, clock):
    return every_step_run(capture=django_capture_on_commit_callbacks, clock=clock)


def test_the_replay_shows_every_step_of_a_run_readably(client, full):
    run, people = full
    assert set(TraceEvent.objects.filter(run_id=run.pk).values_list("type", flat=True)) == (
        EVERY_TYPE
    )
    client.force_login(people["compliance"])

    html = client.get(f"/runs/{run.pk}/replay").content.decode()

    text = readable_text(html)
    for label in replay_page.TYPE_LABELS.values():
        if label != "Draft policy, in shadow":
            assert label in text, label
    # People by name, never by user id; times to the second, never to the microsecond.
    assert "user:" not in html
    assert "by refunds-rev" in text
    assert "the agent (token lat_" in text
    assert not re.search(r"\d\d:\d\d:\d\d\.\d", text)
    assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", text)
    assert " ago" in text
    # The chain's verdicts, in words.
    assert "✓ Chain verified" in text and "✓ Complete" in text

    proposal = readable_text(section(html, "proposal"))
    assert "refund.issue" in proposal and "500.00 EUR" in proposal
    # Params as labelled fields by the action's schema, as on the review screens.
    assert re.search(
        r'data-param="order">\s*<dt>Order</dt>\s*<dd><span class="agent">A-1001</span>',
        section(html, "proposal"),
    )

    # The screen as the reviewer saw it: the context, the action, the escalation.
    shown = section(html, "review_shown")
    screen = readable_text(shown)
    assert "What refunds-rev saw" in screen
    assert "✓ screen rebuilt matches its hash" in screen
    assert "arrived broken" in screen and "orders.lookup" in screen
    assert "500.00 EUR" in screen and "Escalated:" in screen
    assert '<div class="screen"' in shown

    decision = readable_text(section(html, "review_decision"))
    assert "Approved" in decision and "refunds-rev" in decision

    sentences = {
        r.id: rule_text(r)
        for r in parse_policy(
            POLICY, actions={"refund.issue": ("amount", "currency"), "refund.reverse": ("", "")}
        ).rules
    }
    policy = readable_text(section(html, "policy_decision"))
    assert "escalated to a person" in policy and sentences["cap"] in policy

    assert "Held: workflow stopped" in readable_text(section(html, "hold"))
    deadline = readable_text(section(html, "deadline"))
    assert "escalated" in deadline and "1 h 1 min waiting" in deadline
    execution = readable_text(section(html, "execution"))
    assert "started" in execution or "finished" in execution
    assert "succeeded" in text
    assert "Labelled" in readable_text(section(html, "outcome"))
    rollback = readable_text(section(html, "rollback"))
    assert "Rollback drill #" in rollback and "refund.reverse" in rollback
    # The raw JSON of every step is one toggle away.
    assert html.count('<details class="raw">') == run.trace_length


def test_the_trace_downloads_as_json_that_an_examiner_verifies(client, full):
    run, people = full
    client.force_login(people["owner"])

    response = client.get(f"/runs/{run.pk}/replay.json")

    assert response.status_code == 200
    assert response["Content-Disposition"] == f'attachment; filename="run-{run.pk}-trace.json"'
    data = json.loads(response.content)
    assert data["verified"] and data["complete"]
    assert {s["type"] for s in data["steps"]} == EVERY_TYPE
    assert verify_chain(data["id"], data["steps"], head=data["head"], length=data["length"]) == []
    stored = list(
        TraceEvent.objects.filter(run_id=run.pk).order_by("seq").values("document", "hash")
    )
    assert [(s["document"], s["hash"]) for s in data["steps"]] == [
        (e["document"], e["hash"]) for e in stored
    ]
    # A step altered in the file no longer verifies.
    data["steps"][1]["document"] = data["steps"][1]["document"].replace("orders", "orderz")
    assert verify_chain(data["id"], data["steps"], head=data["head"], length=data["length"])


def test_a_person_without_a_role_on_the_workflow_gets_404_for_both(client, full):
    run, _people = full
    client.force_login(UserFactory(username="stranger"))
    assert client.get(f"/runs/{run.pk}/replay").status_code == 404
    assert client.get(f"/runs/{run.pk}/replay.json").status_code == 404
    client.logout()
    assert client.get(f"/runs/{run.pk}/replay").status_code == 302  # to sign in


def test_while_a_run_waits_no_step_says_who_wrote_it_and_the_file_waits(client):
    from approvals import services

    run, people = shadow_run()
    services.review_open(run=run, user=people["rev"])  # a review_shown by a named person
    client.force_login(people["compliance"])

    html = client.get(f"/runs/{run.pk}/replay").content.decode()

    text = readable_text(html)
    assert "does not say who wrote each step" in text
    assert "refunds-l3-rev" not in html and "agent:" not in html and "the agent" not in text
    assert not re.search(r'class="by"', html)
    assert "What the reviewer saw" in text
    shadow = readable_text(section(html, "policy_shadow"))
    assert "would have" in shadow and "allowed" in shadow and "decides nothing" in shadow
    response = client.get(f"/runs/{run.pk}/replay.json")
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "run_waiting"


# -- the pure parts ----------------------------------------------------------------------------


def test_times_read_to_the_second_and_ago_in_two_units():
    at = datetime(2026, 11, 27, 14, 3, 12, 123456, tzinfo=UTC)
    assert replay_page.moment_text(at) == "2026-11-27 14:03:12 UTC"
    assert replay_page.ago_text(0.2) == "just now"
    assert replay_page.ago_text(240) == "4 min ago"
    assert replay_page.ago_text(2 * 86400 + 3 * 3600 + 59) == "2 days 3 h ago"
    assert replay_page.gap_text(0.42) == "+0.4 s"
    assert replay_page.gap_text(182) == "+3 min 2 s"


def test_money_and_actors_read_as_words():
    money = {"refund.issue": ("amount", "currency")}
    view = replay_page.action_view("refund.issue", {"amount": 120, "currency": "EUR"}, money)
    assert view["value"] == "120.00 EUR"
    assert replay_page.money_text("12.3456", "EUR") == "12.3456 EUR"
    assert replay_page.money_text(1234567, "") == "1,234,567.00"
    assert replay_page.action_view("reply.send", {"to": "x"}, money)["value"] == ""
    names = {7: "ana"}
    assert replay_page.actor_text("user:7", names) == "ana"
    assert replay_page.actor_text("system:probe", names) == "the system (attention probe)"
    assert replay_page.actor_text("agent:lat_ab12", names) == "the agent (token lat_ab12)"
    assert "no longer on record" in replay_page.actor_text("user:9", names)
