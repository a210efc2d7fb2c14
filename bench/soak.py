"""Soak: the whole product under a mixed load for minutes, then every run accounted for.

    .venv/bin/python bench/soak.py                  # 5 minutes (make soak)
    .venv/bin/python bench/soak.py --seconds 30     # a short one while developing
    .venv/bin/python bench/soak.py --json           # the figures as JSON on stdout

It drops and creates its own database, `ladder_soak` (PostgreSQL on 127.0.0.1:5432, user
postgres; it refuses a name without "soak"), migrates it and seeds it through the
project's services (workflows at L0..L5, L4/L5 under a policy envelope with server
executors, agent tokens, reviewer users); starts its own redis-server on a free port, one
Celery worker (prefork, `-B`: the deployment's sweeps run too) and gunicorn with
gunicorn.conf.py on a free port, all on 127.0.0.1 only. Then load-driver processes
(stdlib only, keep-alive http.client connections, threads) drive for `--seconds`:

- submissions at every rung (closed loop, `--clients`), each with its own names, emails,
  phone numbers, order ids and amounts in its text;
- reviewer decisions through the review pages (log in, open the run, post the form with
  its CSRF token), `--decide-rate` a second: L1 drafts submitted with a light edit or
  discarded, L2 picks, L3 and escalated approvals and rejections;
- the agent's side of an approved agent-executor action: GET the run, claim, result;
- outcome labels (`--outcome-rate` a second);
- policy-allowed L4/L5 actions and approved server actions executed by the worker.

Afterwards: submissions a second (overall and per 30 s window), p50/p99 per kind of
request, errors by status, then verify_traces on the soak database and the accounting:
every run the driver got a 201 for exists once and nothing else does, each ended where
the driver's own record says it must, every server-executed run was executed once (one
demo-ledger row, one attempt, one `started` event), nothing left approved/executing once
the worker drained. Exit 1 if any check fails or the target is missed with --strict.
Every loop is bounded by time and by --max-runs; every process it started is stopped on
exit, Ctrl-C and SIGTERM included.
"""

# ruff: noqa: E402 - the imports below must come after the sys.path fix
from __future__ import annotations

import os
import sys

# bench/ holds queue.py, named like the standard library's `queue`: off the import path.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _HERE]

import argparse
import collections
import http.client
import json
import multiprocessing
import random
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import traceback
from pathlib import Path
from urllib.parse import urlencode

REPO = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
HOST = "127.0.0.1"  # the only host this script ever talks to
DEFAULT_DATABASE = "ladder_soak"
ADMIN_URL = "postgres://postgres@127.0.0.1:5432/postgres"
TARGET_SUBMISSIONS_PER_S = 300.0
DATABASE_IN_USE = [DEFAULT_DATABASE]  # for the CPU split: whose PostgreSQL backends are ours
WINDOW_S = 30.0

# What each workflow is: rung, actions (name, executor, value param). Server actions run
# traces.demo_executors.refund_issue, which writes one demo-ledger row per run.
LEDGER = "traces.demo_executors.refund_issue"
WORKFLOWS = {
    "soak-faq": {"rung": 0, "risk": "low", "actions": []},
    "soak-reply": {"rung": 1, "risk": "low", "actions": [("reply.send", "agent", "")]},
    "soak-recommend": {
        "rung": 2,
        "risk": "consequential",
        # Both server: a pick of the alternative is executed through the run's own action
        # type (its first choice's executor), see bench/README.md "Soak".
        "actions": [("refund.issue", "server", "amount"), ("voucher.issue", "server", "amount")],
    },
    "soak-refund": {
        "rung": 3, "risk": "consequential", "actions": [("refund.issue", "server", "amount")],
    },
    "soak-refund-policy": {
        "rung": 4,
        "risk": "consequential",
        "actions": [("refund.issue", "server", "amount")],
    },
    "soak-credit": {"rung": 5, "risk": "low", "actions": [("credit.issue", "server", "amount")]},
}  # fmt: skip
SLUG_BY_RUNG = {spec["rung"]: slug for slug, spec in WORKFLOWS.items()}
L4_COUNTRIES_ALLOWED = ["DE", "NL", "FR", "GB", "BE", "AT"]
L5_CHANNELS_ALLOWED = ["email", "sms", "app"]
POLICIES = {
    "soak-refund-policy": {
        "audit_sample_rate": 0.05,
        "rules": [
            {"id": "refunds-only", "kind": "allow_actions", "actions": ["refund.issue"],
             "control": "allowed_tools"},
            {"id": "cap-200", "kind": "value_cap", "action": "refund.issue", "max": "200.00",
             "currency": "EUR", "then": "escalate", "control": "value_cap"},
            {"id": "countries", "kind": "condition",
             "when": {"param": "country", "op": "not_in", "value": L4_COUNTRIES_ALLOWED},
             "then": "deny", "control": "data_scope"},
            {"id": "fraud", "kind": "flag", "flag": "fraud_adjacent", "then": "escalate",
             "control": "rbac"},
        ],
    },
    "soak-credit": {
        "audit_sample_rate": 0.01,
        "rules": [
            {"id": "credits-only", "kind": "allow_actions", "actions": ["credit.issue"],
             "control": "allowed_tools"},
            {"id": "cap-50", "kind": "value_cap", "action": "credit.issue", "max": "50.00",
             "currency": "EUR", "then": "escalate", "control": "value_cap"},
            {"id": "channels", "kind": "condition",
             "when": {"param": "channel", "op": "not_in", "value": L5_CHANNELS_ALLOWED},
             "then": "deny", "control": "data_scope"},
        ],
    },
}  # fmt: skip
SCHEMAS = {
    "reply.send": {"to": {"type": "string"}, "subject": {"type": "string"}},
    "refund.issue": {
        "order_id": {"type": "string", "required": True},
        "amount": {"type": "number", "required": True},
        "currency": {"type": "string"},
        "reason": {"type": "string"},
        "country": {"type": "string"},
    },
    "voucher.issue": {
        "order_id": {"type": "string", "required": True},
        "amount": {"type": "number", "required": True},
        "currency": {"type": "string"},
    },
    "credit.issue": {
        "account_id": {"type": "string", "required": True},
        "amount": {"type": "number", "required": True},
        "currency": {"type": "string"},
        "channel": {"type": "string"},
    },
}

# Runs in a child process (cwd = repo root) with the soak's environment: the project's
# services, as seed_demo uses them. Prints one JSON line: tokens and reviewers.
SEED_CODE = r"""
import json, secrets, sys
import django
django.setup()
from django.contrib.auth.models import User
from django.db import transaction
from approvals.models import Role
from approvals.roles import role_grant
from ladder.certificates import evidence_hash
from ladder.gates import max_rung_for
from ladder.models import ActionType, RungChange, Workflow
from ladder.policies import policy_latest
from ladder.services import certificate_issue
from traces.services.policy import policy_set
from traces.services.tokens import token_create

spec = json.loads(sys.stdin.read())
out = {"tokens": [], "reviewers": []}
with transaction.atomic():
    owner = User.objects.create_user("soak-owner", password=secrets.token_urlsafe(16))
    flows = []
    for slug, wf_spec in spec["workflows"].items():
        wf = Workflow.objects.create(
            slug=slug, name=slug.replace("-", " ").capitalize(), rung=wf_spec["rung"],
            risk_class=wf_spec["risk"], max_rung=max_rung_for(wf_spec["risk"]), owner=owner,
            personal_fields=["customer_name"], description="bench/soak.py",
        )
        RungChange.objects.create(
            workflow=wf, kind=RungChange.Kind.INITIAL, from_rung=None,
            to_rung=wf_spec["rung"], reason="soak workflow created", actor=None,
        )
        for name, executor, value_param in wf_spec["actions"]:
            ActionType.objects.create(
                workflow=wf, name=name, param_schema=spec["schemas"][name],
                value_param=value_param, currency_param="currency" if value_param else "",
                reversible=False, executor=executor,
                executor_path=spec["ledger"] if executor == "server" else "",
            )
        role_grant(workflow=wf, user=owner, role=Role.OWNER, by=None)
        if slug in spec["policies"]:
            policy_set(workflow=wf, document=spec["policies"][slug], by=None, note="bench/soak.py")
        if wf.rung >= 4:
            latest = policy_latest(wf)
            certificate_issue(
                workflow=wf, rung=wf.rung, policy_version=latest.number if latest else None,
                evidence_hash=evidence_hash({"soak": slug}), approved_by=None,
                promotion_ref="bench/soak.py",
            )
        flows.append(wf)
    for i in range(spec["reviewers"]):
        password = secrets.token_urlsafe(18)
        user = User.objects.create_user(f"soak-reviewer-{i}", password=password)
        for wf in flows:
            role_grant(workflow=wf, user=user, role=Role.REVIEWER, by=owner)
        out["reviewers"].append([user.username, password])
for i in range(spec["tokens"]):
    _token, raw = token_create(name=f"bench/soak.py {i}", workflows=flows)
    out["tokens"].append(raw)
print("SEED=" + json.dumps(out))
"""


class SoakError(Exception):
    """A setup or server problem: reported plainly."""


def log(msg: str) -> None:
    print(f"[soak {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


# -- texts: every request its own people, numbers and ids --------------------------------

FIRST = [
    "Jane", "Omar", "Li", "Sofia", "Tom", "Inês", "Pieter", "Amara", "Luca", "Mia", "Mehmet",
    "Priya", "Olga", "Sven", "Aylin", "João", "Fatima", "Hiroshi", "Zofia", "Kwame", "Chloé",
    "Noah", "Emma", "Lars", "Ana", "Dmitri", "Grace", "Yusuf", "Elena", "Marek",
]  # fmt: skip
LAST = [
    "Silva", "Müller", "Yılmaz", "Sharma", "Johansson", "Ivanova", "Nowak", "García",  # noqa: RUF001
    "Okafor", "Rossi", "de Vries", "Dubois", "Tanaka", "O'Brien", "Hansen", "Kowalski",
    "Fischer", "Bakker", "Moreau", "Novak", "Larsen", "Costa", "Keller", "Jansen",
]  # fmt: skip
STREETS = [
    "Elm Street",
    "High Street",
    "Hauptstraße",
    "Kerkstraat",
    "Oak Avenue",
    "Rue Victor Hugo",
]
CITIES = ["Berlin", "Utrecht", "Lyon", "Leeds", "Graz", "Ghent", "Munich", "Rotterdam"]
ITEMS = ["mugs", "headphones", "a desk lamp", "running shoes", "a kettle", "two books", "a jacket"]
PROBLEMS = [
    "arrived broken", "never arrived", "was the wrong size", "stopped working after a week",
    "was charged twice", "arrived without the charger",
]  # fmt: skip
PHONES = [
    lambda r: f"+44 20 7946 {r.randrange(10_000):04d}",
    lambda r: f"+1 212-{r.randrange(200, 1000)}-{r.randrange(10_000):04d}",
    lambda r: f"+49 30 {r.randrange(1000, 10_000)} {r.randrange(10_000):04d}",
    lambda r: f"+31 20 {r.randrange(100, 1000)} {r.randrange(10_000):04d}",
]


def person(r: random.Random) -> dict:
    first, last = r.choice(FIRST), r.choice(LAST)
    user = f"{first}.{last}".lower().replace(" ", "").replace("'", "")
    return {
        "first": first,
        "full": f"{first} {last}",
        "email": f"{user}{r.randrange(1000)}@example.{r.choice(['com', 'de', 'nl', 'fr'])}",
        "phone": r.choice(PHONES)(r),
        "street": f"{r.randrange(1, 240)} {r.choice(STREETS)}",
        "city": r.choice(CITIES),
        "order": f"A-{r.randrange(10**7):07d}",
        "ticket": f"T{r.randrange(10**6):06d}",
        "item": r.choice(ITEMS),
        "problem": r.choice(PROBLEMS),
    }


def message(p: dict) -> str:
    return (
        f"Hello, this is {p['full']} (ticket {p['ticket']}). My order {p['order']} with "
        f"{p['item']} {p['problem']}. Please sort it out. You can reach me at {p['email']} "
        f"or {p['phone']}, or write to {p['street']}, {p['city']}. Thanks, {p['first']}"
    )


def lookup_call(p: dict, amount: float) -> list:
    return [
        {
            "name": "orders.lookup",
            "arguments": {"order_id": p["order"]},
            "result": {"status": "delivered", "total": round(amount * 1.5, 2), "currency": "EUR"},
        }
    ]


def make_body(rung: int, key: str, r: random.Random) -> tuple[dict, str, dict]:
    """A run for the rung's workflow: (body, what the driver expects, facts it keeps)."""
    p = person(r)
    slug = SLUG_BY_RUNG[rung]
    base = {
        "workflow": slug,
        "idempotency_key": key,
        "input": {"customer_name": p["full"], "customer_message": message(p), "channel": "email"},
    }
    if rung == 0:
        base["output"] = {
            "answer": f"Dear {p['first']}, order {p['order']} ships to {p['city']} within "
            f"{r.randrange(2, 9)} working days; we will write to {p['email']}."
        }
        return base, "recorded", {}
    if rung == 1:
        base["proposal"] = {
            "action": "reply.send",
            "params": {"to": p["email"], "subject": f"Your order {p['order']}"},
            "artifact": (
                f"Dear {p['first']},\n\nI am sorry your {p['item']} {p['problem']}. I have "
                f"opened case {p['ticket']} and we will send a replacement to {p['street']} "
                f"within {r.randrange(2, 6)} days.\n\nKind regards,\nSupport"
            ),
        }
        return base, "review", {}
    amount = round(r.uniform(5, 180), 2)
    if rung == 2:
        base["tool_calls"] = lookup_call(p, amount)
        base["proposal"] = {
            "action": "refund.issue",
            "params": {"order_id": p["order"], "amount": amount, "currency": "EUR",
                       "reason": p["problem"]},
            "alternatives": [
                {"action": "voucher.issue", "score": 0.35,
                 "params": {"order_id": p["order"], "amount": round(amount * 1.2, 2),
                            "currency": "EUR"}},
            ],
        }  # fmt: skip
        return base, "review", {}
    if rung == 3:
        base["tool_calls"] = lookup_call(p, amount)
        base["proposal"] = {
            "action": "refund.issue",
            "params": {"order_id": p["order"], "amount": amount, "currency": "EUR",
                       "reason": p["problem"]},
        }  # fmt: skip
        return base, "review", {}
    if rung == 4:
        x = r.random()
        if x < 0.10:
            country, expect = r.choice(["US", "CN", "BR"]), "deny"
        elif x < 0.30:
            country, expect = r.choice(L4_COUNTRIES_ALLOWED), "escalate"
            amount = round(r.uniform(200.01, 900), 2)
        else:
            country, expect = r.choice(L4_COUNTRIES_ALLOWED), "allow"
        base["tool_calls"] = lookup_call(p, amount)
        base["proposal"] = {
            "action": "refund.issue",
            "params": {"order_id": p["order"], "amount": amount, "currency": "EUR",
                       "reason": p["problem"], "country": country},
        }  # fmt: skip
        return base, expect, {}
    x = r.random()
    amount = round(r.uniform(2, 50), 2)
    if x < 0.10:
        channel, expect = "fax", "deny"
    elif x < 0.25:
        channel, expect = r.choice(L5_CHANNELS_ALLOWED), "escalate"
        amount = round(r.uniform(50.01, 150), 2)
    else:
        channel, expect = r.choice(L5_CHANNELS_ALLOWED), "allow"
    base["proposal"] = {
        "action": "credit.issue",
        "params": {"account_id": f"C{r.randrange(10**8):08d}", "amount": amount,
                   "currency": "EUR", "channel": channel},
    }  # fmt: skip
    return base, expect, {}


ROUTE_STATUS = {
    "recorded": "recorded",
    "review": "pending_review",
    "escalate": "pending_review",
    "allow": "approved",
    "deny": "denied",
}


# -- the load driver (a process of threads; stdlib only) ----------------------------------


class Conn:
    """A keep-alive connection; reopened before gunicorn's 5 s keep-alive would drop it."""

    IDLE = 4.0

    def __init__(self, port: int):
        self.port = port
        self.conn: http.client.HTTPConnection | None = None
        self.used = 0.0
        self.cookies: dict[str, str] = {}

    def request(self, method: str, path: str, body: bytes | None, headers: dict):
        now = time.monotonic()
        if self.conn is None or now - self.used > self.IDLE:
            if self.conn is not None:
                self.conn.close()
            self.conn = http.client.HTTPConnection(HOST, self.port, timeout=60)
        if self.cookies:
            headers = {**headers, "Cookie": "; ".join(f"{k}={v}" for k, v in self.cookies.items())}
        try:
            self.conn.request(method, path, body=body, headers=headers)
            resp = self.conn.getresponse()
            data = resp.read()
        except (OSError, http.client.HTTPException):
            self.conn.close()
            self.conn = None
            raise
        finally:
            self.used = time.monotonic()
        for value in resp.headers.get_all("Set-Cookie") or []:
            name, _, rest = value.partition("=")
            self.cookies[name.strip()] = rest.split(";", 1)[0]
        return resp.status, resp.headers, data


class Driver:
    def __init__(self, cfg: dict, index: int):
        self.cfg = cfg
        self.index = index
        self.port = cfg["port"]
        self.t0 = self.end = 0.0  # set by start(): when the parent says go
        self.stop = threading.Event()  # submissions and decisions stop
        self.halt = threading.Event()  # everything stops (drain over)
        self.decided_all = threading.Event()  # reviewers done: no more approvals to carry out
        self.lat: list[tuple] = []  # (kind, t_end_rel, ms, status)
        self.subs: list[tuple] = []  # (run id, rung, expect, key)
        self.route_mismatch: list[tuple] = []
        self.decisions: dict[str, str] = {}
        self.decide_failed: list[tuple] = []
        self.claims: set[str] = set()
        self.results: dict[str, str] = {}
        self.outcomes: dict[str, list[str]] = collections.defaultdict(list)
        self.review_pool: collections.deque = collections.deque()
        self.agent_pool: collections.deque = collections.deque()
        self.outcome_pool: list[str] = []
        self.lock = threading.Lock()
        self.budget = cfg["max_runs"]
        self.crashes: list[str] = []
        self.logins = 0

    # one request, timed and recorded
    def call(self, conn: Conn, kind: str, method: str, path: str, *, body=None, headers=None):
        started = time.monotonic()
        try:
            status, hdrs, data = conn.request(method, path, body, headers or {})
        except (OSError, http.client.HTTPException) as exc:
            done = time.monotonic()
            self.lat.append(
                (kind, done - self.t0, (done - started) * 1000, f"conn:{type(exc).__name__}")
            )
            return None, None, None
        done = time.monotonic()
        self.lat.append((kind, done - self.t0, (done - started) * 1000, status))
        return status, hdrs, data

    def api(self, conn: Conn, kind: str, method: str, path: str, token: str, payload=None):
        headers = {"Authorization": f"Bearer {token}"}
        body = None
        if payload is not None:
            body = json.dumps(payload).encode()
            headers["Content-Type"] = "application/json"
        status, _hdrs, data = self.call(conn, kind, method, path, body=body, headers=headers)
        parsed = None
        if data and status is not None and status < 500:
            try:
                parsed = json.loads(data)
            except ValueError:
                parsed = None
        return status, parsed

    def take_budget(self) -> bool:
        with self.lock:
            if self.budget <= 0:
                return False
            self.budget -= 1
            return True

    def guarded(self, fn, *args):
        try:
            fn(*args)
        except Exception:
            self.crashes.append(traceback.format_exc())
            self.stop.set()

    # -- submitters: closed loop ----------------------------------------------------
    def submitter(self, n: int, token: str) -> None:
        r = random.Random(f"{self.cfg['seed']}-{self.index}-{n}")
        conn = Conn(self.port)
        rungs, weights = zip(*self.cfg["weights"].items(), strict=True)
        rungs = [int(x) for x in rungs]
        seq = 0
        while not self.stop.is_set() and time.monotonic() < self.end and self.take_budget():
            seq += 1
            rung = r.choices(rungs, weights)[0]
            key = f"soak-{self.index}-{n}-{seq}-{r.randrange(16**6):06x}"
            body, expect, _facts = make_body(rung, key, r)
            status, data = self.api(conn, f"submit L{rung}", "POST", "/api/v1/runs", token, body)
            if status != 201 or not isinstance(data, dict):
                continue
            run_id = data["id"]
            self.subs.append((run_id, rung, expect, key))
            if data.get("status") != ROUTE_STATUS[expect]:
                self.route_mismatch.append((run_id, rung, expect, data.get("status")))
                continue
            if expect in ("review", "escalate"):
                self.review_pool.append((run_id, rung, data.get("queue")))
            if expect in ("recorded", "allow") and r.random() < 0.25:
                self.outcome_pool.append(run_id)

    # -- reviewers: the review pages, with CSRF -----------------------------------
    def login(self, conn: Conn, username: str, password: str) -> None:
        status, _h, data = self.call(conn, "login page", "GET", "/accounts/login/")
        token = _hidden(data or b"", "csrfmiddlewaretoken")
        if status != 200 or not token:
            raise SoakError(f"login page answered {status}")
        form = urlencode({"username": username, "password": password, "csrfmiddlewaretoken": token})
        status, _hdrs, _ = self.call(
            conn, "login", "POST", "/accounts/login/", body=form.encode(),
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )  # fmt: skip
        if status != 302 or "sessionid" not in conn.cookies:
            raise SoakError(f"login as {username} answered {status}")
        self.logins += 1

    def reviewer(self, n: int, conn: Conn) -> None:
        r = random.Random(f"{self.cfg['seed']}-review-{self.index}-{n}")
        interval = self.cfg["reviewer_interval"]
        next_at = time.monotonic() + r.uniform(0, interval)
        while not self.stop.is_set() and time.monotonic() < self.end:
            now = time.monotonic()
            if now < next_at:
                time.sleep(min(next_at - now, 0.2))
                continue
            next_at = max(next_at + interval, now - interval)
            try:
                run_id, rung, queue = self.review_pool.popleft()
            except IndexError:
                continue
            self.decide(conn, r, run_id, rung, queue)

    def decide(self, conn: Conn, r: random.Random, run_id: str, rung: int, queue: str) -> None:
        status, _h, page = self.call(conn, "review page", "GET", f"/runs/{run_id}/")
        if status != 200:
            return
        csrf = _hidden(page, "csrfmiddlewaretoken")
        seen_hash = _hidden(page, "seen_hash")
        seen_version = _hidden(page, "seen_version")
        if not (csrf and seen_hash and seen_version):
            self.decide_failed.append((run_id, "no decision form on the page"))
            return
        form = {"csrfmiddlewaretoken": csrf, "seen_hash": seen_hash, "seen_version": seen_version}
        x = r.random()
        if queue == "l1":
            if x < 0.85:
                artifact = _textarea(page, "artifact")
                form.update(
                    verdict="submit", artifact=artifact.replace("Kind regards", "Best wishes")
                )
                decided = "submit"
            else:
                form.update(verdict="discard", reason="customer already answered by phone")
                decided = "discard"
        elif queue == "l2":
            if x < 0.70:
                form.update(verdict="pick", option="0")
                decided = "pick0"
            elif x < 0.90:
                form.update(verdict="pick", option="1")
                decided = "pick1"
            else:
                form.update(verdict="reject", reason="the order is still in transit")
                decided = "reject"
        elif x < 0.85:
            form.update(verdict="approve")
            decided = "approve"
        else:
            form.update(verdict="reject", reason="not covered by the returns policy")
            decided = "reject"
        status, hdrs, _ = self.call(
            conn, "decide", "POST", f"/runs/{run_id}/decide", body=urlencode(form).encode(),
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )  # fmt: skip
        location = (hdrs.get("Location", "") if hdrs else "") or ""
        # Refused without htmx = a message and a redirect back to the same run.
        if status != 302 or f"/runs/{run_id}/" in location:
            self.decide_failed.append((run_id, f"{status} {location}"))
            return
        self.decisions[run_id] = decided
        if decided == "submit":  # reply.send: the agent sends it
            self.agent_pool.append(run_id)

    # -- the agent's side: approved agent actions, outcomes -------------------------
    def agent(self, n: int, token: str) -> None:
        r = random.Random(f"{self.cfg['seed']}-agent-{self.index}-{n}")
        conn = Conn(self.port)
        while not self.halt.is_set():
            try:
                run_id = self.agent_pool.popleft()
            except IndexError:
                if self.decided_all.is_set() and not self.agent_pool:
                    return
                time.sleep(0.05)
                continue
            status, data = self.api(conn, "run get", "GET", f"/api/v1/runs/{run_id}", token)
            if status != 200 or (data or {}).get("status") != "approved":
                continue
            status, _ = self.api(conn, "claim", "POST", f"/api/v1/runs/{run_id}/claim", token, {})
            if status != 200:
                continue
            self.claims.add(run_id)
            ok = r.random() >= 0.05
            payload = (
                {"status": "succeeded", "output": {"sent": True, "ref": f"M{r.randrange(10**9)}"}}
                if ok
                else {"status": "failed", "error": "the mail relay refused the message (550)"}
            )
            status, _ = self.api(
                conn, "result", "POST", f"/api/v1/runs/{run_id}/result", token, payload
            )
            if status == 200:
                self.results[run_id] = payload["status"]
                if r.random() < 0.3:
                    self.outcome_pool.append(run_id)

    def labeller(self, token: str) -> None:
        r = random.Random(f"{self.cfg['seed']}-label-{self.index}")
        conn = Conn(self.port)
        interval = self.cfg["outcome_interval"]
        rung_of: dict[str, int] = {}
        next_at = time.monotonic()
        while not self.stop.is_set() and time.monotonic() < self.end:
            now = time.monotonic()
            if now < next_at:
                time.sleep(min(next_at - now, 0.2))
                continue
            next_at = max(next_at + interval, now - interval)
            if not self.outcome_pool:
                continue
            i = r.randrange(len(self.outcome_pool))
            run_id = self.outcome_pool[i]
            self.outcome_pool[i] = self.outcome_pool[-1]
            self.outcome_pool.pop()
            if not rung_of or len(rung_of) < len(self.subs):
                rung_of.update((s[0], s[1]) for s in self.subs[len(rung_of) :])
            # "wrong" only below L4: at L4/L5 it would trip the breaker and demote the
            # workflow mid-soak (docs/breaker.md), which is another test.
            label = "wrong" if rung_of.get(run_id, 9) < 4 and r.random() < 0.05 else "correct"
            payload = {
                "label": label,
                "source": "crm-followup",
                "note": f"case {r.randrange(10**6)}",
            }
            status, _ = self.api(
                conn, "outcome", "POST", f"/api/v1/runs/{run_id}/outcome", token, payload
            )
            if status == 200:
                self.outcomes[run_id].append(label)

    def run(self, ready, start) -> dict:
        cfg = self.cfg
        tokens = cfg["tokens"]
        # Reviewers sign in before the clock starts (a sign-in hashes the password, ~0.3 s
        # of a core each): the soak measures people deciding, not the morning log-in.
        sessions = []
        for user, pw in cfg["reviewers"]:
            conn = Conn(self.port)
            self.login(conn, user, pw)
            sessions.append(conn)
        ready.put(("ready", self.index))
        while start.value == 0.0:
            time.sleep(0.01)
        self.t0 = start.value
        self.end = self.t0 + cfg["seconds"]
        self.lat = [(kind, t - self.t0, ms, st) for kind, t, ms, st in self.lat]
        threads = [
            threading.Thread(target=self.guarded, args=(self.submitter, n, tokens[n]))
            for n in range(cfg["clients"])
        ]
        k = cfg["clients"]
        for n, conn in enumerate(sessions):
            threads.append(threading.Thread(target=self.guarded, args=(self.reviewer, n, conn)))
        agents = [
            threading.Thread(target=self.guarded, args=(self.agent, n, tokens[k + n]))
            for n in range(cfg["agents"])
        ]
        threads += agents
        threads.append(threading.Thread(target=self.guarded, args=(self.labeller, tokens[-1])))
        while time.monotonic() < self.t0:
            time.sleep(0.01)
        for t in threads:
            t.start()
        while time.monotonic() < self.end and not self.stop.is_set():
            time.sleep(0.1)
        self.stop.set()
        drain_until = time.monotonic() + cfg["drain"]
        for t in threads:
            if t not in agents:
                t.join(timeout=max(0.1, drain_until - time.monotonic()))
        self.decided_all.set()
        for t in agents:
            t.join(timeout=max(0.1, drain_until - time.monotonic()))
        self.halt.set()
        for t in threads:
            t.join(timeout=10)
        return {
            "lat": self.lat,
            "subs": self.subs,
            "route_mismatch": self.route_mismatch,
            "decisions": self.decisions,
            "decide_failed": self.decide_failed,
            "claims": sorted(self.claims),
            "results": self.results,
            "outcomes": dict(self.outcomes),
            "undrained_agent": list(self.agent_pool),
            "crashes": self.crashes,
            "alive": [t.name for t in threads if t.is_alive()],
        }


_HIDDEN = {}


def _hidden(page: bytes, name: str) -> str:
    pattern = _HIDDEN.get(name) or _HIDDEN.setdefault(
        name, re.compile(rb'name="' + name.encode() + rb'" value="([^"]*)"')
    )
    m = pattern.search(page)
    return m.group(1).decode() if m else ""


def _textarea(page: bytes, name: str) -> str:
    import html

    m = re.search(
        rb'<textarea[^>]*name="' + name.encode() + rb'"[^>]*>(.*?)</textarea>', page, re.S
    )
    return html.unescape(m.group(1).decode()) if m else ""


def driver_process(cfg: dict, index: int, out, start) -> None:
    """Runs in a child process: signs its reviewers in, says ready, waits for `start` (a
    shared monotonic time), drives, then sends its records back through `out`."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops us through the deadline
    driver = Driver(cfg, index)
    try:
        out.put(driver.run(out, start))
    except BaseException:
        out.put({"crashes": [traceback.format_exc()]})


# -- the processes ------------------------------------------------------------------------


class Proc:
    """A child in its own session (stopped as a group), its output in a temporary file."""

    def __init__(self, argv: list[str], env: dict, name: str):
        self.name = name
        self.log = tempfile.NamedTemporaryFile(prefix=f"soak-{name}-", suffix=".log", delete=False)  # noqa: SIM115
        self.proc = subprocess.Popen(
            argv, cwd=REPO, env=env, stdout=self.log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip

    def output(self) -> str:
        return Path(self.log.name).read_text(errors="replace")

    def wait_for(self, text: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.output():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise SoakError(f"{self.name} did not start:\n{self.output()[-3000:]}")
            time.sleep(0.1)

    def stop(self, keep_log: bool = False) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
            except ProcessLookupError:
                pass
        self.log.close()
        if not keep_log:
            Path(self.log.name).unlink(missing_ok=True)


def cpu_ticks() -> dict:
    """Per-process CPU ticks (utime + stime) with process group and name, and the
    machine's busy ticks."""
    procs = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            raw = Path(f"/proc/{d}/stat").read_text()
        except OSError:
            continue
        name = raw[raw.index("(") + 1 : raw.rindex(")")]
        fields = raw[raw.rindex(")") + 2 :].split()
        if name == "postgres":  # a backend's title names its database
            try:
                title = Path(f"/proc/{d}/cmdline").read_bytes().decode(errors="replace")
            except OSError:
                title = ""
            name = "postgres (soak)" if f" {DATABASE_IN_USE[0]} " in title else "postgres"
        procs[int(d)] = (int(fields[2]), name, int(fields[11]) + int(fields[12]))
    cpu = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    values = [int(v) for v in cpu]
    busy = sum(values) - values[3] - values[4]  # all but idle and iowait
    return {"procs": procs, "busy": busy}


def cpu_split(before: dict, after: dict, groups: dict[str, set[int]], seconds: float) -> dict:
    hz = os.sysconf("SC_CLK_TCK")
    used = collections.Counter()
    for pid, (pgid, name, ticks) in after["procs"].items():
        prev = before["procs"].get(pid)
        delta = ticks - (prev[2] if prev and prev[1] == name else 0)
        group = next((g for g, pgids in groups.items() if pgid in pgids or pid in pgids), None)
        if group is None and name == "postgres (soak)":
            group = "postgres (soak's backends)"
        used[group or "other"] += delta
    total = after["busy"] - before["busy"]
    out = {g: round(t / hz / seconds, 2) for g, t in used.items() if g != "other"}
    out["other"] = round(
        max(0, total - sum(v for g, v in used.items() if g != "other")) / hz / seconds, 2
    )
    out["machine busy"] = round(total / hz / seconds, 2)
    return out


def psql(url: str, query: str, params=(), *, autocommit: bool = False):
    import psycopg

    with psycopg.connect(url, autocommit=autocommit) as c:
        cur = c.execute(query, params)
        return cur.fetchall() if cur.description else None


def fresh_database(name: str) -> None:
    import psycopg
    from psycopg import sql

    if "soak" not in name:
        raise SoakError(f"refusing to drop database {name!r}: its name lacks 'soak'")
    with psycopg.connect(ADMIN_URL, autocommit=True) as c:
        c.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        c.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


# -- the report ---------------------------------------------------------------------------


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def expected_final(expect: str, decided: str | None, result: str | None) -> str:
    """Where a run must end, from the driver's own record of what it and its reviewers did."""
    if expect == "recorded":
        return "recorded"
    if expect == "allow":
        return "executed"
    if expect == "deny":
        return "denied"
    if decided is None:
        return "pending_review"
    if decided in ("reject", "discard"):
        return "rejected"
    if decided == "submit":  # L1 reply.send, an agent executor: the driver claimed, reported
        return {"succeeded": "executed", "failed": "failed"}.get(result or "", "approved")
    return "executed"  # approve, pick0, pick1: server executors through the worker


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=300.0, help="how long the mix is driven")
    ap.add_argument("--warmup", type=float, default=5.0, help="first seconds left out of rates")
    ap.add_argument("--max-runs", type=int, default=200_000, help="submissions at most, all told")
    ap.add_argument("--clients", type=int, default=32, help="closed-loop submitters, all told")
    ap.add_argument("--driver-procs", type=int, default=2, help="load-driver processes")
    ap.add_argument("--reviewers", type=int, default=12, help="reviewer sessions, all told")
    ap.add_argument("--decide-rate", type=float, default=5.0, help="decisions a second, all told")
    ap.add_argument("--outcome-rate", type=float, default=10.0, help="outcome labels a second")
    ap.add_argument("--agents", type=int, default=2, help="agent threads per driver process")
    ap.add_argument(
        "--weights", default="0:30,1:15,2:10,3:25,4:12,5:8",
        help="submissions by rung, rung:weight,...",
    )  # fmt: skip
    ap.add_argument("--web-workers", type=int, default=2, help="gunicorn processes")
    ap.add_argument("--web-threads", type=int, default=8, help="threads per gunicorn process")
    ap.add_argument("--worker-concurrency", type=int, default=2, help="Celery prefork processes")
    ap.add_argument(
        "--rate-limit", type=int, default=None,
        help="LADDER_RATE_LIMIT_PER_SECOND for the server (default: the product's)",
    )  # fmt: skip
    ap.add_argument("--drain", type=float, default=600.0, help="seconds to wait for the worker")
    ap.add_argument("--database", default=DEFAULT_DATABASE)
    ap.add_argument("--seed", type=int, default=15)
    ap.add_argument("--json", action="store_true", help="print the figures as JSON")
    ap.add_argument("--strict", action="store_true", help="exit 1 when the target is missed too")
    args = ap.parse_args(argv)
    weights = {int(a): float(b) for a, b in (w.split(":") for w in args.weights.split(","))}
    if set(weights) - set(SLUG_BY_RUNG):
        ap.error("--weights: rungs are 0..5")

    db_url = f"postgres://postgres@127.0.0.1:5432/{args.database}"
    DATABASE_IN_USE[0] = args.database
    redis_bin = shutil.which("redis-server") or "/usr/bin/redis-server"
    redis_port = free_port()
    web_port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": db_url,
        "REDIS_URL": f"redis://{HOST}:{redis_port}/0",
        "CELERY_TASK_ALWAYS_EAGER": "0",
        "LADDER_DEV_MODE": "1",
        "DJANGO_SETTINGS_MODULE": "ladder.settings",
        "DEBUG": "0",
        "LOG_LEVEL": "WARNING",
        "DB_CONN_MAX_AGE": "3600",
    }
    if args.rate_limit is not None:
        env["LADDER_RATE_LIMIT_PER_SECOND"] = str(args.rate_limit)
    procs: list[Proc] = []
    drivers: list = []
    beat_dir = tempfile.mkdtemp(prefix="soak-beat-")
    failed = False
    load_before = loadavg()
    started_wall = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())

    def on_term(*_):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    try:
        log(f"load average before: {load_before}")
        redis = Proc([redis_bin, "--port", str(redis_port), "--bind", HOST, "--save", "",
                      "--appendonly", "no"], env, "redis")  # fmt: skip
        procs.append(redis)
        log(f"fresh database {args.database}, migrating")
        fresh_database(args.database)
        subprocess.run([PYTHON, "manage.py", "migrate", "--noinput"], cwd=REPO, env=env,
                       check=True, capture_output=True)  # fmt: skip
        redis.wait_for("Ready to accept connections", 10)
        n_tokens = args.clients + args.driver_procs * (args.agents + 1)
        spec = {
            "workflows": WORKFLOWS, "schemas": SCHEMAS, "policies": POLICIES,
            "ledger": LEDGER, "reviewers": args.reviewers, "tokens": n_tokens,
        }  # fmt: skip
        seeded = subprocess.run(
            [PYTHON, "-c", SEED_CODE], cwd=REPO, env=env, input=json.dumps(spec),
            capture_output=True, text=True,
        )  # fmt: skip
        if seeded.returncode != 0:
            raise SoakError(f"seeding failed:\n{seeded.stderr[-3000:]}")
        seed = json.loads(seeded.stdout.split("SEED=", 1)[1])
        log(f"seeded {len(WORKFLOWS)} workflows, {n_tokens} tokens, {args.reviewers} reviewers")
        worker = Proc(
            [PYTHON, "-m", "celery", "-A", "ladder", "worker", "-c", str(args.worker_concurrency),
             "-l", "info", "-n", "soak@%h", "--without-mingle", "--without-gossip", "-B",
             "-s", f"{beat_dir}/schedule"], env, "worker",
        )  # fmt: skip
        procs.append(worker)
        web = Proc(
            [PYTHON, "-m", "gunicorn", "-c", "gunicorn.conf.py"],
            {**env, "GUNICORN_BIND": f"{HOST}:{web_port}", "WEB_CONCURRENCY": str(args.web_workers),
             "GUNICORN_THREADS": str(args.web_threads)}, "gunicorn",
        )  # fmt: skip
        procs.append(web)
        worker.wait_for(" ready.", 60)
        _wait_http(web, web_port)
        rate_limit = int(
            subprocess.run(
                [PYTHON, "-c", "import django; django.setup(); from django.conf import settings; "
                 "print(settings.LADDER_RATE_LIMIT_PER_SECOND)"], cwd=REPO, env=env,
                capture_output=True, text=True, check=True,
            ).stdout.split()[-1]
        )  # fmt: skip

        # The drivers: spawned (no fork of this process's state), each its share.
        k = args.driver_procs
        ctx = multiprocessing.get_context("spawn")
        out = ctx.Queue()
        start = ctx.Value("d", 0.0)
        for i in range(k):
            clients = args.clients // k + (1 if i < args.clients % k else 0)
            first = sum(args.clients // k + (1 if j < args.clients % k else 0) for j in range(i))
            mine = seed["tokens"][first : first + clients]
            extra_at = args.clients + i * (args.agents + 1)
            mine += seed["tokens"][extra_at : extra_at + args.agents + 1]
            reviewers = seed["reviewers"][i::k]
            cfg = {
                "port": web_port, "seconds": args.seconds, "seed": args.seed,
                "max_runs": args.max_runs // k + (1 if i < args.max_runs % k else 0),
                "clients": clients, "tokens": mine, "agents": args.agents,
                "reviewers": reviewers, "weights": weights, "drain": 30.0,
                "reviewer_interval": len(seed["reviewers"]) / args.decide_rate
                if args.decide_rate > 0 else 1e9,
                "outcome_interval": k / args.outcome_rate if args.outcome_rate > 0 else 1e9,
            }  # fmt: skip
            p = ctx.Process(target=driver_process, args=(cfg, i, out, start), daemon=True)
            p.start()
            drivers.append(p)
        groups = {
            "gunicorn": {os.getpgid(web.proc.pid)},
            "celery worker": {os.getpgid(worker.proc.pid)},
            "redis": {redis.proc.pid},
            "driver": {p.pid for p in drivers},
        }
        for _ in drivers:  # every reviewer signed in
            msg = out.get(timeout=300)
            if not (isinstance(msg, tuple) and msg[0] == "ready"):
                raise SoakError(f"a driver failed before the start: {msg}")
        t0 = time.monotonic() + 0.5
        start.value = t0  # every driver starts at once
        while time.monotonic() < t0 + args.warmup:
            time.sleep(0.05)
        cpu_before = cpu_ticks()
        cpu_t = time.monotonic()
        log(f"driving for {args.seconds:g} s ({k} driver processes, {args.clients} submitters)")
        while time.monotonic() < t0 + args.seconds:
            time.sleep(0.2)
        cpu_after = cpu_ticks()
        cpu = cpu_split(cpu_before, cpu_after, groups, time.monotonic() - cpu_t)
        load_during = loadavg()
        backlog = dict(
            psql(
                db_url,
                "SELECT status, count(*) FROM traces_run "
                "WHERE status IN ('approved', 'executing') GROUP BY status",
            )
        )
        window_wall = (time.time() - (time.monotonic() - (t0 + args.warmup)), time.time())
        results = []
        for _ in drivers:
            results.append(out.get(timeout=120))
        for p in drivers:
            p.join(timeout=30)
        log("driving over; waiting for the worker to drain")
        drained_s, leftover = _drain(db_url, args.drain)
        log(f"drained in {drained_s:.1f} s" if not leftover else f"NOT drained: {leftover}")
        verify_started = time.monotonic()
        verify = subprocess.run([PYTHON, "manage.py", "verify_traces"], cwd=REPO, env=env,
                                capture_output=True, text=True)  # fmt: skip
        verify_s = time.monotonic() - verify_started
        report = build_report(
            args, results, db_url, cpu, verify, verify_s, drained_s, leftover, rate_limit
        )
        executed_in_window = psql(
            db_url,
            "SELECT count(*) FROM traces_run WHERE result->>'executor' = 'server' "
            "AND executed_at >= to_timestamp(%s) AND executed_at < to_timestamp(%s)",
            window_wall,
        )[0][0]
        received = len(
            re.findall(r"Task traces\.tasks\.execute_run\[[^]]*\] received", worker.output())
        )
        report["executions"] = {
            # Received, as the worker logs them: more than the executions when the sweep
            # (beat, every LADDER_EXECUTION_SWEEP_SECONDS) sent queued runs again.
            "execute_run_tasks_received": received,
            "server_per_s_while_driving": round(
                executed_in_window / (window_wall[1] - window_wall[0]), 1
            ),
            "backlog_at_end_of_driving": backlog,
        }
        report["when"] = started_wall
        report["load average"] = {"before": load_before, "end of driving": load_during,
                                  "after": loadavg()}  # fmt: skip
        failed = not report["passed"]
        print_report(report, json_out=args.json)
        missed = report["submissions"]["per_s_sustained"] < TARGET_SUBMISSIONS_PER_S
        return 1 if failed or (args.strict and missed) else 0
    except SoakError as exc:
        failed = True
        log(f"error: {exc}")
        return 2
    except KeyboardInterrupt:
        failed = True
        log("interrupted")
        return 130
    finally:
        for p in drivers:
            if p.is_alive():
                p.terminate()
                p.join(timeout=5)
        for proc in reversed(procs):
            proc.stop(keep_log=failed)
            if failed:
                log(f"{proc.name} log kept: {proc.log.name}")
        shutil.rmtree(beat_dir, ignore_errors=True)


def _wait_http(web: Proc, port: int) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if web.proc.poll() is not None:
            raise SoakError(f"gunicorn exited:\n{web.output()[-3000:]}")
        try:
            conn = http.client.HTTPConnection(HOST, port, timeout=5)
            conn.request("GET", "/accounts/login/")
            if conn.getresponse().status == 200:
                conn.close()
                time.sleep(1.0)  # the other process importing the app
                return
        except OSError:
            time.sleep(0.2)
    raise SoakError("gunicorn did not answer within 60 s")


def _drain(db_url: str, timeout: float) -> tuple[float, dict]:
    """Wait until nothing is received, approved or executing (the worker drained)."""
    started = time.monotonic()
    while True:
        rows = psql(
            db_url,
            "SELECT status, count(*) FROM traces_run "
            "WHERE status IN ('received', 'approved', 'executing') GROUP BY status",
        )
        left = dict(rows)
        if not left or time.monotonic() - started > timeout:
            return time.monotonic() - started, left
        time.sleep(0.5)


def build_report(args, results, db_url, cpu, verify, verify_s, drained_s, leftover, rate_limit):
    lat = [x for r in results for x in r.get("lat", [])]
    subs = [x for r in results for x in r.get("subs", [])]
    decisions = {k: v for r in results for k, v in r.get("decisions", {}).items()}
    results_by_run = {k: v for r in results for k, v in r.get("results", {}).items()}
    claims = {x for r in results for x in r.get("claims", [])}
    outcomes = {k: v for r in results for k, v in r.get("outcomes", {}).items()}
    crashes = [x for r in results for x in r.get("crashes", [])]
    route_mismatch = [x for r in results for x in r.get("route_mismatch", [])]
    decide_failed = [x for r in results for x in r.get("decide_failed", [])]
    undrained_agent = [x for r in results for x in r.get("undrained_agent", [])]
    alive = [x for r in results for x in r.get("alive", [])]

    # Throughput: 201s completed inside [warmup, seconds), in 30 s windows.
    lo, hi = args.warmup, args.seconds
    done = sorted(t for kind, t, _ms, st in lat if kind.startswith("submit") and st == 201)
    inside = [t for t in done if lo <= t < hi]
    windows = []
    w = lo
    while w < hi - 1e-9:
        end = min(w + WINDOW_S, hi)
        n = sum(1 for t in inside if w <= t < end)
        windows.append(round(n / (end - w), 1))
        w = end
    # The min window is over windows of at least 10 s (a short tail says little).
    last = (hi - lo) - WINDOW_S * (len(windows) - 1)
    full = windows if last >= 10 or len(windows) == 1 else windows[:-1]
    per_s = len(inside) / (hi - lo)

    by_kind: dict[str, list] = collections.defaultdict(list)
    statuses: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for kind, t, ms, st in lat:
        group = "submit" if kind.startswith("submit") else kind
        statuses[group][str(st)] += 1
        if lo <= t < hi:
            by_kind[group].append(ms)
            if group == "submit":
                by_kind[kind].append(ms)
    kinds = {}
    for kind in sorted(by_kind, key=lambda k: (not k.startswith("submit"), k)):
        values = by_kind[kind]
        kinds[kind] = {
            "n": len(values), "per_s": round(len(values) / (hi - lo), 1),
            "p50_ms": round(pct(values, 50), 1), "p99_ms": round(pct(values, 99), 1),
        }  # fmt: skip
    errors_5xx = {k: {s: n for s, n in c.items() if not s.startswith(("2", "3", "4"))}
                  for k, c in statuses.items()}  # fmt: skip
    errors_5xx = {k: v for k, v in errors_5xx.items() if v}
    errors_4xx = {k: {s: n for s, n in c.items() if s.startswith("4")} for k, c in statuses.items()}
    errors_4xx = {k: v for k, v in errors_4xx.items() if v}

    # The accounting, against the database.
    rows = psql(
        db_url,
        """
        SELECT r.id::text, r.idempotency_key, r.status, r.execution_attempts, w.slug,
               r.rung, at.executor,
               (SELECT count(*) FROM traces_demoledgerentry l
                 WHERE l.idempotency_key = coalesce(r.decision->>'action', at.name)
                       || ':' || r.id::text),
               r.outcome
        FROM traces_run r JOIN ladder_workflow w ON w.id = r.workflow_id
        LEFT JOIN ladder_actiontype at ON at.id = r.action_type_id
        """,
    )
    started = dict(
        psql(
            db_url,
            "SELECT run_id::text, count(*) FROM traces_traceevent WHERE type = 'execution' "
            "AND document::jsonb #>> '{payload,phase}' = 'started' GROUP BY run_id",
        )
        or []
    )
    ledger_total = psql(db_url, "SELECT count(*) FROM traces_demoledgerentry")[0][0]
    db_runs = {row[0]: row for row in rows}
    submitted_ids = [s[0] for s in subs]
    problems: list[str] = []
    dupes = len(submitted_ids) - len(set(submitted_ids))
    if dupes:
        problems.append(f"{dupes} run ids answered 201 twice")
    missing = [i for i in submitted_ids if i not in db_runs]
    if missing:
        problems.append(f"{len(missing)} runs answered 201 are not in the database")
    extra = set(db_runs) - set(submitted_ids)
    if extra:
        problems.append(f"{len(extra)} runs in the database the driver never got a 201 for")
    keys = collections.Counter(row[1] for row in rows)
    if any(n > 1 for n in keys.values()):
        problems.append("an idempotency key stored twice")
    final = collections.Counter()
    mismatch = collections.Counter()
    server_executed = 0
    once_problems = collections.Counter()
    for run_id, rung, expect, _key in subs:
        row = db_runs.get(run_id)
        if row is None:
            continue
        status, attempts, ledger = row[2], row[3], row[7]
        decided = decisions.get(run_id)
        want = expected_final(expect, decided, results_by_run.get(run_id))
        final[(f"L{rung}", status)] += 1
        if status != want:
            mismatch[(f"L{rung}", expect, decided or "-", want, status)] += 1
        # Server executors: the policy's allows, L3/escalated approvals, L2's first option
        # and picks (refund.issue, voucher.issue); the agent executor: L1's reply.send.
        server = expect == "allow" or decided in ("approve", "pick0", "pick1")
        if status == "executed" and server:
            server_executed += 1
            if ledger != 1:
                once_problems["ledger rows != 1"] += 1
            if attempts != 1:
                once_problems["execution_attempts != 1"] += 1
            if started.get(run_id, 0) != 1:
                once_problems["'started' execution events != 1"] += 1
        elif ledger:
            once_problems["ledger row for a run not executed by the server"] += 1
    if mismatch:
        problems.append(f"{sum(mismatch.values())} runs not in the state the driver expects")
    if once_problems:
        problems.append(f"execution at most once: {dict(once_problems)}")
    if ledger_total != server_executed:
        problems.append(f"{ledger_total} ledger rows for {server_executed} server executions")
    stuck = collections.Counter(r[2] for r in rows if r[2] in ("received", "approved", "executing"))
    if stuck:
        problems.append(f"left after the drain: {dict(stuck)}")
    if route_mismatch:
        problems.append(f"{len(route_mismatch)} submissions routed otherwise than expected")
    if decide_failed:
        problems.append(f"{len(decide_failed)} decisions refused")
    if undrained_agent:
        problems.append(f"{len(undrained_agent)} approved agent actions not carried out")
    if crashes:
        problems.append(f"{len(crashes)} driver threads crashed")
    if alive:
        problems.append(f"{len(alive)} driver threads did not stop")
    if errors_5xx:
        problems.append(f"non-4xx errors: {errors_5xx}")
    if verify.returncode != 0:
        problems.append("verify_traces: " + (verify.stdout + verify.stderr).strip()[-500:])
    labelled = sum(len(v) for v in outcomes.values())
    return {
        "passed": not problems,
        "problems": problems,
        "crashes": crashes[:3],
        "config": {
            "seconds": args.seconds,
            "warmup": args.warmup,
            "clients": args.clients,
            "driver_procs": args.driver_procs,
            "reviewers": args.reviewers,
            "decide_rate": args.decide_rate,
            "outcome_rate": args.outcome_rate,
            "weights": args.weights,
            "gunicorn": f"{args.web_workers}x{args.web_threads}",
            "celery": f"prefork -c {args.worker_concurrency} -B",
            "rate_limit_per_token_per_s": rate_limit,
            "tokens": f"{args.clients} submitter tokens (one each), "
            f"{args.driver_procs * (args.agents + 1)} agent/labeller tokens",
        },
        "submissions": {
            "total_201": len(subs),
            "in_window": len(inside),
            "per_s_sustained": round(per_s, 1),
            "windows_per_s": windows,
            "min_window_per_s": min(full) if full else 0.0,
            "target_per_s": TARGET_SUBMISSIONS_PER_S,
        },
        "requests": kinds,
        "status_counts": {k: dict(c) for k, c in statuses.items()},
        "errors_non_4xx": errors_5xx,
        "errors_4xx": errors_4xx,
        "mix": {
            "decisions": dict(collections.Counter(decisions.values())),
            "claims": len(claims),
            "results": dict(collections.Counter(results_by_run.values())),
            "outcome_labels": labelled,
            "server_executions": server_executed,
            "ledger_rows": ledger_total,
        },
        "final_states": {f"{k[0]} {k[1]}": n for k, n in sorted(final.items())},
        "state_mismatches": {" / ".join(k): n for k, n in mismatch.items()},
        "drain": {"seconds": round(drained_s, 1), "left": leftover},
        "verify_traces": {
            "ok": verify.returncode == 0,
            "seconds": round(verify_s, 1),
            "output": (verify.stdout + verify.stderr).strip().splitlines()[-1:],
        },
        "cpu_cores": cpu,
    }


def print_report(rep: dict, *, json_out: bool) -> None:
    if json_out:
        print(json.dumps(rep, indent=2, default=str))
        return
    c, s = rep["config"], rep["submissions"]
    met = min(s["per_s_sustained"], s["min_window_per_s"]) >= s["target_per_s"]
    print(f"# Soak, {rep['when']}: {c['seconds']:g} s ({c['warmup']:g} s warm-up left out of "
          f"the rates)")  # fmt: skip
    print(f"load average (1/5/15 min): before {rep['load average']['before']}, "
          f"end of driving {rep['load average']['end of driving']}, "
          f"after {rep['load average']['after']}")  # fmt: skip
    print(f"server: gunicorn {c['gunicorn']}, Celery {c['celery']}; driver: "
          f"{c['driver_procs']} processes, {c['clients']} closed-loop submitters, "
          f"{c['reviewers']} reviewer sessions at {c['decide_rate']:g} decisions/s, "
          f"{c['outcome_rate']:g} outcomes/s; rung weights {c['weights']}")  # fmt: skip
    print(f"rate limit: the product's LADDER_RATE_LIMIT_PER_SECOND = "
          f"{c['rate_limit_per_token_per_s']} per token per server process, in force; "
          f"{c['tokens']}")  # fmt: skip
    print()
    print(f"**submissions: {s['per_s_sustained']} /s sustained** ({s['in_window']} in the "
          f"window, {s['total_201']} in all); per 30 s window: {s['windows_per_s']}; "
          f"min window {s['min_window_per_s']} /s; target >= {s['target_per_s']:g} /s: "
          f"{'met' if met else 'NOT met'}")  # fmt: skip
    print()
    print("| request | n | /s | p50 ms | p99 ms |")
    print("|---|--:|--:|--:|--:|")
    for kind, k in rep["requests"].items():
        print(f"| {kind} | {k['n']} | {k['per_s']} | {k['p50_ms']} | {k['p99_ms']} |")
    print()
    print(f"errors, non-4xx: {rep['errors_non_4xx'] or 0}; 4xx: {rep['errors_4xx'] or 'none'}")
    print(f"mix: {rep['mix']}")
    print(f"final states: {rep['final_states']}")
    if rep["state_mismatches"]:
        print(f"state mismatches (rung / expect / decided / want / got): {rep['state_mismatches']}")
    e = rep["executions"]
    print(
        f"server executions by the worker: {e['server_per_s_while_driving']} /s while driving; "
        f"waiting when driving stopped: {e['backlog_at_end_of_driving'] or 'none'}; "
        f"execute_run tasks the worker received: {e['execute_run_tasks_received']} for "
        f"{rep['mix']['server_executions']} executions"
    )
    print(f"drain: {rep['drain']['seconds']} s, left {rep['drain']['left'] or 'nothing'}")
    v = rep["verify_traces"]
    print(f"verify_traces: {'clean' if v['ok'] else 'FAILED'} in {v['seconds']} s {v['output']}")
    cores = rep["cpu_cores"]
    per = s["per_s_sustained"] or 1
    print(
        f"CPU (cores, while driving): {cores}; per submission (all the mix's work included): "
        f"gunicorn {cores.get('gunicorn', 0) * 1000 / per:.2f} ms, worker "
        f"{cores.get('celery worker', 0) * 1000 / per:.2f} ms, driver "
        f"{cores.get('driver', 0) * 1000 / per:.2f} ms"
    )
    print()
    if rep["passed"]:
        print("accounting: every run accounted for; all checks passed")
    else:
        print("CHECKS FAILED:")
        for p in rep["problems"]:
            print(f"- {p}")
        for crash in rep["crashes"]:
            print(crash)


if __name__ == "__main__":
    sys.exit(main())
