"""`GET /runs/{id}?wait=S`: wait for a decision without holding a server thread.

Under the documented server (gunicorn with traces.server.LongPollWorker) the view finds a
`LongPoll` in the request's environ. Instead of sleeping, it parks: the worker keeps the
connection, frees the thread, and runs the view again when the run's status changes
(PostgreSQL NOTIFY), at a coarse re-check, or at the deadline; the view then answers, or
parks again until the deadline. Any other server (runserver, the test client, a plain
WSGI server) has no such hook, and the view waits in its thread, polling, as before.
Either way each token holds at most LADDER_MAX_WAITS_PER_TOKEN open waits
(traces/limits.py), and the slot is released however the wait ends.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from django.conf import settings
from django.http import HttpRequest

from traces.limits import WAITS
from traces.status import WAITING_STATUSES, RunStatus

if TYPE_CHECKING:  # the server's worker imports this module before Django is set up
    from traces.auth import AgentAuth
    from traces.models import Run

ENVIRON_KEY = "ladder.longpoll"
CHANNEL = "ladder_run_status"  # NOTIFY channel, payload the run id (traces migration 0008)


@dataclass
class LongPoll:
    """What the server and the view tell each other about one parked request."""

    deadline: float | None = None  # set once parked; the same on every resumed run
    token_id: int | None = None  # whose wait slot the server releases at the end
    run_id: str = ""
    parking: bool = False  # this very call asked to park

    @property
    def resumed(self) -> bool:
        return self.deadline is not None

    def park(self, *, run_id: str, deadline: float, token_id: int) -> None:
        self.run_id, self.deadline, self.token_id = run_id, deadline, token_id
        self.parking = True

    def release(self) -> None:
        """Give the token's wait slot back; a second call does nothing."""
        if self.token_id is not None:
            WAITS.release(self.token_id)
            self.token_id = None


def run_wait(request: HttpRequest, *, auth: AgentAuth, run: Run, seconds: float) -> Run | None:
    """The run once decided or at the deadline; None when the server parked the request
    (the view's answer is then discarded and the view is called again later)."""
    if not waits(run) or seconds <= 0:
        return run
    hook: LongPoll | None = request.META.get(ENVIRON_KEY)
    if hook is None:
        return _wait_in_thread(auth=auth, run=run, seconds=seconds)
    deadline = hook.deadline if hook.resumed else time.monotonic() + seconds
    if time.monotonic() >= deadline:
        return run  # the server gives a held slot back as this answer leaves
    if not hook.resumed:
        WAITS.acquire(auth.token_id)  # 429 too_many_waits
    hook.park(run_id=str(run.pk), deadline=deadline, token_id=auth.token_id)
    return None


def waits(run: Run) -> bool:
    """The agent still has to wait: no decision yet, or approved while its workflow is
    stopped (docs/stop.md: it may act only once the workflow resumes). A resume NOTIFYs
    the approved runs' ids, which wakes their parked polls."""
    if run.status in WAITING_STATUSES:
        return True
    return run.status == RunStatus.APPROVED and run.workflow.stopped_at is not None


def _wait_in_thread(*, auth: AgentAuth, run: Run, seconds: float) -> Run:
    # Servers without the parking worker (runserver, tests): the old polling loop, with
    # the same per-token cap.
    WAITS.acquire(auth.token_id)
    try:
        deadline = time.monotonic() + seconds
        delay = 0.1
        while waits(run):
            # To the deadline itself, not a step short of it: a poll capped at the run's
            # review deadline must end after it, when the view can apply it.
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            time.sleep(min(delay, remaining))
            delay = min(delay * 1.5, 1.0)
            run.refresh_from_db()
        return run
    finally:
        WAITS.release(auth.token_id)


def recheck_seconds(*, listening: bool) -> float:
    """How often a parked poll re-reads its run: coarse while notifications arrive, every
    second when they cannot (no PostgreSQL, or its LISTEN connection is down)."""
    return max(1.0, float(settings.LADDER_WAIT_RECHECK_SECONDS)) if listening else 1.0
