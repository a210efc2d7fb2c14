"""A small refund agent on the Autonomy Ladder SDK.

It handles one support ticket the way a real agent would: looks the order up (a tool
call, recorded in the run's trace), writes its reply, and proposes `refund.issue` on the
`support-refund` workflow, all in one run. At L3 a reviewer approves each refund (and may
edit its amount); the server then executes it (against the shop's ledger, examples/refunds) and
the agent prints the outcome. With an agent-executed action the agent would carry it out
with the reviewer's final params and report the result. Its code would not change if the
workflow moved to another rung. (`@client.gated(...)` wraps the same steps around one
function; see ladder_client/README.md.)

Run it against `make run`'s server:

    make run                                    # terminal 1: http://127.0.0.1:8000
    export LADDER_TOKEN=$(.venv/bin/python manage.py create_agent_token support-refund)
    PYTHONPATH=. .venv/bin/python examples/refund_agent.py   # terminal 2: waits

then log in at http://127.0.0.1:8000/ as `reviewer` (password `reviewer-ladder-demo`),
open the waiting run (the agent prints its address), edit the amount if you like, and
approve or reject it. The agent prints the decision and the server's execution result.

Environment: LADDER_URL (default http://127.0.0.1:8000), LADDER_TOKEN (required),
LADDER_WORKFLOW (default support-refund), LADDER_WAIT (seconds to wait, default 600).
"""

import os
import sys
import uuid

from ladder_client import DecisionTimeout, LadderClient

ORDERS = {"A-1042": {"order_id": "A-1042", "total": 49.90, "currency": "EUR"}}


def lookup_order(order_id: str) -> dict:
    """Stands in for the shop's order API."""
    return ORDERS[order_id]


def send_refund(order_id: str, amount: float, currency: str, **_: object) -> dict:
    """Stands in for the payment provider (used when the agent executes the action)."""
    return {"refund_id": f"R-{order_id}", "amount": amount, "currency": currency}


def main() -> int:
    url = os.environ.get("LADDER_URL", "http://127.0.0.1:8000").rstrip("/")
    token = os.environ.get("LADDER_TOKEN")
    if not token:
        print("set LADDER_TOKEN (manage.py create_agent_token support-refund)", file=sys.stderr)
        return 2
    workflow = os.environ.get("LADDER_WORKFLOW", "support-refund")
    wait = float(os.environ.get("LADDER_WAIT", "600"))
    ticket_id = f"T-{uuid.uuid4().hex[:6]}"
    ticket = {"ticket": ticket_id, "message": "Charged twice for A-1042. ana@example.com"}

    with (
        LadderClient(url, token) as client,
        client.run(workflow, input=ticket, idempotency_key=ticket_id) as run,
    ):
        order = run.record_tool(lookup_order, name="orders.lookup")("A-1042")
        run.output({"reply": "Sorry about the double charge: a refund is on its way."})
        pending = run.propose(
            "refund.issue",
            {"order_id": order["order_id"], "amount": order["total"], "currency": "EUR"},
            summary=f"Refund {order['total']} EUR on order {order['order_id']} (charged twice)",
        )
        print(f"run {pending.id} is {pending.status}; decide it at {url}/runs/{pending.id}/")
        try:
            decision = pending.wait(timeout=wait)
        except DecisionTimeout:
            print("no decision yet; the run keeps waiting (run me again later)")
            return 3
        if not decision.approved:
            print(f"{decision.status}: {decision.reason or 'no reason given'}")
            return 1
        print(f"approved with params {decision.params}")
        if client.action_executor(workflow, "refund.issue") == "server":
            # The gateway executes it (support-refund does): wait for its result.
            final = pending.wait_result(timeout=60)
            print(f"server execution: {final.status} {final.result}")
            return 0 if final.status == "executed" else 1
        # The agent executes it, with the reviewer's final params, and reports back.
        result = send_refund(**decision.params)
        run.report(result)
        print(f"refund done: {result}")
        return 0


if __name__ == "__main__":
    sys.exit(main())
