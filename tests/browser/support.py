"""Helpers for the browser tests: the chromium to drive, signing in, screenshots, and runs
submitted through the real gateway over HTTP."""

import os
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from django.conf import settings as django_settings
from django.contrib.auth.models import User
from django.test import Client

from approvals.roles import role_grant
from ladder.models import Workflow

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-background-networking",
    "--disable-gpu",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
# Test runs write their screenshots to an ignored folder, so `make test` leaves the tree
# clean; `make screenshots` runs the browser tests with LADDER_SCREENSHOTS=docs/screenshots
# to refresh the ones the README shows.
_ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = _ROOT / os.environ.get("LADDER_SCREENSHOTS", "test-results/screenshots")
VIEWPORT = {"width": 1280, "height": 900}
PASSWORD = "browser-test-pw"


def sign_in(context, user, live_server) -> None:
    """Put a signed-in session cookie into a browser context (no login form round trip)."""
    client = Client()
    client.force_login(user)
    cookie = client.cookies[django_settings.SESSION_COOKIE_NAME]
    context.add_cookies(
        [{"name": cookie.key, "value": cookie.value, "url": live_server.url, "httpOnly": True}]
    )


def screenshot(page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / name), full_page=True)


# -- workflows and runs through the gateway -------------------------------------------------


@dataclass
class Ladder:
    """Three workflows (L1, L2, L3), a reviewer of all three, and an agent token."""

    live_server_url: str
    reviewer: User
    l1: Workflow
    l2: Workflow
    l3: Workflow
    token: str
    counter: list = field(default_factory=lambda: [0])

    def grant(self, user: User) -> None:
        for wf in (self.l1, self.l2, self.l3):
            role_grant(workflow=wf, user=user, role="reviewer", by=None)

    def submit(self, rung: int, *, key: str | None = None, **overrides) -> dict:
        """POST one run through the gateway; returns the gateway's JSON (201)."""
        self.counter[0] += 1
        n = self.counter[0]
        body = {
            1: l1_body,
            2: l2_body,
            3: l3_body,
        }[rung](n)
        body["idempotency_key"] = key or f"browser-{rung}-{n}"
        proposal_overrides = overrides.pop("proposal", None)
        body.update(overrides)
        if proposal_overrides:
            body["proposal"].update(proposal_overrides)
        resp = httpx.post(
            f"{self.live_server_url}/api/v1/runs",
            json=body,
            headers={"Authorization": f"Bearer {self.token}"},
            timeout=10,
        )
        assert resp.status_code == 201, resp.text
        return resp.json()


def l1_body(n: int) -> dict:
    return {
        "workflow": "support-reply",
        "input": {"ticket": f"T-{880 + n}", "message": f"Where is my order A-{1040 + n}?"},
        "tool_calls": [
            {
                "name": "orders.lookup",
                "arguments": {"order_id": f"A-{1040 + n}"},
                "result": {"status": "in transit", "carrier": "DHL"},
            }
        ],
        "output": {"text": "drafted a reply"},
        "proposal": {
            "action": "reply.send",
            "summary": f"Tell the customer A-{1040 + n} is in transit",
            "params": {
                "to": "customer-ticket-reply",
                "subject": f"Your order A-{1040 + n}",
                "body": f"Hello,\n\nyour order A-{1040 + n} is on its way with DHL and "
                "should arrive within two days.\n\nBest regards",
            },
        },
    }


def l2_body(n: int) -> dict:
    order = f"A-{2040 + n}"
    return {
        "workflow": "refund-recommend",
        "input": {"ticket": f"T-{900 + n}", "message": f"My parcel {order} arrived damaged."},
        "tool_calls": [
            {
                "name": "orders.lookup",
                "arguments": {"order_id": order},
                "result": {"total": 42.0, "currency": "EUR", "delivered": True},
            }
        ],
        "proposal": {
            "action": "refund.issue",
            "summary": f"Refund {order} in full",
            "params": {"order_id": order, "amount": 42.0, "currency": "EUR", "reason": "damaged"},
            "alternatives": [
                {
                    "action": "refund.issue",
                    "score": 0.61,
                    "params": {
                        "order_id": order,
                        "amount": 21.0,
                        "currency": "EUR",
                        "reason": "partial: damaged",
                    },
                },
                {
                    "action": "voucher.issue",
                    "score": 0.34,
                    "params": {
                        "order_id": order,
                        "amount": 10.0,
                        "currency": "EUR",
                        "reason": "goodwill",
                    },
                },
            ],
            "flags": ["fraud_adjacent"],
        },
    }


def l3_body(n: int) -> dict:
    order = f"A-{3040 + n}"
    return {
        "workflow": "support-refund",
        "input": {"ticket": f"T-{920 + n}", "message": f"I was charged twice for {order}."},
        "tool_calls": [
            {
                "name": "payments.search",
                "arguments": {"order_id": order},
                "result": {"charges": [64.25, 64.25], "currency": "EUR"},
            }
        ],
        "proposal": {
            "action": "refund.issue",
            "summary": f"Refund duplicate charge on {order}",
            "params": {
                "order_id": order,
                "amount": 64.25,
                "currency": "EUR",
                "reason": "duplicate charge",
            },
        },
    }
