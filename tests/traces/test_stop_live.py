"""The stop button end to end (docs/stop.md): the deployed server (gunicorn), a real
Celery worker with beat on a real Redis, pages posted over HTTP by an owner, runs
submitted through the agent's API. While stopped nothing executes, on any path; after
the resume every run proceeds, each action exactly once, and every replay is complete
and verified."""

import re
import time

import httpx
import pytest
from django.contrib.auth.hashers import PBKDF2PasswordHasher

from approvals.roles import role_grant
from ladder.rungs import Executor
from tests.factories import ActionTypeFactory, UserFactory, WorkflowFactory
from tests.traces.live import Gateway, RedisServer, Worker, service_env, wait_for
from tests.traces.test_worker import ALLOW_REFUNDS, live, refund  # noqa: F401 (fixture)
from traces.models import DemoLedgerEntry, Run
from traces.services.decisions import DecisionInput, run_decide
from traces.services.policy import policy_set
from traces.services.tokens import token_create

pytestmark = pytest.mark.django_db(transaction=True)
SWEEPS = "traces.tasks.sweep_executions["


def workflow(rung, executor):
    wf = WorkflowFactory(rung=rung)
    ActionTypeFactory(
        workflow=wf,
        executor=executor,
        executor_path="traces.demo_executors.refund_issue" if executor == Executor.SERVER else "",
    )
    if rung >= 4:
        policy_set(workflow=wf, document=ALLOW_REFUNDS, by=None)
    return wf


class Person:
    """A signed-in browser without JavaScript: plain form posts with the CSRF cookie."""

    def __init__(self, gateway, username, password):
        self.http = httpx.Client(base_url=f"http://127.0.0.1:{gateway.port}", timeout=30)
        self.http.get("/accounts/login/")
        signed_in = self.http.post(
            "/accounts/login/",
            data={"username": username, "password": password, **self._csrf()},
        )
        assert signed_in.status_code == 302, signed_in.text

    def _csrf(self):
        return {"csrfmiddlewaretoken": self.http.cookies["csrftoken"]}

    def post(self, path, **data):
        self.http.get("/workflows/")  # a fresh CSRF cookie after sign-in
        return self.http.post(path, data={**data, **self._csrf()})


def test_stopped_workflows_execute_nothing_and_everything_once_after_the_resume(live):  # noqa: F811
    redis = live.add(RedisServer())
    env = service_env(redis.url, LADDER_EXECUTION_GRACE_SECONDS=1, LADDER_EXECUTION_SWEEP_SECONDS=1)
    worker, gateway = live.add(Worker(env, concurrency=2, beat=True), Gateway(env))
    s4, s3 = workflow(4, Executor.SERVER), workflow(3, Executor.SERVER)
    a4, a3 = workflow(4, Executor.AGENT), workflow(3, Executor.AGENT)
    flows = (s4, s3, a4, a3)
    owner = UserFactory(username="owner")
    # Hashed as the server checks it (the tests' own hasher is a fast one it lacks).
    hasher = PBKDF2PasswordHasher()
    owner.password = hasher.encode("a long password for owner", hasher.salt())
    owner.save(update_fields=["password"])
    for wf in flows:
        role_grant(workflow=wf, user=owner, role="owner", by=None)
    _token, token = token_create(name="agent", workflows=list(flows))
    person = Person(gateway, "owner", "a long password for owner")

    def api(method, path, body=None):
        return gateway.request(method, f"/api/v1{path}", body, token=token)

    # One click per workflow stops it.
    for wf in flows:
        stopped = person.post(f"/workflows/{wf.slug}/stop", reason="incident 12")
        assert stopped.status_code == 302, stopped.text
    assert "Stopped</strong> by owner" in person.http.get(f"/workflows/{s4.slug}/").text

    runs = {wf.slug: [] for wf in flows}
    for wf in flows:
        for i in range(3):
            status, run, _ = gateway.submit(refund(wf, f"{wf.slug}-{i}"), token)
            assert status == 201, run
            assert run["workflow_stopped"]["reason"] == "incident 12"
            assert run["status"] == "pending_review"
            runs[wf.slug].append(run)
    for run in runs[s4.slug] + runs[a4.slug]:
        assert run["queue"] == "escalated"
        assert run["escalation_reason"] == "workflow stopped: incident 12"
    # At L3 a person still decides while stopped; the approval waits for the resume.
    reviewer = UserFactory(username="reviewer")
    for run in runs[s3.slug] + runs[a3.slug]:
        stored = Run.objects.get(pk=run["id"])
        run_decide(
            run_id=stored.pk,
            user_id=reviewer.pk,
            actor_name=reviewer.username,
            seen_version=stored.version,
            seen_hash="live",
            decision=DecisionInput(
                verdict="approved",
                action="refund.issue",
                params=stored.proposal["params"],
                extra={},
            ),
        )
    # Two more sweeps by the worker: it sends nothing, and nothing is executed.
    swept = worker.output().count(SWEEPS)
    wait_for(
        lambda: worker.output().count(SWEEPS) >= swept + 4,
        timeout=30,
        what="two more sweeps by the worker",
    )
    assert DemoLedgerEntry.objects.count() == 0
    for run in runs[s3.slug]:
        assert api("GET", f"/runs/{run['id']}")[1]["status"] == "approved"
    claim = api("POST", f"/runs/{runs[a3.slug][0]['id']}/claim")
    assert claim[0] == 409 and claim[1]["error"]["code"] == "workflow_stopped"

    # Resume, by the page: what waited proceeds.
    resumed_at = time.monotonic()
    for wf in flows:
        resumed = person.post(f"/workflows/{wf.slug}/resume", reason="incident 12 closed")
        assert resumed.status_code == 302, resumed.text
    for run in runs[s4.slug] + runs[s3.slug]:
        wait_for(
            lambda run=run: api("GET", f"/runs/{run['id']}")[1]["status"] == "executed",
            timeout=60,
            what="a server run to execute after the resume",
        )
    print(f"6 server runs executed {time.monotonic() - resumed_at:.2f} s after the resumes")
    for run in runs[a4.slug] + runs[a3.slug]:
        status, read = api("GET", f"/runs/{run['id']}?wait=5")
        assert read["status"] == "approved" and read["workflow_stopped"] is None
        assert api("POST", f"/runs/{run['id']}/claim")[0] == 200
        report = {"status": "succeeded", "output": {"done": run["id"]}}
        assert api("POST", f"/runs/{run['id']}/result", report)[1]["status"] == "executed"

    # Exactly once each: one ledger entry per server run, none twice; every run
    # accounted for and its replay complete and verified.
    server_runs = runs[s4.slug] + runs[s3.slug]
    entries = list(DemoLedgerEntry.objects.values_list("idempotency_key", flat=True))
    assert sorted(entries) == sorted(f"refund.issue:{run['id']}" for run in server_runs)
    assert Run.objects.filter(workflow__in=flows).count() == 12
    assert set(Run.objects.filter(workflow__in=flows).values_list("status", flat=True)) == {
        "executed"
    }
    assert not Run.objects.filter(held=True).exists()
    for wf in flows:
        for run in runs[wf.slug]:
            replay = api("GET", f"/runs/{run['id']}/replay")[1]
            assert replay["complete"] and replay["verified"], replay["missing"]
    for run in runs[s4.slug]:
        phases = [s["payload"].get("phase") for s in api("GET", f"/runs/{run['id']}/replay")[1][
            "steps"] if s["type"] == "execution"]  # fmt: skip
        assert phases == ["started", "finished"]
    # Retried submissions are the same runs: nothing new, nothing run again.
    for wf in flows:
        status, again, _ = gateway.submit(refund(wf, f"{wf.slug}-0"), token)
        assert status == 200 and again["id"] == runs[wf.slug][0]["id"]
    assert DemoLedgerEntry.objects.count() == len(server_runs)
    assert re.search(r"Stop workflow", person.http.get(f"/workflows/{s4.slug}/").text)
