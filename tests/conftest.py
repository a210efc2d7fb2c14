import pytest
from django.conf import settings

from ladder.celery import app as celery_app
from tests.factories import ActionTypeFactory, WorkflowFactory
from traces.services.tokens import token_create


def pytest_configure(config):
    if settings.DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql":
        raise pytest.UsageError(
            "the suite runs on PostgreSQL: use `make test` (it sets DATABASE_URL)"
        )
    # PBKDF2's deliberate slowness buys nothing in tests.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def _eager_celery():
    # Unit tests run tasks in-process; tests/traces/test_worker.py runs a real worker.
    celery_app.conf.task_always_eager = True
    yield


@pytest.fixture(autouse=True)
def _fresh_cache():
    # Reservations and "shown" markers live in Redis (a database of its own in tests).
    from django.core.cache import cache

    cache.clear()
    yield


@pytest.fixture(autouse=True)
def _fresh_limits():
    # Request buckets and wait slots are per process; each test starts with full ones.
    from traces import limits

    limits.RATE.reset()
    yield


@pytest.fixture
def make_workflow(db):
    def make(*, rung=3, actions=("refund.issue",), **kwargs):
        wf = WorkflowFactory(rung=rung, **kwargs)
        for name in actions:
            ActionTypeFactory(workflow=wf, name=name)
        return wf

    return make


@pytest.fixture
def agent(client, db):
    """An agent client: `agent(workflows)` returns a callable API helper."""

    class Agent:
        def __init__(self, token):
            self.token = token
            self.headers = {"Authorization": f"Bearer {token}"}

        def post(self, path, body=None, *, raw=None, content_type="application/json"):
            import json

            data = raw if raw is not None else json.dumps(body)
            return client.post(
                f"/api/v1{path}", data=data, content_type=content_type, headers=self.headers
            )

        def get(self, path):
            return client.get(f"/api/v1{path}", headers=self.headers)

    def make(*workflows):
        _token, raw = token_create(name="test agent", workflows=list(workflows))
        return Agent(raw)

    return make


@pytest.fixture
def clock(monkeypatch):
    """Time without sleeping: `clock.advance(seconds)` moves the server's
    `timezone.now()` that far ahead of the real clock from then on (the real clock keeps
    running under it), so a deadline passes when a test says so."""
    from datetime import timedelta

    from django.utils import timezone

    real = timezone.now

    class Clock:
        offset = timedelta(0)

        def advance(self, seconds: float) -> None:
            self.offset += timedelta(seconds=seconds)

        def now(self):
            return real() + self.offset

    ahead = Clock()
    monkeypatch.setattr(timezone, "now", ahead.now)
    return ahead
