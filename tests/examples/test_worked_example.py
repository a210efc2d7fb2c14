"""The worked example end to end (docs/worked-example.md): `manage.py simulate` plays
2,000 tickets on PostgreSQL with a real Celery worker (prefork, on its own redis-server,
following the simulation's clock) executing every refund and every drill reversal. What
is read back comes through the public surfaces: the agent API's rung history, the frozen
evidence of the promotion request, the drill's record, the shop's ledger and
`verify_traces`."""

import math
from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import call_command
from django.db.models import Sum
from django.test import Client

from examples.refunds.agent import ErrorProfile
from examples.refunds.business import KINDS, REFUND_KINDS
from examples.refunds.models import Refund, Reversal
from examples.refunds.reviewers import ReviewerProfile
from ladder.models import Workflow
from tests.traces.live import RedisServer, Worker, service_env
from tests.traces.test_drill_worker import _forget_connections
from traces.models import RollbackDrill, RollbackDrillItem, Run
from traces.services.tokens import token_create

pytestmark = pytest.mark.django_db(transaction=True)

RUNS = 2000


@pytest.fixture
def worker(transactional_db):
    from ladder.celery import app as celery_app

    redis = RedisServer()
    redis.start()
    saved = {
        "broker_url": celery_app.conf.broker_url,
        "task_always_eager": celery_app.conf.task_always_eager,
    }
    celery_app.conf.update(broker_url=redis.url, task_always_eager=False)
    _forget_connections()
    worker = Worker(service_env(redis.url, LADDER_SIMULATED_CLOCK=1), concurrency=2)
    try:
        worker.start()
        yield worker
    finally:
        print("worker log, last lines:\n" + worker.output()[-3000:])  # shown on a failure
        worker.close()
        celery_app.conf.update(**saved)
        _forget_connections()
        redis.close()


def within(observed: float, expected: float, n: int, *, sigmas: float = 3.5) -> bool:
    """`observed` is within `sigmas` binomial standard errors of `expected` (plus one run,
    for small expected rates)."""
    spread = sigmas * math.sqrt(max(expected * (1 - expected), 1e-9) / n) + 1 / n
    return abs(observed - expected) <= spread


def gate(snapshot_gates: list[dict], name: str) -> dict:
    return next(g for g in snapshot_gates if g["name"] == name)


def test_the_refund_agent_climbs_to_l4_and_the_breaker_brings_it_back(worker):
    out = StringIO()
    try:
        call_command("simulate", "support-refund", "--runs", str(RUNS), "--seed", "7", stdout=out)
    finally:
        print(out.getvalue())  # the narrative, shown on a failure
    story = out.getvalue()
    wf = Workflow.objects.get(slug="support-refund")

    # The rung history, as the agent API tells it.
    _, raw = token_create(name="reader", workflows=[wf])
    answer = Client().get(
        "/api/v1/workflows/support-refund", headers={"authorization": f"Bearer {raw}"}
    )
    assert answer.status_code == 200, answer.content
    history = list(reversed(answer.json()["rung_history"]))
    steps = [(h["from_rung"], h["to_rung"], h["cause"]) for h in history]
    assert steps == [
        (None, 1, "initial"),
        (1, 2, "promotion"),
        (2, 3, "promotion"),
        (3, 4, "promotion"),
        (4, 3, "breaker"),
    ]
    assert answer.json()["rung"] == 3

    # The drill: 50 refunds reverted once each by the worker, in the ledger too.
    drill = RollbackDrill.objects.get(workflow=wf)
    assert (drill.picked, drill.succeeded, drill.failed, drill.passed) == (50, 50, 0, True)
    reverted = set(RollbackDrillItem.objects.filter(drill=drill).values_list("run_id", flat=True))
    assert {r.refund.idempotency_key for r in Reversal.objects.all()} == {str(r) for r in reverted}
    assert "rollback drill: 50 of 50 refunds reverted" in story

    # The L3 -> L4 evidence, frozen in the request, against the error profiles.
    from approvals.models import PromotionRequest

    request = PromotionRequest.objects.get(workflow=wf, to_rung=4, state="approved")
    gates = {g["name"]: g for g in request.snapshot.gates}
    assert all(g["verdict"] == "pass" for g in gates.values()), gates
    errors, people = ErrorProfile(), ReviewerProfile()
    refund_share = sum(KINDS[k] for k in REFUND_KINDS)
    wrong = (1 - refund_share) * errors.wrong_refund + refund_share * errors.over_large
    approval = 1 - wrong * people.catch_wrong - (1 - wrong) * people.reject_good
    g = gates["approval_rate"]
    assert g["n"] >= 1000
    assert within(g["value"], approval, g["n"]), (g, approval)
    g = gates["failure_rate"]
    assert within(g["value"], wrong * (1 - people.catch_wrong), g["n"]), g
    g = gates["probe_catch_rate"]
    assert g["n"] >= 20 and within(g["value"], people.catch_probe, g["n"]), g
    assert gates["replay_coverage"]["value"] == 1.0
    l2 = PromotionRequest.objects.get(workflow=wf, to_rung=2, state="approved").snapshot.gates
    g = gate(l2, "light_edit_acceptance")
    assert within(g["value"], 1 - errors.heavy_edit, g["n"]), g

    # No refund paid twice or lost: the ledger and the traces agree. A drilled run is
    # `rolled_back`, and its refund has its one reversal.
    refunds = Run.objects.filter(workflow=wf, action_type__name="refund.issue")
    paid = refunds.filter(status__in=["executed", "rolled_back"])
    keys = set(Refund.objects.values_list("idempotency_key", flat=True))
    assert keys == {str(pk) for pk in paid.values_list("pk", flat=True)}
    rolled_back = {
        str(pk) for pk in refunds.filter(status="rolled_back").values_list("pk", flat=True)
    }
    assert rolled_back == {str(r) for r in reverted}
    live = Refund.objects.filter(reversal__isnull=True).aggregate(s=Sum("amount"))["s"]
    decided = sum(
        Decimal(str(run.decision["params"]["amount"])) for run in paid.filter(status="executed")
    )
    assert live == decided
    unfinished = Run.objects.filter(workflow=wf, probe=False, status__in=["approved", "executing"])
    assert not unfinished.exists()
    assert Run.objects.filter(workflow=wf, probe=False).count() == RUNS

    verified = StringIO()
    call_command("verify_traces", stdout=verified)
    assert "verified" in verified.getvalue()
