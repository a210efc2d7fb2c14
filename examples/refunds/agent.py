"""The simulated support agent. It talks to the control plane only through the SDK
(`ladder_client`), exactly as a real agent would: one run per ticket, its tool calls, its
proposal with alternatives, flags and the reply it drafted; it carries out the replies it
is approved to send, reports them, posts the shop's business metric and, when the shop
learns that a refund was wrong, labels the run.

Its mistakes come from an `ErrorProfile` and its own `random.Random`, so a seed replays
the same agent.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from decimal import Decimal

from examples.refunds.business import Ticket
from ladder_client import LadderClient, PendingDecision


@dataclass(frozen=True)
class ErrorProfile:
    """How often the agent gets a ticket wrong, as shares of the tickets where the
    mistake is possible."""

    wrong_refund: float = 0.015  # refunds a ticket that needed only a reply
    over_large: float = 0.010  # refunds the whole order (or more) where less was due
    heavy_edit: float = 0.08  # a reply draft a person has to rewrite

    def scaled(self, factor: float) -> ErrorProfile:
        """The same agent on a bad day (a model update gone wrong)."""
        return ErrorProfile(
            wrong_refund=min(1.0, self.wrong_refund * factor),
            over_large=min(1.0, self.over_large * factor),
            heavy_edit=self.heavy_edit,
        )


@dataclass
class Proposed:
    """What the agent proposed for a ticket, and whether it was right."""

    ticket: Ticket
    pending: PendingDecision
    correct: bool
    heavy: bool
    mistake: str = ""


def fraud_score(ticket: Ticket) -> float:
    """The shop's fraud service (stands in for a model over the customer's history)."""
    return 0.86 if ticket.fraud_adjacent else round(0.05 + (ticket.number * 37 % 100) / 400, 2)


class SupportAgent:
    def __init__(self, client: LadderClient, workflow: str, *, seed: int, errors: ErrorProfile):
        self.client = client
        self.workflow = workflow
        self.rng = random.Random(seed * 7919 + 1)
        self.errors = errors

    # -- one ticket: one run ----------------------------------------------------------

    def answer(self, ticket: Ticket, *, drafting: bool = True) -> tuple[str, dict, str, bool]:
        """The agent's model: (action, params, mistake or "", reply needs a rewrite). An
        eval answer (`drafting` False) makes the same mistakes but writes no draft: an
        eval case scores the action and its params, not prose."""
        rng, errors = self.rng, self.errors
        action, amount, mistake = ticket.action, ticket.amount, ""
        if ticket.kind == "refunded_twice":
            pass  # only in the eval set: take one refund back
        elif not ticket.wants_refund and rng.random() < errors.wrong_refund:
            action, amount, mistake = "refund.issue", ticket.item_price, "refund not due"
        elif ticket.wants_refund and rng.random() < errors.over_large:
            amount = (ticket.order_total * Decimal("1.2")).quantize(Decimal("0.01"))
            if rng.random() < 0.5 and ticket.order_total != ticket.amount:
                amount = ticket.order_total
            mistake = "amount too large"
        heavy = drafting and rng.random() < errors.heavy_edit
        return action, params_for(ticket, action, amount, heavy=heavy), mistake, heavy

    def handle(self, ticket: Ticket) -> Proposed:
        action, params, mistake, heavy = self.answer(ticket)
        amount = Decimal(str(params["amount"])) if "amount" in params else None
        score = fraud_score(ticket)
        flags = ["fraud_adjacent"] if score >= 0.7 and action == "refund.issue" else []
        reply = _reply(ticket, action, amount, heavy)
        with self.client.run(
            self.workflow,
            input={"ticket": ticket.text, "channel": "email"},
            idempotency_key=f"ticket-{ticket.order_id}",
        ) as run:
            run.tool_call(
                "orders.lookup",
                {"order_id": ticket.order_id},
                {"order_id": ticket.order_id, "total": str(ticket.order_total), "currency": "EUR"},
            )
            run.tool_call("fraud.score", {"order_id": ticket.order_id}, {"score": score})
            run.output(reply)
            if action == "refund.issue":
                pending = run.propose(
                    "refund.issue",
                    params,
                    alternatives=[("reply.send", params_for(ticket, "reply.send", None), 0.2)],
                    artifact={"reply": reply},
                    flags=flags,
                    summary=f"Refund {amount} EUR on {ticket.order_id} ({ticket.kind})",
                )
            else:
                refund = params_for(ticket, "refund.issue", ticket.item_price)
                pending = run.propose(
                    "reply.send",
                    params,
                    alternatives=[("refund.issue", refund, 0.1)],
                    artifact={"reply": reply},
                    summary=f"Reply about {ticket.order_id} ({ticket.kind})",
                )
        return Proposed(
            ticket=ticket,
            pending=pending,
            correct=not mistake,
            heavy=heavy,
            mistake=mistake,
        )

    # -- after the decision -----------------------------------------------------------

    def carry_out(self, proposed: Proposed) -> str:
        """Look at the run once: send an approved reply (the agent's own action), and
        return the run's status as the gateway tells it."""
        info = self.client.get_run(proposed.pending.id)
        if info.status == "approved" and info.decision and info.decision.action == "reply.send":
            self.client.claim(info.id)
            info = self.client.report_result(
                info.id,
                succeeded=True,
                output={"sent_to": "customer", "chars": len(info.decision.params.get("body", ""))},
            )
        return info.status

    def label_wrong(self, run_id: str, note: str) -> None:
        self.client.record_outcome(run_id, label="wrong", source="audit", note=note)

    def post_metric(self, name: str, value: float, at) -> None:
        self.client.post_metrics(self.workflow, [(name, value, at)])

    # -- eval passes ------------------------------------------------------------------

    def eval_pass(self, label: str, tickets: dict[str, Ticket]) -> tuple[int, int]:
        """Answer every active eval case once, as the agent would answer the ticket in
        its input (`tickets`: the simulation's tickets by eval key); (matched, total)."""
        matched = total = 0
        for case in self.client.eval_cases(self.workflow):
            ticket = tickets[case.input["case"]]
            action, params, _, _ = self.answer(ticket, drafting=False)
            score = self.client.submit_eval(
                self.workflow, case, action=action, params=params, eval_pass=label
            )
            total += 1
            matched += bool(score.matched)
        return matched, total


def params_for(ticket: Ticket, action: str, amount, *, heavy: bool = False) -> dict:
    """An action's params for a ticket (a careful person's when `ticket.action` and
    `ticket.amount` are taken)."""
    if action == "reply.send":
        return {
            "to": ticket.email,
            "subject": f"Your order {ticket.order_id}",
            "body": _reply(ticket, "reply.send", None, heavy),
        }
    return {
        "order_id": ticket.order_id,
        "amount": float(amount),
        "currency": "EUR",
        "reason": ticket.kind.replace("_", " "),
    }


def _reply(ticket: Ticket, action: str, amount, heavy: bool) -> str:
    first = ticket.customer_name.split()[0]
    if heavy:
        return f"Hello. Your request was received and will be processed. Ticket {ticket.number}."
    if action == "refund.issue":
        return (
            f"Dear {first}, we are sorry about order {ticket.order_id}. We have refunded "
            f"{amount} EUR to your card; it shows within three working days."
        )
    if ticket.kind == "refunded_twice":
        return f"Dear {first}, we have taken back the second refund on order {ticket.order_id}."
    if ticket.kind == "return_question":
        return (
            f"Dear {first}, you can return items from order {ticket.order_id} free of "
            "charge within 30 days: print the label from your account and drop the parcel "
            "at any post office."
        )
    return (
        f"Dear {first}, the refund for order {ticket.order_id} was sent on the day we "
        "agreed; banks take up to five working days to show it."
    )
