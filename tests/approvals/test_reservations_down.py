"""Reservations ("open by NAME") live in the cache (Redis). With it down, every review page
still works, says reservations are off, and decisions are recorded (issue: reliability)."""

import socket

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from approvals import services
from traces.models import Run, RunStatus


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again on return: nothing listens there


@pytest.fixture(autouse=True)
def fresh_backoff():
    services._Cache.down_until = 0.0
    yield
    services._Cache.down_until = 0.0


@pytest.fixture
def redis_down(settings):
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": f"redis://127.0.0.1:{_closed_port()}/0",
            "OPTIONS": {"socket_connect_timeout": 0.2, "socket_timeout": 0.2},
        }
    }


def test_with_redis_down_the_queue_and_run_pages_work_and_say_reservations_are_off(
    submit, people, login, redis_down
):
    run = submit("l3")
    client = login(people["rev"])
    queue = client.get("/queue/")
    assert queue.status_code == 200
    assert b'id="reservations-down"' in queue.content
    assert str(run.id).encode() in queue.content
    page = client.get(f"/runs/{run.id}/")
    assert page.status_code == 200
    assert b'id="reservations-down"' in page.content
    assert b"Open by" not in page.content


def test_with_redis_down_a_decision_is_recorded(submit, people, login, seen, redis_down):
    run = submit("l3")
    client = login(people["rev"])
    assert client.get(f"/runs/{run.id}/").status_code == 200
    answer = client.post(f"/runs/{run.id}/decide", {"verdict": "approve", **seen(run)})
    assert answer.status_code in (200, 302), answer.content[:300]
    decided = Run.objects.get(pk=run.pk)
    assert decided.status == RunStatus.APPROVED
    assert decided.decided_by == people["rev"]


def test_with_redis_up_the_pages_carry_no_warning(submit, people, login):
    run = submit("l3")
    client = login(people["rev"])
    assert b"reservations-down" not in client.get("/queue/").content
    assert b"reservations-down" not in client.get(f"/runs/{run.id}/").content


def test_after_a_cache_failure_the_process_leaves_the_cache_alone_for_the_backoff(
    submit, people, monkeypatch, settings
):
    """A hung Redis costs one timeout per process, not one per page."""
    settings.LADDER_CACHE_BACKOFF_SECONDS = 60
    calls = []

    def refuse(*args, **kwargs):
        calls.append(args)
        raise RedisConnectionError("Connection refused")

    monkeypatch.setattr(services.cache, "add", refuse)
    monkeypatch.setattr(services.cache, "get_many", refuse)
    run = submit("l3")
    first = services.review_open(run=run, user=people["rev"])
    assert (first.reserved, first.held_by) == (False, None)
    assert len(calls) == 1
    for user in (people["rev"], people["rev2"]):
        assert services.review_open(run=run, user=user).reserved is False
    assert services.reservations([run.id]) == (False, {})
    assert len(calls) == 1  # within the backoff nothing more was tried


def test_once_the_backoff_is_over_reservations_come_back(submit, people, settings):
    settings.LADDER_CACHE_BACKOFF_SECONDS = 60
    run = submit("l3")
    services._Cache.down_until = 1e18  # as if a failure had just happened
    assert services.review_open(run=run, user=people["rev"]).reserved is False
    services._Cache.down_until = 0.0  # the backoff has run out
    assert services.review_open(run=run, user=people["rev"]).reserved is True
    assert services.review_open(run=run, user=people["rev2"]).held_by == "rev"
    assert services.reservations([run.id]) == (True, {str(run.id): "rev"})
