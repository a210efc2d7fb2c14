"""The gunicorn worker the product is served with: gthread, plus parked long polls.

    gunicorn -c gunicorn.conf.py ladder.wsgi        # worker_class traces.server.LongPollWorker

Every request runs in gunicorn's thread pool exactly as under `--worker-class gthread`
(the gateway's hot path is untouched). A `GET /api/v1/runs/{id}?wait=S` on an undecided
run does not sleep there: the view asks to park (traces/longpoll.py), this worker keeps
the connection and returns the thread to the pool. One thread per process, the waiter,
watches every parked connection: it LISTENs on PostgreSQL (`ladder_run_status`, sent by
a trigger when a run's status changes), re-checks each run every
LADDER_WAIT_RECHECK_SECONDS anyway (a notification can be missed: a dropped LISTEN
connection, SQLite), ends each wait at its deadline, and notices a client that hung up.
Each of those hands the request back to the pool, where the view runs again and either
answers or parks once more. So 50 waiting agents hold 50 sockets, not 50 threads.

Why not ASGI: gunicorn's asgi worker serving Django's ASGI handler measured 3 ms for a
view that gthread answers in 0.7 ms, and Django opens a database connection per request
under ASGI (20 ms for the one-insert baseline against 1.9 ms): the gateway would lose
most of its throughput to free a thread that only long polls hold. (bench/README.md.)
"""

import contextlib
import os
import select
import socket
import threading
import time
from dataclasses import dataclass, field

from gunicorn.workers.gthread import ThreadWorker

from traces.limits import WAITS
from traces.longpoll import CHANNEL, ENVIRON_KEY, LongPoll, recheck_seconds


class _ParkSignal(BaseException):
    # A BaseException so that gunicorn's handlers (which turn an Exception into a 500)
    # let it through to LongPollWorker.handle.
    def __init__(self, hook: LongPoll):
        super().__init__()
        self.hook = hook
        self.req = None


@dataclass
class _Parked:
    req: object
    hook: LongPoll


class LongPollWorker(ThreadWorker):
    def init_process(self):
        self._local = threading.local()
        # conn -> _Parked, touched by the main thread only: waiting, or being run again
        # in the pool (never both, so a late wake-up cannot start a second run).
        self._parked: dict = {}
        self._replaying: dict = {}
        WAITS.processes = max(1, self.cfg.workers)
        super().init_process()

    def load_wsgi(self):
        super().load_wsgi()
        django_app = self.wsgi

        def app(environ, start_response):
            hook = getattr(self._local, "hook", None) or LongPoll()
            self._local.hook = None
            hook.parking = False
            environ[ENVIRON_KEY] = hook
            try:
                response = django_app(environ, start_response)
            finally:
                if not hook.parking:
                    # Answered: the slot is free before the answer is on the wire, so a
                    # client that polls again at once finds it free.
                    hook.release()
            if hook.parking:
                response.close()  # Django's request_finished: connections go back
                raise _ParkSignal(hook)
            return response

        self.wsgi = app

    def run(self):
        self.waiter = _Waiter(self)
        self.waiter.start()
        try:
            super().run()
        finally:
            self.waiter.stop()

    def handle_exit(self, sig, frame):
        super().handle_exit(sig, frame)
        # A stopping worker answers every parked poll now, with the run as it stands.
        self.method_queue.defer(self._resume_all)

    # -- in a pool thread -----------------------------------------------------------------

    def handle(self, conn):
        try:
            return super().handle(conn)
        except _ParkSignal as sig:
            return _Parked(req=sig.req, hook=sig.hook)

    def handle_request(self, req, conn):
        try:
            return super().handle_request(req, conn)
        except _ParkSignal as sig:
            sig.req = req
            raise

    def _replay(self, conn, parked: _Parked):
        """The parked request again, through the whole app (auth, run lookup, view)."""
        self._local.hook = parked.hook
        try:
            conn.sock.setblocking(True)
            return self._keepalive_after(conn, self.handle_request(parked.req, conn))
        except _ParkSignal as sig:
            return _Parked(req=parked.req, hook=sig.hook)
        except OSError:
            return False  # the client went away while we answered
        except Exception as exc:
            self.handle_error(parked.req, conn.sock, conn.client, exc)
            return False
        finally:
            self._local.hook = None

    # -- on the main thread (gunicorn's poller loop, through method_queue) -----------------

    def finish_request(self, conn, fs):
        result = None
        if not fs.cancelled() and fs.exception() is None:
            result = fs.result()
        if isinstance(result, _Parked):
            self._replaying.pop(conn, None)
            self._parked[conn] = result
            self.waiter.add(conn, result.hook)
            if not self.alive:
                self._resume(conn)
            return
        self._end_wait(conn)
        super().finish_request(conn, fs)

    def _end_wait(self, conn) -> None:
        parked = self._parked.pop(conn, None) or self._replaying.pop(conn, None)
        if parked is not None:
            self.waiter.forget(conn)
            parked.hook.release()

    def _resume(self, conn) -> None:
        parked = self._parked.pop(conn, None)
        if parked is None:
            return  # already answered, hung up, or being run again
        self._replaying[conn] = parked
        self.waiter.forget(conn)
        if not self.alive:
            parked.hook.deadline = time.monotonic()  # answer now
        fs = self.tpool.submit(self._replay, conn, parked)
        fs.add_done_callback(lambda fut: self.method_queue.defer(self.finish_request, conn, fut))

    def _resume_all(self) -> None:
        for conn in list(self._parked):
            self._resume(conn)

    def _hang_up(self, conn) -> None:
        if conn not in self._parked:
            return
        self._end_wait(conn)
        self.nr_conns -= 1
        conn.close()


@dataclass
class _Entry:
    conn: object
    run_id: str
    deadline: float
    next_check: float
    watch_socket: bool = True


@dataclass
class _Waiter:
    """One thread per worker process: wakes parked polls (see the module docstring)."""

    worker: LongPollWorker
    entries: dict = field(default_factory=dict)  # conn -> _Entry
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self):
        self._read, self._write = os.pipe()
        os.set_blocking(self._read, False)
        os.set_blocking(self._write, False)
        self._pg = None
        self._pg_retry_at = 0.0
        self._stopping = False
        self._thread = threading.Thread(target=self._loop, name="longpoll-waiter", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping = True
        self._poke()

    def add(self, conn, hook: LongPoll) -> None:
        now = time.monotonic()
        entry = _Entry(
            conn=conn,
            run_id=hook.run_id,
            deadline=hook.deadline,
            next_check=now + recheck_seconds(listening=self._pg is not None),
        )
        with self.lock:
            self.entries[conn] = entry
        self._poke()

    def forget(self, conn) -> None:
        with self.lock:
            self.entries.pop(conn, None)

    def _poke(self) -> None:
        with contextlib.suppress(BlockingIOError, OSError):
            os.write(self._write, b"x")

    def _wake(self, entries, handler) -> None:
        with self.lock:
            # Only entries still current: one replaced or forgotten meanwhile is not woken.
            woken = [e for e in entries if self.entries.get(e.conn) is e]
            for e in woken:
                del self.entries[e.conn]
        for e in woken:
            self.worker.method_queue.defer(handler, e.conn)

    # -- the thread -----------------------------------------------------------------------

    def _loop(self) -> None:
        while not self._stopping:
            try:
                self._once()
            except Exception:  # never let the waiter die: polls would wait to the deadline
                self.worker.log.exception("long-poll waiter")
                time.sleep(0.5)

    def _once(self) -> None:
        self._listen()
        now = time.monotonic()
        with self.lock:
            entries = list(self.entries.values())
        timeout = 1.0
        for e in entries:
            timeout = min(timeout, e.deadline - now, e.next_check - now)
        poller = select.poll()
        poller.register(self._read, select.POLLIN)
        by_fd = {}
        if self._pg is not None:
            poller.register(self._pg.pgconn.socket, select.POLLIN)
        for e in entries:
            if e.watch_socket:
                with contextlib.suppress(OSError, ValueError):
                    fd = e.conn.sock.fileno()
                    poller.register(fd, select.POLLIN)
                    by_fd[fd] = e
        ready = poller.poll(max(0.0, timeout) * 1000)
        notified: set[str] = set()
        gone = []
        for fd, _events in ready:
            if fd == self._read:
                with contextlib.suppress(BlockingIOError, OSError):
                    os.read(self._read, 4096)
            elif self._pg is not None and fd == self._pg.pgconn.socket:
                notified |= self._notifications()
            elif (e := by_fd.get(fd)) is not None:
                if self._hung_up(e.conn):
                    gone.append(e)
                else:
                    e.watch_socket = False  # bytes of a next request: read after answering
        now = time.monotonic()
        due = [
            e
            for e in entries
            if e not in gone and (e.run_id in notified or now >= e.deadline or now >= e.next_check)
        ]
        if gone:
            self._wake(gone, self.worker._hang_up)
        if due:
            self._wake(due, self.worker._resume)

    @staticmethod
    def _hung_up(conn) -> bool:
        try:
            return conn.sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
        except (BlockingIOError, InterruptedError):
            return False
        except (OSError, ValueError):
            return True

    # -- PostgreSQL LISTEN ----------------------------------------------------------------

    def _listen(self) -> None:
        if self._pg is not None or time.monotonic() < self._pg_retry_at:
            return
        from django.db import connections

        db = connections["default"].settings_dict
        if db["ENGINE"] != "django.db.backends.postgresql":
            self._pg_retry_at = float("inf")  # SQLite: re-checks alone
            return
        import psycopg

        params = {
            "dbname": db["NAME"],
            "user": db.get("USER") or None,
            "password": db.get("PASSWORD") or None,
            "host": db.get("HOST") or None,
            "port": db.get("PORT") or None,
        }
        try:
            pg = psycopg.connect(
                **{k: v for k, v in params.items() if v}, autocommit=True, connect_timeout=5
            )
            pg.execute(f"LISTEN {CHANNEL}")
        except psycopg.Error:
            self.worker.log.warning("long polls: cannot LISTEN; re-checking every second")
            self._pg_retry_at = time.monotonic() + 5.0
            return
        self._pg = pg
        # Anything decided while we were not listening: re-check every parked poll now.
        with self.lock:
            for e in self.entries.values():
                e.next_check = 0.0

    def _notifications(self) -> set[str]:
        pgconn = self._pg.pgconn
        try:
            pgconn.consume_input()
        except Exception:
            self.worker.log.warning("long polls: LISTEN connection lost; re-checking")
            with contextlib.suppress(Exception):
                self._pg.close()
            self._pg = None
            self._pg_retry_at = time.monotonic() + 1.0
            with self.lock:
                for e in self.entries.values():
                    e.next_check = 0.0
            return set()
        run_ids = set()
        while (note := pgconn.notifies()) is not None:
            run_ids.add(note.extra.decode("ascii", "replace"))
        return run_ids
