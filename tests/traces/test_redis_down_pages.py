"""Redis (broker and cache) stopped under the deployed server: PostgreSQL is the source of
truth, everything else degrades. Every page a person can reach still answers as it did,
a reviewer's decision is recorded, and the approved server action that waited for the
broker is executed exactly once when Redis returns.

Real processes (tests/traces/live.py): the test's own redis-server, gunicorn with
gunicorn.conf.py and a Celery worker; the demo world comes from `manage.py seed_demo`,
and people sign in and click through the pages over HTTP like a browser would.
"""

import signal
import subprocess
import sys
import time
from html.parser import HTMLParser
from urllib.parse import urldefrag, urlsplit

import pytest
from django.contrib.auth.models import User
from django.urls import Resolver404, resolve

from approvals.roles import role_grant
from ladder.rungs import Executor
from tests.factories import ActionTypeFactory, WorkflowFactory
from tests.reviewing import Reviewer
from tests.traces.live import HOST, ROOT, Gateway, RedisServer, Worker, service_env, wait_for
from tests.traces.test_worker import live  # noqa: F401 (fixture)
from traces.models import DemoLedgerEntry, TraceEvent
from traces.services.tokens import token_create

pytestmark = pytest.mark.django_db(transaction=True)

PEOPLE = ("reviewer", "owner", "compliance", "admin")
# Pages worth a visit more than once per person are few; two of each kind (same URL
# name) keeps the crawl to a few hundred requests while reaching every kind of page.
PER_KIND = 2
SKIP = ("/accounts/logout/", "/static/", "/admin/")


class _Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.links: list[str] = []

    def handle_starttag(self, tag, attrs):
        found = dict(attrs)
        for name in ("href", "hx-get", "data-href"):
            if found.get(name) and tag != "link":  # a <link> is a stylesheet or an icon
                self.links.append(found[name])


def _kind(path: str) -> str | None:
    try:
        return resolve(path).url_name
    except Resolver404:
        return None


class Person(Reviewer):
    """A demo person signed in on the live server, who can also click through pages."""

    def __init__(self, gateway: Gateway, username: str):
        super().__init__(f"http://{HOST}:{gateway.port}", username, f"{username}-ladder-demo")

    def crawl(self, start: str = "/") -> dict[str, int]:
        """Every page reachable by links from `start` (PER_KIND of each kind): path → status."""
        seen: dict[str, int] = {}
        per_kind: dict[str, int] = {}
        todo = [start]
        while todo:
            path = todo.pop(0)
            kind = _kind(urlsplit(path).path)
            if path in seen or kind is None or per_kind.get(kind, 0) >= PER_KIND:
                continue
            per_kind[kind] = per_kind.get(kind, 0) + 1
            page = self.get(path)
            seen[path] = page.status_code
            if page.is_redirect:
                todo.append(page.headers["location"])
            if page.headers.get("content-type", "").startswith("text/html"):
                parser = _Links()
                parser.feed(page.text)
                for link in parser.links:
                    link = urldefrag(link).url
                    local = link.startswith("/") and not link.startswith("//")
                    if local and not link.startswith(SKIP):
                        todo.append(link)
        return seen


def _refunds_for_review(reviewer: User):
    """An L3 workflow whose approved refunds a server executor pays into the demo ledger."""
    wf = WorkflowFactory(slug="redis-down-refunds", rung=3)
    ActionTypeFactory(
        workflow=wf,
        name="refund.issue",
        executor=Executor.SERVER,
        executor_path="traces.demo_executors.refund_issue",
    )
    role_grant(workflow=wf, user=reviewer, role="reviewer", by=None)
    _token, raw = token_create(name="redis-down agent", workflows=[wf])
    return wf, raw


def _submit(gateway, wf, token, key):
    status, run, _ = gateway.submit(
        {
            "workflow": wf.slug,
            "idempotency_key": key,
            "input": {"message": f"Order {key} arrived broken, please refund 19.90"},
            "proposal": {
                "action": "refund.issue",
                "params": {"order_id": key, "amount": 19.9, "currency": "EUR"},
            },
        },
        token,
    )
    assert status == 201, run
    assert run["status"] == "pending_review"
    return run


def _status(gateway, token, run):
    return gateway.request("GET", f"/api/v1/runs/{run['id']}", token=token)[1]["status"]


def test_with_redis_down_every_page_works_decisions_are_recorded_and_run_once(live):  # noqa: F811
    redis = live.add(RedisServer())
    # As deployed (`make worker`): beat beside the worker, its sweep every 2 s here.
    env = service_env(redis.url, LADDER_EXECUTION_GRACE_SECONDS=1, LADDER_EXECUTION_SWEEP_SECONDS=2)
    seeded = subprocess.run(
        [sys.executable, "manage.py", "seed_demo"], cwd=ROOT, env=env, capture_output=True
    )
    assert seeded.returncode == 0, seeded.stderr.decode()[-2000:]
    worker, gateway = live.add(Worker(env, beat=True), Gateway(env))
    wf, token = _refunds_for_review(User.objects.get(username="reviewer"))
    before = _submit(gateway, wf, token, "A-100")

    people = {name: Person(gateway, name) for name in PEOPLE}
    # Redis up: where each person can go, and what each page answered.
    up = {name: person.crawl() for name, person in people.items()}
    assert people["reviewer"].get(f"/runs/{before['id']}/").status_code == 200
    for name, pages in up.items():
        assert not [p for p, s in pages.items() if s >= 500], (name, pages)
    kinds = {_kind(urlsplit(p).path) for pages in up.values() for p in pages}
    expected = {"queue", "run", "run-replay", "workflow", "workflow-policy", "history"}
    expected |= {"audit", "promotions", "workflow-dossier", "workflows", "my-decisions"}
    assert expected <= kinds, expected - kinds

    # Redis hangs (connections open, nothing answers), then dies.
    redis.signal_group(signal.SIGSTOP)
    started = time.monotonic()
    hung = {p: people["reviewer"].get(p).status_code for p in ("/queue/", f"/runs/{before['id']}/")}
    hung_took = time.monotonic() - started
    assert set(hung.values()) == {200}, hung
    redis.kill()

    during = _submit(gateway, wf, token, "A-101")  # the gateway keeps recording runs
    people["reviewer"] = Person(gateway, "reviewer")  # signing in works too
    down = {name: {p: people[name].get(p).status_code for p in up[name]} for name in PEOPLE}
    changed = {
        name: {p: (up[name][p], s) for p, s in pages.items() if s != up[name][p]}
        for name, pages in down.items()
    }
    assert not any(changed.values()), changed
    run_page = people["reviewer"].get(f"/runs/{during['id']}/")
    assert run_page.status_code == 200 and 'id="reservations-down"' in run_page.text

    decided = {
        "approve": people["reviewer"].decide(during["id"], "approve"),
        "approve-before": people["reviewer"].decide(before["id"], "approve"),
    }
    assert {k: r.status_code for k, r in decided.items()} == {k: 302 for k in decided}
    for run in (before, during):
        assert _status(gateway, token, run) == "approved"  # recorded, waiting for the broker
        assert not DemoLedgerEntry.objects.filter(idempotency_key__endswith=run["id"]).exists()

    redis.start()  # the same port, empty
    back = time.monotonic()
    for run in (before, during):
        wait_for(
            lambda run=run: _status(gateway, token, run) == "executed",
            timeout=60,
            what="the approved refund to be executed after Redis returned",
            on_timeout=worker.output,
        )
    print(
        f"pages per person {[len(up[n]) for n in PEOPLE]} ({len(kinds)} kinds); "
        f"hung Redis: 2 pages in {hung_took:.2f} s; "
        f"executed {time.monotonic() - back:.2f} s after Redis returned"
    )
    for run in (before, during):
        key = f"refund.issue:{run['id']}"
        assert DemoLedgerEntry.objects.filter(idempotency_key=key).count() == 1
        phases = TraceEvent.objects.filter(run_id=run["id"], type="execution").order_by("seq")
        assert [e.payload["phase"] for e in phases] == ["started", "finished"]
