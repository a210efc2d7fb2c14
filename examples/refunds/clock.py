"""Simulated time for `manage.py simulate`.

The simulation lives weeks in minutes: `SimClock` moves this process's clock (every
`timezone.now()`, `datetime.now()` and `time.time()`, through time-machine) to the
story's instant and jumps it forward between events; in between, it ticks at the real
rate. Nothing else changes: the gateway, the services and the tasks stamp what they
record with the time they read, as they always do.

A Celery worker is another process. Started with LADDER_SIMULATED_CLOCK=1 (development
mode only), it runs each task on the simulation's clock: the simulator publishes the
offset between its clock and the real one in Redis at every jump, and the worker reads it
as each task starts. Without that setting a worker never touches its clock.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime

import time_machine
from django.conf import settings

log = logging.getLogger(__name__)

OFFSET_KEY = "ladder:simulate:clock-offset"


def _redis():
    """The Celery broker's Redis: the one the simulator and its worker both reach."""
    import redis

    from ladder.celery import app

    url = app.conf.broker_url
    return redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)


class SimClock:
    """The simulation's clock in this process (and, through Redis, in the worker)."""

    def __init__(self, start: datetime, *, publish: bool) -> None:
        self._travel = time_machine.travel(start, tick=True)
        self._publish = publish

    def __enter__(self) -> SimClock:
        self._coordinates = self._travel.start()
        self._share()
        return self

    def __exit__(self, *exc) -> None:
        self._travel.stop()
        if self._publish:
            _redis().delete(OFFSET_KEY)

    def now(self) -> datetime:
        from django.utils import timezone

        return timezone.now()

    def advance_to(self, at: datetime) -> None:
        """Jump forward to `at` (never back: a trace's times only ever grow)."""
        delta = (at - self.now()).total_seconds()
        if delta > 0:
            self._coordinates.shift(delta)
            self._share()

    def _share(self) -> None:
        if self._publish:
            offset = time.time() - time_machine.escape_hatch.time.time()
            _redis().set(OFFSET_KEY, repr(offset))


_worker_travel: list = []


def follow_in_worker() -> None:
    """Connect the worker's task hooks when LADDER_SIMULATED_CLOCK is on."""
    if not getattr(settings, "LADDER_SIMULATED_CLOCK", False):
        return
    from celery.signals import task_postrun, task_prerun

    task_prerun.connect(_task_starts, weak=False)
    task_postrun.connect(_task_ends, weak=False)


def _task_starts(**_) -> None:
    raw = _redis().get(OFFSET_KEY)
    if raw is None:
        return
    travel = time_machine.travel(time.time() + float(raw), tick=True)
    travel.start()
    _worker_travel.append(travel)


def _task_ends(**_) -> None:
    while _worker_travel:
        _worker_travel.pop().stop()
