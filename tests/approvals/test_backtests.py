"""Backtests end to end: a history made through the agent API and the reviewers' decisions,
a policy run over it through the pages (Celery eager), the figures checked against a
table computed by hand, and who may see and start what."""

import json
import re

import pytest
from kombu.exceptions import OperationalError

from approvals import services
from approvals.roles import role_grant
from tests.factories import UserFactory
from traces.models import Backtest, Run
from traces.services.backtests import backtest_history
from traces.services.policy import policy_set
from traces.tasks import run_backtest

pytestmark = pytest.mark.django_db

POLICY = {
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
            "max": "150",
            "currency": "USD",
            "then": "escalate",
            "control": "value_cap",
        },
        {
            "id": "fraud",
            "kind": "flag",
            "flag": "fraud_adjacent",
            "then": "escalate",
            "control": "rbac",
        },
        {
            "id": "rate",
            "kind": "rate_limit",
            "action": "refund.issue",
            "window_seconds": 3600,
            "per": "param:customer",
            "max_count": 2,
            "then": "escalate",
            "control": "rate_limit",
        },
        {
            "id": "new-customer",
            "kind": "first_seen",
            "per": "param:customer",
            "then": "escalate",
            "control": "rbac",
        },
    ],
}

# The history, oldest first, all within a few seconds (so inside the one-hour window), and
# what POLICY does with each run, worked out by hand. "before" is what the rate limit
# counts for that customer: the runs this policy itself allowed, not what people did.
#
#  #  cust action  amount cur flags person   policy   why
#  1  C1   refund   50.00 EUR -     approved escalate C1 first seen
#  2  C1   refund  200.00 EUR -     rejected allow    cap inclusive; before 0: MISTAKE
#  3  C1   refund  200.01 EUR -     approved escalate cap-eur
#  4  C1   refund   10.00 EUR -     approved allow    before 1 (#2): 1+1 <= 2
#  5  C1   refund   20.00 EUR -     rejected escalate rate: before 2 (#2, #4): 2+1 > 2
#  6  C2   refund   30    EUR fraud rejected escalate C2 first seen, and fraud
#  7  C2   refund  120    USD -     rejected allow    cap-usd 150; before 0: MISTAKE
#  8  C2   refund    5    GBP -     approved escalate no GBP cap: cap-eur, cap-usd fire
#  9  C3   voucher  15    EUR -     approved deny     not allowed (still names C3)
# 10  C3   refund   70    EUR -     rejected allow    C3 seen in #9; before 0: MISTAKE
# 11  C2   refund  150.00 USD -     approved allow    cap-usd inclusive; before 1 (#7)
# 12  C2   refund    1    USD -     rejected escalate rate: before 2 (#7, #11)
#
# Would-be mistakes: #2, #7, #10 = 200.00 + 70 EUR and 120 USD.
# Not replayed: a run still waiting for a person, and a run of another workflow.
HISTORY = [
    ("C1", "refund.issue", "50.00", "EUR", [], "approved"),
    ("C1", "refund.issue", "200.00", "EUR", [], "rejected"),
    ("C1", "refund.issue", "200.01", "EUR", [], "approved"),
    ("C1", "refund.issue", "10.00", "EUR", [], "approved"),
    ("C1", "refund.issue", "20.00", "EUR", [], "rejected"),
    ("C2", "refund.issue", 30, "EUR", ["fraud_adjacent"], "rejected"),
    ("C2", "refund.issue", 120, "USD", [], "rejected"),
    ("C2", "refund.issue", 5, "GBP", [], "approved"),
    ("C3", "voucher.issue", 15, "EUR", [], "approved"),
    ("C3", "refund.issue", 70, "EUR", [], "rejected"),
    ("C2", "refund.issue", "150.00", "USD", [], "approved"),
    ("C2", "refund.issue", 1, "USD", [], "rejected"),
]
MISTAKES = [1, 6, 9]  # positions in HISTORY (#2, #7, #10)
EXPECTED = {
    "runs": 12,
    "allowed": 5,
    "escalated": 6,
    "denied": 1,
    "outcomes": {
        "allow": {"approved": 2, "rejected": 3},
        "escalate": {"approved": 3, "rejected": 3},
        "deny": {"approved": 1, "rejected": 0},
    },
    "rules_fired": {
        "actions": 1,
        "cap-eur": 2,
        "cap-usd": 1,
        "fraud": 1,
        "new-customer": 2,
        "rate": 2,
    },
}


@pytest.fixture
def shop(make_workflow, people):
    wf = make_workflow(rung=3, actions=("refund.issue", "voucher.issue"), slug="shop")
    other = make_workflow(rung=3, slug="other-shop")
    for flow in (wf, other):
        role_grant(workflow=flow, user=people["rev"], role="reviewer", by=None)
    role_grant(workflow=wf, user=people["owner"], role="owner", by=None)
    role_grant(workflow=wf, user=people["compliance"], role="compliance", by=None)
    role_grant(workflow=other, user=people["stranger"], role="owner", by=None)
    return {"wf": wf, "other": other}


def _submit(client, wf, key, customer, action, amount, currency, flags):
    response = client.post(
        "/runs",
        {
            "workflow": wf.slug,
            "idempotency_key": key,
            "input": {"message": f"customer {customer} asks about order {key}"},
            "proposal": {
                "action": action,
                "params": {
                    "order_id": key,
                    "amount": amount,
                    "currency": currency,
                    "customer": customer,
                },
                "flags": flags,
            },
        },
    )
    assert response.status_code == 201, response.content
    return Run.objects.select_related("workflow").get(pk=response.json()["id"])


def _decide(run, reviewer, verdict):
    opened = services.review_open(run=run, user=reviewer)
    services.review_decide(
        run=run,
        reviewer=reviewer,
        seen_hash=opened.hash,
        seen_version=run.version,
        decision=services.Approval(
            approve=verdict == "approved",
            reason="" if verdict == "approved" else "not owed",
        ),
    )


@pytest.fixture
def history(shop, agent, people):
    """HISTORY through POST /api/v1/runs and a reviewer's decisions; the runs in order."""
    wf = shop["wf"]
    client = agent(wf, shop["other"])
    runs = []
    for n, (customer, action, amount, currency, flags, verdict) in enumerate(HISTORY):
        run = _submit(client, wf, f"h-{n}", customer, action, amount, currency, flags)
        _decide(run, people["rev"], verdict)
        runs.append(run)
    _submit(client, wf, "waiting", "C9", "refund.issue", 1, "EUR", [])
    elsewhere = _submit(client, shop["other"], "x-1", "C1", "refund.issue", 1, "EUR", [])
    _decide(elsewhere, people["rev"], "rejected")
    return runs


def _start(client, slug, django_capture_on_commit_callbacks, **form):
    with django_capture_on_commit_callbacks(execute=True):
        return client.post(f"/workflows/{slug}/backtests/", form)


def test_a_draft_policy_over_the_history_gives_the_hand_computed_figures(
    history, people, login, django_capture_on_commit_callbacks
):
    client = login(people["owner"])
    response = _start(
        client,
        "shop",
        django_capture_on_commit_callbacks,
        policy="draft",
        document=json.dumps(POLICY),
    )
    backtest = Backtest.objects.get()
    assert response.status_code == 302
    assert response["Location"] == f"/workflows/shop/backtests/{backtest.pk}/"

    assert backtest.state == "done" and backtest.version is None
    assert (backtest.progress_done, backtest.progress_total) == (12, 12)
    assert backtest.requested_by == people["owner"]
    result = backtest.result
    for key, value in EXPECTED.items():
        assert result[key] == value, key
    assert result["mistakes"] == {
        "count": 3,
        "value": {"EUR": "270.0000", "USD": "120.0000"},
        "without_value": 0,
        "runs": [str(history[i].pk) for i in MISTAKES],
    }

    page = client.get(response["Location"])
    text = page.content.decode()
    assert page.status_code == 200
    assert re.search(r"<strong>3</strong> runs the policy would have allowed", text)
    assert "worth 270.00 EUR + 120.00 USD." in text
    listed = re.findall(r'href="/runs/([0-9a-f-]+)/"', text)
    assert listed == [str(history[i].pk) for i in MISTAKES]
    assert 'id="backtest-bar" max="12" value="12"' in text
    # One click from a would-be mistake to the run itself.
    assert client.get(f"/runs/{listed[0]}/").status_code == 200


def test_a_saved_version_and_a_date_window(
    history, shop, people, login, django_capture_on_commit_callbacks
):
    version = policy_set(workflow=shop["wf"], document=POLICY, by=people["owner"])
    client = login(people["compliance"])
    form = client.get("/workflows/shop/backtests/").content.decode()
    assert '<option value="1">version 1 (newest: the draft)</option>' in form
    day = history[0].created_at.date().isoformat()
    _start(
        client,
        "shop",
        django_capture_on_commit_callbacks,
        policy=str(version.number),
        since=day,
        until=day,
    )
    backtest = Backtest.objects.get()
    assert backtest.version == version and backtest.document == version.document
    assert backtest.result["allowed"] == 5 and backtest.result["mistakes"]["count"] == 3

    # A window that ends before the history began replays nothing.
    _start(client, "shop", django_capture_on_commit_callbacks, policy="1", until="2000-01-01")
    empty = Backtest.objects.order_by("-pk").first()
    assert empty.state == "done" and empty.result["runs"] == 0
    assert (empty.progress_done, empty.progress_total) == (0, 0)


def test_the_history_is_the_workflows_decided_l3_runs_oldest_first(history, shop):
    rows = list(backtest_history(shop["wf"].id))
    assert [row[0] for row in rows] == [run.pk for run in history]
    assert {row[3] for row in rows} == {"approved", "rejected"}


def test_a_refused_document_names_every_problem_and_starts_nothing(
    shop, people, login, django_capture_on_commit_callbacks
):
    client = login(people["owner"])
    document = {
        "audit_sample_rate": 0,
        "rules": [
            {"id": "actions", "kind": "allow_actions", "actions": ["refund.issue"],
             "control": "allowed_tools"},
            {"id": "cap", "kind": "value_cap", "action": "refund.issue", "max": "lots",
             "then": "escalate", "control": "value_cap"},
            {"id": "r", "kind": "rate_limit", "action": "refund.issue", "window_seconds": 0,
             "per": "workflow", "max_count": 1, "then": "escalate", "control": "rate_limit"},
        ],
    }  # fmt: skip
    typed = json.dumps(document)
    response = _start(
        client, "shop", django_capture_on_commit_callbacks, policy="draft", document=typed
    )
    text = response.content.decode()
    assert response.status_code == 422
    assert "cap.max: must be a decimal number or a decimal string" in text
    assert "r.window_seconds: must be a whole number of seconds above 0" in text
    assert Backtest.objects.count() == 0
    # What was typed is still there to fix.
    assert json.dumps(document).replace('"', "&quot;") in text

    broken = _start(
        client, "shop", django_capture_on_commit_callbacks, policy="draft", document="{"
    )
    assert broken.status_code == 422 and "not valid JSON" in broken.content.decode()
    mixed = _start(client, "shop", django_capture_on_commit_callbacks, policy="1", document=typed)
    assert mixed.status_code == 422 and "a document was pasted" in mixed.content.decode()
    unknown = _start(client, "shop", django_capture_on_commit_callbacks, policy="7")
    assert unknown.status_code == 422 and "choose a saved version" in unknown.content.decode()
    window = _start(
        client,
        "shop",
        django_capture_on_commit_callbacks,
        policy="draft",
        document=json.dumps(POLICY),
        since="2026-02-30",
    )
    assert window.status_code == 422 and "From: not a date" in window.content.decode()
    backwards = _start(
        client,
        "shop",
        django_capture_on_commit_callbacks,
        document=json.dumps(POLICY),
        since="2026-03-02",
        until="2026-03-01",
    )
    assert backwards.status_code == 422
    assert "the window must end after it starts" in backwards.content.decode()
    assert Backtest.objects.count() == 0


def test_who_may_see_and_start_backtests(
    history, shop, people, login, django_capture_on_commit_callbacks
):
    owner = login(people["owner"])
    _start(owner, "shop", django_capture_on_commit_callbacks, document=json.dumps(POLICY))
    backtest = Backtest.objects.get()
    detail = f"/workflows/shop/backtests/{backtest.pk}/"

    # A reviewer reads, and cannot start.
    reviewer = login(people["rev"])
    listing = reviewer.get("/workflows/shop/backtests/")
    assert listing.status_code == 200 and 'id="backtest-form"' not in listing.content.decode()
    # The list shows each backtest's allowed runs and would-be mistakes.
    row = re.search(rf'<tr>\s*<td><a href="{detail}">.*?</tr>', listing.content.decode(), re.S)
    assert re.findall(r"<td>(\d+)</td>", row.group(0)) == ["12", "5", "3"]
    assert reviewer.get(detail).status_code == 200
    refused = reviewer.post("/workflows/shop/backtests/", {"document": json.dumps(POLICY)})
    assert refused.status_code == 403

    # The owner of another workflow learns nothing about this one, nor through it.
    stranger = login(people["stranger"])
    assert stranger.get("/workflows/shop/backtests/").status_code == 404
    assert stranger.get(detail).status_code == 404
    assert stranger.post("/workflows/shop/backtests/", {"document": "{}"}).status_code == 404
    assert stranger.get(f"/workflows/other-shop/backtests/{backtest.pk}/").status_code == 404
    nobody = login(UserFactory(username="nobody"))
    assert nobody.get("/workflows/shop/backtests/").status_code == 404
    assert Backtest.objects.count() == 1


def test_the_progress_bar_polls_until_done_then_the_page_reloads(
    history, shop, people, login, monkeypatch, django_capture_on_commit_callbacks
):
    client = login(people["owner"])
    # Hold the task back (no broker call): the backtest stays queued until it is run.
    monkeypatch.setattr(run_backtest, "delay", lambda backtest_id: None)
    _start(client, "shop", django_capture_on_commit_callbacks, document=json.dumps(POLICY))
    backtest = Backtest.objects.get()
    detail = f"/workflows/shop/backtests/{backtest.pk}/"

    page = client.get(detail).content.decode()
    assert 'hx-trigger="every 1s"' in page and f'href="{detail}">Reload</a>' in page
    assert "What the policy would have done" not in page

    partial = client.get(detail, headers={"HX-Request": "true"})
    assert partial.content.decode().lstrip().startswith('<div id="backtest-progress"')
    assert "HX-Refresh" not in partial

    run_backtest(backtest.pk)
    finished = client.get(detail, headers={"HX-Request": "true"})
    assert finished["HX-Refresh"] == "true"
    assert "every 1s" not in finished.content.decode()
    assert "What the policy would have done" in client.get(detail).content.decode()


def test_a_broker_that_cannot_be_reached_fails_the_backtest_visibly(
    shop, people, login, monkeypatch, django_capture_on_commit_callbacks
):
    def down(backtest_id):
        raise OperationalError("connection refused")

    monkeypatch.setattr(run_backtest, "delay", down)
    client = login(people["owner"])
    _start(client, "shop", django_capture_on_commit_callbacks, document=json.dumps(POLICY))
    backtest = Backtest.objects.get()
    assert backtest.state == "failed"
    page = client.get(f"/workflows/shop/backtests/{backtest.pk}/").content.decode()
    assert "the task queue could not be reached; start the backtest again" in page


def test_a_second_delivery_of_a_finished_backtest_changes_nothing(
    history, people, login, django_capture_on_commit_callbacks
):
    client = login(people["owner"])
    _start(client, "shop", django_capture_on_commit_callbacks, document=json.dumps(POLICY))
    backtest = Backtest.objects.get()
    run_backtest(backtest.pk)
    again = Backtest.objects.get()
    assert again.finished_at == backtest.finished_at and again.result == backtest.result


def test_progress_is_written_after_every_chunk(
    history, people, login, monkeypatch, django_capture_on_commit_callbacks
):
    from traces.services import backtests

    seen = []

    class Watching(backtests.Backtester):
        def feed(self, rows):
            # What the page would show while this chunk waits to be decided.
            row = Backtest.objects.values_list("state", "progress_done", "progress_total").get()
            seen.append(row)
            return super().feed(rows)

    monkeypatch.setattr(backtests, "CHUNK", 5)
    monkeypatch.setattr(backtests, "Backtester", Watching)
    client = login(people["owner"])
    _start(client, "shop", django_capture_on_commit_callbacks, document=json.dumps(POLICY))
    assert seen == [("running", 0, 12), ("running", 5, 12), ("running", 10, 12)]
    assert Backtest.objects.values_list("state", "progress_done", "progress_total").get() == (
        "done",
        12,
        12,
    )


def test_a_backtest_that_breaks_says_so_on_its_page(
    history, people, login, monkeypatch, django_capture_on_commit_callbacks
):
    from traces.services import backtests

    class Broken(backtests.Backtester):
        def feed(self, rows):
            raise RuntimeError("disk on fire")

    monkeypatch.setattr(backtests, "Backtester", Broken)
    client = login(people["owner"])
    _start(client, "shop", django_capture_on_commit_callbacks, document=json.dumps(POLICY))
    backtest = Backtest.objects.get()
    assert backtest.state == "failed" and backtest.result is None
    page = client.get(f"/workflows/shop/backtests/{backtest.pk}/").content.decode()
    assert "the backtest failed: RuntimeError" in page
    assert "every 1s" not in page  # nothing left to poll for


def test_a_workflow_runs_at_most_two_backtests_at_once(
    shop, people, login, monkeypatch, django_capture_on_commit_callbacks
):
    """Each backtest reads the workflow's whole history: clicking "start" again and again
    queues two, then says to wait; a finished one frees its place."""
    queued = []
    monkeypatch.setattr(run_backtest, "delay", queued.append)  # the worker is busy
    client = login(people["owner"])
    for _ in range(2):
        started = _start(
            client, "shop", django_capture_on_commit_callbacks, document=json.dumps(POLICY)
        )
        assert started.status_code == 302
    refused = _start(
        client, "shop", django_capture_on_commit_callbacks, document=json.dumps(POLICY)
    )
    assert refused.status_code == 409
    assert "2 backtests of this workflow are still running" in refused.content.decode()
    assert Backtest.objects.count() == 2
    run_backtest.run(queued[0])  # one finishes
    again = _start(client, "shop", django_capture_on_commit_callbacks, document=json.dumps(POLICY))
    assert again.status_code == 302 and Backtest.objects.count() == 3
