"""Long polls under the real server (gunicorn, traces.server.LongPollWorker).

Each test starts its own gunicorn on a free loopback port against the test database and
stops it. The worker has few threads on purpose: a poll held in a thread, as before,
would leave the other agents nothing to be served by.
"""

import contextlib
import http.client
import json
import os
import select
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.db import connection

from approvals import services as review
from approvals.roles import role_grant
from traces.models import Run
from traces.services.tokens import token_create

ROOT = Path(__file__).resolve().parents[2]
HOST = "127.0.0.1"

pytestmark = pytest.mark.django_db(transaction=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def gunicorn(*, threads: int, **env):
    db = connection.settings_dict
    port = _free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "-c",
            "gunicorn.conf.py",
            "--bind",
            f"{HOST}:{port}",
            "--workers",
            "1",
            "--threads",
            str(threads),
            "--log-level",
            "warning",
        ],
        cwd=ROOT,
        env={
            **os.environ,
            "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
            "REDIS_URL": settings.REDIS_URL,
            "DEBUG": "0",
            **{k: str(v) for k, v in env.items()},
        },
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:  # ready when it answers (the API's JSON 401 needs the whole app loaded)
            assert proc.poll() is None, proc.stdout.read().decode(errors="replace")
            try:
                status, _, _ = request(port, "GET", "/api/v1/runs/x", token="lat_x")
                if status == 401:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, "gunicorn did not become ready"
            time.sleep(0.1)
        yield port
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)


def request(port, method, path, *, token, body=None, timeout=60, conn=None):
    own = conn is None
    conn = conn or http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request(
            method,
            path,
            body=json.dumps(body) if body is not None else None,
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )
        resp = conn.getresponse()
        data = resp.read()
        return resp.status, dict(resp.getheaders()), json.loads(data) if data else None
    finally:
        if own:
            conn.close()


def submission(workflow, key):
    return {
        "workflow": workflow.slug,
        "idempotency_key": key,
        "input": {"message": "charged twice"},
        "proposal": {
            "action": "refund.issue",
            "params": {"order_id": "A-1", "amount": 10, "currency": "EUR"},
        },
    }


@pytest.fixture
def l3(make_workflow):
    workflow = make_workflow(rung=3)
    reviewer = User.objects.create_user("rev")
    role_grant(workflow=workflow, user=reviewer, role="reviewer", by=None)
    return workflow, reviewer


def approve(run_id, reviewer):
    run = Run.objects.select_related("workflow").get(pk=run_id)
    shown = review.review_open(run=run, user=reviewer)
    review.review_decide(
        run=run,
        reviewer=reviewer,
        seen_hash=shown.hash,
        seen_version=run.version,
        decision=review.Approval(approve=True),
    )


def test_waiting_agents_do_not_hold_up_another_agents_submissions(l3):
    workflow, reviewer = l3
    _t, waiter_token = token_create(name="waiters", workflows=[workflow])
    _t, submitter_token = token_create(name="submitter", workflows=[workflow])
    waiters = 20  # five times the server's threads
    with gunicorn(
        threads=4, LADDER_MAX_WAITS_PER_TOKEN=100, LADDER_WAIT_RECHECK_SECONDS=60
    ) as port:
        run_ids = []
        for i in range(waiters):
            status, _, run = request(
                port, "POST", "/api/v1/runs", token=waiter_token, body=submission(workflow, f"w{i}")
            )
            assert status == 201 and run["status"] == "pending_review"
            run_ids.append(run["id"])

        # Every poll is sent (and, under the old server, holding a thread) first.
        sent_at = time.monotonic()
        polls = [_open_poll(port, waiter_token, run_id, wait=8) for run_id in run_ids]
        took = []
        conn = http.client.HTTPConnection(HOST, port, timeout=30)
        for i in range(20):
            started = time.monotonic()
            status, _, _ = request(
                port,
                "POST",
                "/api/v1/runs",
                token=submitter_token,
                body=submission(workflow, f"s{i}"),
                conn=conn,
            )
            took.append(time.monotonic() - started)
            assert status == 201
        conn.close()
        # The old server held one thread per poll: these waited for the polls to end.
        assert max(took) < 5.0, took

        # A decision through the reviewer's service wakes its poll at once (the fallback
        # re-check is a minute away here: only the database's notification can).
        decided_at = time.monotonic()
        approve(run_ids[0], reviewer)
        status, run = _read_all(polls[0])
        assert (status, run["id"], run["status"]) == (200, run_ids[0], "approved")
        assert time.monotonic() - decided_at < 3.0
        # The others end at their deadline, undecided, not later.
        for sock in polls[1:]:
            status, run = _read_all(sock)
            assert (status, run["status"]) == (200, "pending_review")
        assert 7.5 < time.monotonic() - sent_at < 10.0
        for sock in polls:
            sock.close()


def test_the_wait_cap_answers_429_and_every_ending_gives_the_slot_back(l3):
    workflow, reviewer = l3
    _t, token = token_create(name="capped", workflows=[workflow])
    with gunicorn(threads=2, LADDER_MAX_WAITS_PER_TOKEN=2) as port:
        run_ids = []
        for i in range(3):
            _, _, run = request(
                port, "POST", "/api/v1/runs", token=token, body=submission(workflow, f"c{i}")
            )
            run_ids.append(run["id"])
        # Three polls at once with room for two: whichever came last is refused at once.
        socks = [_open_poll(port, token, run_ids[i], wait=20) for i in range(3)]
        readable, _, _ = select.select(socks, [], [], 10)
        assert len(readable) == 1
        status, headers, body = _read_answer(readable[0])
        assert status == 429 and body["error"]["code"] == "too_many_waits"
        assert int(headers["retry-after"]) >= 1
        refused = socks.index(readable[0])
        socks = [sock for i, sock in enumerate(socks) if i != refused]
        held = [run_id for i, run_id in enumerate(run_ids) if i != refused]
        free = run_ids[refused]
        assert _poll_until(port, token, free, lambda s: s == 429)[0] == 429
        # A client that hangs up gives its slot back.
        socks[0].close()
        _poll_until(port, token, free, lambda s: s == 200)
        # So does a decision: the second poll answers and its slot is free again.
        approve(held[1], reviewer)
        status, run = _read_all(socks[1])
        assert (status, run["status"]) == (200, "approved")
        socks[1].close()
        # And so does a deadline: two short polls end, two more fit again.
        with ThreadPoolExecutor(2) as pool:
            short = [
                pool.submit(request, port, "GET", f"/api/v1/runs/{run_id}?wait=1", token=token)
                for run_id in (held[0], free)
            ]
            assert [f.result(timeout=10)[0] for f in short] == [200, 200]
        with ThreadPoolExecutor(2) as pool:
            again = [
                pool.submit(request, port, "GET", f"/api/v1/runs/{run_id}?wait=1", token=token)
                for run_id in (held[0], free)
            ]
            assert [f.result(timeout=10)[0] for f in again] == [200, 200]


def _open_poll(port, token, run_id, *, wait):
    sock = socket.create_connection((HOST, port), timeout=30)
    sock.sendall(
        f"GET /api/v1/runs/{run_id}?wait={wait} HTTP/1.1\r\nHost: {HOST}\r\n"
        f"Authorization: Bearer {token}\r\n\r\n".encode()
    )
    return sock


def _read_all(sock) -> tuple[int, dict]:
    """One HTTP/1.1 answer from a raw socket: (status, JSON body)."""
    status, _headers, body = _read_answer(sock)
    return status, body


def _read_answer(sock) -> tuple[int, dict, dict]:
    """One HTTP/1.1 answer from a raw socket: (status, lower-cased headers, JSON body)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, data
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in lines[1:])}
    length = int(headers["content-length"])
    while len(body) < length:
        chunk = sock.recv(65536)
        assert chunk, body
        body += chunk
    return int(lines[0].split()[1]), headers, json.loads(body)


def _poll_until(port, token, run_id, accept, *, seconds=10):
    """Short polls until one's status is accepted (a slot is taken or freed by another
    connection, which the server sees a moment later)."""
    deadline = time.monotonic() + seconds
    while True:
        answer = request(port, "GET", f"/api/v1/runs/{run_id}?wait=0.2", token=token)
        if accept(answer[0]):
            return answer
        assert time.monotonic() < deadline, answer
        time.sleep(0.05)


def test_a_missed_notification_is_caught_by_the_re_check(l3):
    workflow, reviewer = l3
    _t, token = token_create(name="re-check", workflows=[workflow])
    with gunicorn(threads=2, LADDER_WAIT_RECHECK_SECONDS=1) as port:
        _, _, run = request(
            port, "POST", "/api/v1/runs", token=token, body=submission(workflow, "m")
        )
        poll = _open_poll(port, token, run["id"], wait=20)
        # As if the notification were lost: the decision is made with the trigger off.
        with connection.cursor() as cursor:
            cursor.execute("ALTER TABLE traces_run DISABLE TRIGGER traces_run_status_notify")
        try:
            decided_at = time.monotonic()
            approve(run["id"], reviewer)
        finally:
            with connection.cursor() as cursor:
                cursor.execute("ALTER TABLE traces_run ENABLE TRIGGER traces_run_status_notify")
        status, answer = _read_all(poll)
        poll.close()
        assert (status, answer["status"]) == (200, "approved")
        assert time.monotonic() - decided_at < 5.0  # the re-check, long before the deadline


def test_a_parked_poll_is_answered_at_the_runs_review_deadline_with_the_denial(make_workflow):
    # Two seconds: below what an owner may set (a minute), so the real clock can pass it.
    workflow = make_workflow(rung=3, review_deadline_seconds=2)
    _t, token = token_create(name="deadline", workflows=[workflow])
    # No re-check before the poll's end: only the deadline cap can answer it early.
    with gunicorn(threads=1, LADDER_WAIT_RECHECK_SECONDS=60) as port:
        _, _, run = request(
            port, "POST", "/api/v1/runs", token=token, body=submission(workflow, "d")
        )
        started = time.monotonic()
        poll = _open_poll(port, token, run["id"], wait=25)
        status, answer = _read_all(poll)
        poll.close()
    assert status == 200
    assert answer["status"] == "denied"
    assert answer["decision"]["reason"] == "no decision within 2 s"
    assert time.monotonic() - started < 10  # at the deadline, long before the poll's 25 s
