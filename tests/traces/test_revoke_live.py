"""Revoking an agent token with `manage.py revoke_agent_token` applies to the very next
request in every process of the deployed server (gunicorn.conf.py, two processes), also
where the process had the token memoised for the gateway's fast path."""

import subprocess
import sys

import pytest

from tests.factories import ActionTypeFactory, WorkflowFactory
from tests.traces.live import ROOT, Gateway, RedisServer, service_env
from tests.traces.test_worker import live  # noqa: F401 (fixture)
from traces.models import Run
from traces.services.tokens import token_create

pytestmark = pytest.mark.django_db(transaction=True)


def _run(wf, key):
    return {
        "workflow": wf.slug,
        "idempotency_key": key,
        "input": {"message": f"customer asks about order {key}"},
        "proposal": {"action": "refund.issue", "params": {"order_id": key, "amount": 12}},
    }


def test_a_revoked_token_is_refused_by_every_gateway_process_on_its_next_request(live):  # noqa: F811
    redis = live.add(RedisServer())
    env = service_env(redis.url)
    gateway = live.add(Gateway(env, workers=2))
    wf = WorkflowFactory(rung=3)
    ActionTypeFactory(workflow=wf, name="refund.issue")
    token, raw = token_create(name="soon revoked", workflows=[wf])
    # Each request on a new connection: both processes serve some, and memoise the token.
    before = [gateway.submit(_run(wf, f"k-{i}"), raw) for i in range(16)]
    assert {status for status, _, _ in before} == {201}
    statuses = {
        gateway.request("GET", "/api/v1/runs/" + run["id"], token=raw)[0] for _, run, _ in before
    }
    assert statuses == {200}

    done = subprocess.run(
        [sys.executable, "manage.py", "revoke_agent_token", token.prefix],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert f"revoked {token.prefix}" in done.stdout

    after = [gateway.submit(_run(wf, f"after-{i}"), raw) for i in range(20)]
    assert [status for status, _, _ in after] == [401] * 20
    assert all(body["error"]["code"] == "invalid_token" for _, body, _ in after)
    reads = [gateway.request("GET", "/api/v1/runs/" + run["id"], token=raw) for _, run, _ in before]
    assert [status for status, _ in reads] == [401] * len(before)
    assert Run.objects.filter(workflow=wf).count() == 16
