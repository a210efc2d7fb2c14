"""PostgreSQL down or restarting: a 503 with Retry-After, never a 500 (docs/reliability.md).

- `database_unavailable(exc)`: the error says the database cannot be reached (connection
  refused or lost, "terminating connection due to administrator command", the server
  starting up or shutting down, too many connections), as opposed to an error in a
  query, which stays a 500.
- `unavailable_response(request, exc)`: the gateway's JSON error (`database_unavailable`)
  under /api/, a plain page elsewhere, both 503 with `Retry-After`
  (LADDER_DB_RETRY_AFTER_SECONDS). Nothing on the way renders a template or reads the
  session: the database is gone. The JSON answer says in `details.maybe_applied` whether
  the request may have written something before the connection was lost (a write
  request that got past opening its connection); the SDK repeats one that is not
  idempotent only when it says false.
- `DatabaseUnavailableMiddleware`: the pages' (and any view's) way to that answer; the
  gateway's own handlers (traces/api.py) call `unavailable_response` themselves.
- `close_dead_connections`: on every request (and Celery task) start, a persistent
  connection (CONN_MAX_AGE) whose socket the server has closed is dropped before it is
  used, so the first requests after a restart do not fail on it. One poll() of the socket,
  no round trip: an idle connection has nothing to read unless the server hung up.
  Django itself closes a connection after an error made it unusable (errors_occurred),
  which covers a server that vanished without a word.
"""

import logging
import select
import sys
from collections.abc import Callable
from typing import Any

import psycopg
from django.conf import settings
from django.db import connections
from django.db import utils as db_utils
from django.http import HttpRequest, HttpResponse
from django.views import defaults

from ladder.middleware import api_error

log = logging.getLogger(__name__)

# SQLSTATEs that mean "not reachable now" rather than "your query failed": class 08
# (connection exception) and these.
_UNAVAILABLE_CODES = frozenset(
    {
        "57P01",  # admin_shutdown: terminating connection due to administrator command
        "57P02",  # crash_shutdown
        "57P03",  # cannot_connect_now: the database system is starting up / shutting down
        "53300",  # too_many_connections
    }
)
_READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

_PAGE = (
    "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
    "<title>Unavailable for a moment — Autonomy Ladder</title></head><body>"
    "<h1>Unavailable for a moment</h1>"
    "<p>The database cannot be reached. Nothing you did is lost; try again in a few "
    "seconds.</p></body></html>"
)


def database_unavailable(exc: BaseException) -> bool:
    """True when `exc` says the database cannot be reached (PostgreSQL only)."""
    if isinstance(exc, db_utils.InterfaceError):  # the connection is already closed
        return True
    if isinstance(exc, psycopg.Error):  # raised outside Django's wrapper
        error = exc
    elif isinstance(exc, db_utils.OperationalError) and isinstance(exc.__cause__, psycopg.Error):
        error = exc.__cause__
    else:
        return False  # not PostgreSQL's (SQLite's "database is locked" stays a 500)
    if isinstance(error, psycopg.InterfaceError):
        return True
    if not isinstance(error, psycopg.OperationalError):
        return False
    state = error.sqlstate
    # No SQLSTATE: raised by the client itself (refused, lost, closed connection).
    return state is None or state.startswith("08") or state in _UNAVAILABLE_CODES


def _while_connecting(exc: BaseException) -> bool:
    """The error was raised while opening a connection: nothing of this request reached
    the database through it (Django opens one at the first query)."""
    for error in (exc, exc.__cause__):
        tb = getattr(error, "__traceback__", None)
        while tb is not None:
            if tb.tb_frame.f_code.co_name == "get_new_connection":
                return True
            tb = tb.tb_next
    return False


def retry_after() -> int:
    return max(1, int(settings.LADDER_DB_RETRY_AFTER_SECONDS))


def unavailable_response(request: HttpRequest, exc: BaseException) -> HttpResponse:
    seconds = retry_after()
    maybe_applied = request.method not in _READ_METHODS and not _while_connecting(exc)
    log.warning(
        "database unavailable: %s %s answered 503 (%s: %s)",
        request.method,
        request.path,
        type(exc).__name__,
        str(exc).strip().splitlines()[0] if str(exc).strip() else "",
    )
    _drop_broken_connections()
    if request.path.startswith("/api/"):
        response: HttpResponse = api_error(
            503,
            "database_unavailable",
            f"the database is unavailable; retry in {seconds} s (a run is never stored "
            "twice under one idempotency key)",
            {"maybe_applied": maybe_applied},
        )
    else:
        response = HttpResponse(_PAGE, status=503, content_type="text/html; charset=utf-8")
    response["Retry-After"] = str(seconds)
    return response


class DatabaseUnavailableMiddleware:
    """A view (or its template) that found the database unreachable answers 503."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exc: Exception) -> HttpResponse | None:
        if database_unavailable(exc):
            return unavailable_response(request, exc)
        return None


def server_error(request: HttpRequest) -> HttpResponse:
    """handler500: an error raised outside a view (a middleware saving the session)
    that says the database is unreachable is a 503 too; anything else is Django's 500."""
    exc = sys.exc_info()[1]
    if exc is not None and database_unavailable(exc):
        return unavailable_response(request, exc)
    return defaults.server_error(request)


def _close_connections_where(dead: Callable[[Any], bool]) -> None:
    """Close this thread's idle PostgreSQL connections whose psycopg connection is dead."""
    for conn in connections.all(initialized_only=True):
        raw = conn.connection
        if raw is None or conn.in_atomic_block or conn.vendor != "postgresql":
            continue
        if dead(raw):
            conn.close()


def _drop_broken_connections() -> None:
    # Django closes a connection an error left unusable when the request ends; one that
    # psycopg already knows is broken is closed now (it would only fail again).
    _close_connections_where(lambda raw: raw.closed or raw.broken)


def _server_hung_up(raw) -> bool:
    if raw.closed or raw.broken:
        return True
    try:
        fd = raw.fileno()
    except psycopg.Error:
        return True
    poller = select.poll()
    poller.register(fd, select.POLLIN | select.POLLPRI)
    # POLLHUP and POLLERR are always reported; POLLIN on an idle connection is the
    # server's goodbye (a FATAL message, or end of file).
    return bool(poller.poll(0))


def close_dead_connections(**_kwargs) -> None:
    """Signal receiver (request_started, task_prerun): drop persistent connections the
    server has hung up on, so this request opens a fresh one instead of failing."""
    _close_connections_where(_server_hung_up)
