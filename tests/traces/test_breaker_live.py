"""The breaker end to end, on PostgreSQL with a real Celery worker and the real gateway:
an L4 workflow executes good runs; outcome labels "wrong" posted at once by several
clients trip it, exactly one demotion is recorded, and the very next submission is
handled at L3, waiting for a person."""

from concurrent.futures import ThreadPoolExecutor

import pytest

from ladder.models import Alert, RungChange, Workflow
from tests.factories import UserFactory
from tests.traces.live import Gateway, RedisServer, Worker, service_env, wait_for
from tests.traces.test_worker import executed, l4_refunds, live, refund  # noqa: F401
from traces.models import DemoLedgerEntry

pytestmark = pytest.mark.django_db(transaction=True)


def test_wrong_outcomes_trip_the_breaker_once_and_the_next_run_waits_for_a_person(live):  # noqa: F811
    redis = live.add(RedisServer())
    env = service_env(redis.url)
    _worker, gateway = live.add(Worker(env, concurrency=2), Gateway(env))
    wf, token = l4_refunds()
    owner = UserFactory(username="olga", email="olga@example.com")
    Workflow.objects.filter(pk=wf.pk).update(
        owner=owner, breaker_bounds={"window_runs": 20, "failure_rate_max": 0.10}
    )

    runs = []
    for i in range(12):
        status, run, _ = gateway.submit(refund(wf, f"good-{i}"), token)
        assert status == 201 and run["rung"] == 4 and run["status"] == "approved", run
        runs.append(run)
    for run in runs:
        wait_for(executed(gateway, token, run), timeout=30, what="the good runs to execute")
    for run in runs[:4]:
        status, _ = gateway.request(
            "POST",
            f"/api/v1/runs/{run['id']}/outcome",
            {"label": "correct", "source": "crm"},
            token,
        )
        assert status in (200, 201)
    # Good results do not trip anything.
    assert gateway.request("GET", f"/api/v1/workflows/{wf.slug}", token=token)[1]["rung"] == 4

    def label_wrong(run):
        return gateway.request(
            "POST",
            f"/api/v1/runs/{run['id']}/outcome",
            {"label": "wrong", "source": "customer", "note": "refunded the wrong order"},
            token,
        )[0]

    # Eight wrong labels at once, from eight clients: two gunicorn processes judge them
    # concurrently, several see the bound broken (3 of 12 already has a lower bound of
    # 0.089, 4 of 12 0.138), and exactly one demotes.
    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(pool.map(label_wrong, runs[4:]))
    assert all(s in (200, 201) for s in statuses), statuses

    answer = gateway.request("GET", f"/api/v1/workflows/{wf.slug}", token=token)[1]
    assert answer["rung"] == 3
    demotions = RungChange.objects.filter(workflow=wf, kind=RungChange.Kind.DEMOTION)
    assert demotions.count() == 1
    change = demotions.get()
    assert change.from_rung == 4 and change.to_rung == 3 and change.actor is None
    assert change.reason.startswith("breaker tripped:")
    assert change.evidence["breaker"] == "failure_rate"
    assert change.evidence["failures"] >= 3 and change.evidence["lower"] > 0.10
    history = answer["rung_history"][0]
    assert history["cause"] == "breaker" and history["to_rung"] == 3
    assert "by" not in history  # agents are told what and why, not who

    # The very next submission is handled at L3: a person approves it, nothing executes.
    status, nxt, _ = gateway.submit(refund(wf, "after-trip"), token)
    assert status == 201 and nxt["rung"] == 3 and nxt["status"] == "pending_review", nxt
    assert not DemoLedgerEntry.objects.filter(idempotency_key=f"refund.issue:{nxt['id']}").exists()

    # The owner was told: the alert on the page records whom the mail went to (it was sent
    # by the gunicorn process; tests/approvals/test_demotion.py reads a mailbox).
    alert = Alert.objects.get(workflow=wf, kind=Alert.Kind.DEMOTION)
    assert alert.recipients == [{"username": "olga", "email": "olga@example.com"}]
    assert alert.subject.endswith("dropped to L3: the breaker tripped")
    assert "L4 to L3" in alert.body and alert.evidence["breaker"] == "failure_rate"


def test_the_breaker_does_not_trip_twice_on_the_same_runs(live):  # noqa: F811
    """After the trip the workflow is at L3, which has no breaker; promoted back to L4 its
    window starts empty: the wrong runs handled before do not trip it again."""
    from ladder.services import rung_change
    from tests.factories import certify

    redis = live.add(RedisServer())
    env = service_env(redis.url)
    _worker, gateway = live.add(Worker(env, concurrency=2), Gateway(env))
    wf, token = l4_refunds()
    Workflow.objects.filter(pk=wf.pk).update(breaker_bounds={"window_runs": 10})
    runs = []
    for i in range(3):
        status, run, _ = gateway.submit(refund(wf, f"r-{i}"), token)
        runs.append(run)
    for run in runs:
        wait_for(executed(gateway, token, run), timeout=30, what="the runs to execute")
        gateway.request(
            "POST", f"/api/v1/runs/{run['id']}/outcome", {"label": "wrong", "source": "qa"}, token
        )
    wait_for(
        lambda: Workflow.objects.get(pk=wf.pk).rung == 3, timeout=10, what="the breaker to trip"
    )
    # Promoted back (as an approved promotion would: a rung change and a certificate).
    wf.refresh_from_db()
    rung_change(workflow=wf, from_rung=3, to_rung=4, kind="promotion", reason="fixed", actor=None)
    certify(wf)
    # A late label on an old L4 run: the window at the new L4 is empty, nothing trips.
    gateway.request(
        "POST", f"/api/v1/runs/{runs[0]['id']}/outcome", {"label": "wrong", "source": "qa"}, token
    )
    status, run, _ = gateway.submit(refund(wf, "fresh"), token)
    assert status == 201 and run["rung"] == 4 and run["status"] == "approved", run
    wait_for(executed(gateway, token, run), timeout=30, what="the fresh run to execute")
    assert Workflow.objects.get(pk=wf.pk).rung == 4
    assert RungChange.objects.filter(workflow=wf, kind="demotion").count() == 1
