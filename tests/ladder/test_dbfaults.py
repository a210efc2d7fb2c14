"""PostgreSQL unreachable: 503 with Retry-After, never a 500 (ladder/dbfaults.py).

In-process, against a real refused connection (the default connection pointed at a port
nothing listens on) and a real server-side hang-up (pg_terminate_backend). The outage
under load, with a real server restarted, is tests/traces/test_database_restart.py.
"""

import sqlite3
import time
from contextlib import contextmanager

import psycopg
import pytest
from django.db import connection
from django.db.utils import InterfaceError, OperationalError, ProgrammingError

from ladder.dbfaults import close_dead_connections, database_unavailable
from tests.factories import UserFactory
from tests.traces.live import free_port


def wrapped(django_class, cause):
    try:
        raise cause
    except Exception as exc:
        try:
            raise django_class(str(exc)) from exc
        except django_class as wrapped_exc:
            return wrapped_exc


@pytest.mark.parametrize(
    "exc",
    [
        wrapped(OperationalError, psycopg.OperationalError("connection failed: refused")),
        wrapped(OperationalError, psycopg.errors.AdminShutdown("terminating connection")),
        wrapped(OperationalError, psycopg.errors.CannotConnectNow("starting up")),
        wrapped(OperationalError, psycopg.errors.ConnectionFailure("lost")),
        wrapped(InterfaceError, psycopg.InterfaceError("connection already closed")),
        psycopg.OperationalError("consuming input failed: server closed the connection"),
    ],
)
def test_errors_that_say_the_database_cannot_be_reached(exc):
    assert database_unavailable(exc)


@pytest.mark.parametrize(
    "exc",
    [
        wrapped(ProgrammingError, psycopg.errors.UndefinedTable("no such table")),
        wrapped(OperationalError, psycopg.errors.QueryCanceled("statement timeout")),
        wrapped(OperationalError, psycopg.errors.DeadlockDetected("deadlock")),
        wrapped(OperationalError, sqlite3.OperationalError("database is locked")),
        ValueError("not a database error"),
    ],
)
def test_errors_in_a_query_are_not_an_outage(exc):
    assert not database_unavailable(exc)


@contextmanager
def database_refused():
    """The default connection now points at a port nothing listens on."""
    settings = connection.settings_dict
    port = settings["PORT"]
    connection.close()
    settings["PORT"] = str(free_port())
    try:
        yield
    finally:
        connection.close()
        settings["PORT"] = port


@pytest.mark.django_db(transaction=True)
def test_the_gateway_answers_503_with_retry_after_while_the_database_is_refused(
    make_workflow, agent
):
    wf = make_workflow()
    client = agent(wf)
    body = {"workflow": wf.slug, "idempotency_key": "k-1", "input": {"text": "hi"}}
    with database_refused():
        submitted = client.post("/runs", body)
        read = client.get("/runs/00000000-0000-0000-0000-000000000000")

    for response in (submitted, read):
        assert response.status_code == 503, response.content
        assert response["Retry-After"] == "1"
        error = response.json()["error"]
        assert error["code"] == "database_unavailable"
        # Refused while connecting: nothing of the request reached the database.
        assert error["details"] == {"maybe_applied": False}
    # And back: the same submission is stored once.
    assert client.post("/runs", body).status_code == 201
    assert client.post("/runs", body).status_code == 200


@pytest.mark.django_db(transaction=True)
def test_a_reviewer_page_answers_a_plain_503_while_the_database_is_refused(client):
    client.force_login(UserFactory())
    with database_refused():
        response = client.get("/")

    assert response.status_code == 503
    assert response["Retry-After"] == "1"
    assert response["Content-Type"].startswith("text/html")
    assert b"Unavailable for a moment" in response.content
    assert client.get("/").status_code in (200, 302)


@pytest.mark.django_db(transaction=True)
def test_a_connection_the_server_hung_up_on_is_replaced_before_it_is_used():
    with connection.cursor() as cur:
        cur.execute("SELECT pg_backend_pid()")
        (pid,) = cur.fetchone()
    kept = connection.connection
    close_dead_connections()  # a healthy idle connection is left alone
    assert connection.connection is kept

    settings = connection.settings_dict
    with psycopg.connect(
        dbname=settings["NAME"],
        user=settings["USER"],
        host=settings["HOST"],
        port=settings["PORT"],
        autocommit=True,
    ) as other:
        other.execute("SELECT pg_terminate_backend(%s)", [pid])
    deadline = time.monotonic() + 5
    while connection.connection is kept and time.monotonic() < deadline:
        close_dead_connections()
        time.sleep(0.01)

    assert connection.connection is None  # dropped, not failed on
    with connection.cursor() as cur:
        cur.execute("SELECT 1")
        assert cur.fetchone() == (1,)


@pytest.mark.django_db(transaction=True)
def test_a_connection_lost_mid_request_says_the_write_may_have_been_applied(
    make_workflow, agent, monkeypatch
):
    from traces import fastpath

    def lost(*args, **kwargs):
        raise wrapped(OperationalError, psycopg.OperationalError("server closed the connection"))

    wf = make_workflow()
    client = agent(wf)
    monkeypatch.setattr(fastpath, "insert_run", lost)
    response = client.post("/runs", {"workflow": wf.slug, "idempotency_key": "k", "input": 1})

    assert response.status_code == 503
    assert response["Retry-After"] == "1"
    assert response.json()["error"]["details"] == {"maybe_applied": True}


def test_an_outage_raised_outside_any_view_is_a_503_and_anything_else_a_500(rf):
    from ladder.dbfaults import server_error

    request = rf.get("/queue/")
    try:
        raise wrapped(OperationalError, psycopg.OperationalError("connection failed: refused"))
    except OperationalError:
        response = server_error(request)
    assert response.status_code == 503 and response["Retry-After"] == "1"

    try:
        raise ValueError("a bug")
    except ValueError:
        response = server_error(request)
    assert response.status_code == 500
