"""Simulated reviewers. They decide through the very services the review pages call
(`approvals.services.review_open` then `review_decide`, on what the page would show),
never by writing rows, with an error profile of their own: they catch most wrong
proposals and most attention probes, not all, and now and then reject a good one.
"""

from __future__ import annotations

import random
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from django.contrib.auth.models import User
from django.db import connection, connections, transaction

from approvals import services
from approvals.review import options
from examples.refunds.agent import Proposed, params_for
from traces.models import Run, RunStatus


@dataclass(frozen=True)
class ReviewerProfile:
    catch_wrong: float = 0.90  # a wrong proposal is rejected (or corrected)
    catch_probe: float = 0.98  # an attention probe is rejected
    reject_good: float = 0.004  # a good proposal is rejected anyway


class ReviewDesk:
    """The support team's reviewers working through the queue."""

    def __init__(
        self, people: list[User], *, seed: int, profile: ReviewerProfile, together: bool = False
    ):
        self.people = people
        self.seed = seed
        self.profile = profile
        # `together`: the reviewers work their shares of a session at the same time, one
        # thread (and database connection) each, as three people would. PostgreSQL only.
        self._pool = ThreadPoolExecutor(len(people)) if together and len(people) > 1 else None

    def close(self) -> None:
        """Close the reviewers' threads and their database connections."""
        if self._pool is not None:
            for f in [self._pool.submit(connections.close_all) for _ in self.people]:
                f.result()
            self._pool.shutdown()
            self._pool = None

    def work_queue(self, workflow_id: int, known: dict[str, Proposed]) -> list[str]:
        """Decide every run waiting in the workflow's queue now (oldest first), as the
        queue page lists them, shared out among the reviewers; returns the ids of the
        runs decided."""
        waiting = list(
            Run.objects.filter(workflow_id=workflow_id, status=RunStatus.PENDING_REVIEW)
            .select_related("workflow", "action_type")
            .order_by("created_at", "id")
        )
        shares = [(person, waiting[i :: len(self.people)]) for i, person in enumerate(self.people)]
        if self._pool is None or len(waiting) < 2:
            return [run_id for person, runs in shares for run_id in self._work(person, runs, known)]
        futures = [self._pool.submit(self._work, person, runs, known) for person, runs in shares]
        return [run_id for future in futures for run_id in future.result()]

    def _work(self, reviewer: User, runs: list[Run], known: dict[str, Proposed]) -> list[str]:
        fast_commits()
        return [str(run.id) for run in runs if self._decide(run, reviewer, known.get(str(run.id)))]

    def _rng(self, run: Run, proposed: Proposed | None) -> random.Random:
        """Each decision's own draws, whoever makes it and in whatever order."""
        key = proposed.ticket.number if proposed else f"probe:{run.proposal}"
        return random.Random(f"{self.seed}:{key}")

    def _decide(self, run: Run, reviewer: User, proposed: Proposed | None) -> bool:
        rng, profile = self._rng(run, proposed), self.profile
        opened = services.review_open(run=run, user=reviewer)
        proposal = run.proposal or {}
        if proposed is None:  # not the agent's: an attention probe, wrong by construction
            caught = rng.random() < profile.catch_probe
            decision = _reject_or_approve(run, caught, "this refund is not due")
        else:
            wrong = not proposed.correct
            catch = wrong and rng.random() < profile.catch_wrong
            spurious = not wrong and rng.random() < profile.reject_good
            decision = self._decision(run, proposal, proposed, catch=catch, spurious=spurious)
        with transaction.atomic():
            services.review_decide(
                run=run,
                reviewer=reviewer,
                seen_hash=opened.hash,
                seen_version=run.version,
                decision=decision,
            )
        return True

    def _decision(self, run: Run, proposal: dict, proposed: Proposed, *, catch, spurious):
        ticket = proposed.ticket
        if run.rung == 1:  # a draft: edit it and submit it, or discard it
            if catch or spurious:
                return services.DraftSubmission(
                    params=proposal.get("params") or {},
                    discard=True,
                    reason="not what this customer needs" if catch else "customer called in",
                )
            params = dict(proposal.get("params") or {})
            artifact = dict(proposal.get("artifact") or {})
            reply = str(artifact.get("reply", ""))
            if proposed.heavy:  # rewritten from scratch
                reply = (
                    "Dear customer, thank you for writing to us and for your patience. "
                    f"We have looked into order {ticket.order_id} and sorted it out today; "
                    "reply to this message if anything is still not right."
                )
            else:  # a light touch
                reply = reply.replace("we are sorry", "we are very sorry").replace("Dear", "Hello")
            if "body" in params:
                params["body"] = reply
            artifact["reply"] = reply
            return services.DraftSubmission(params=params, artifact=artifact)
        if run.rung == 2:  # pick the option that is right, or type it in
            if spurious:
                return services.Pick(option=None, reject=True, reason="customer called in")
            if not catch:
                return services.Pick(option=0)
            right = params_for(ticket, ticket.action, ticket.amount)
            redacted = [o for o in options(proposal)]
            for index, option in enumerate(redacted):
                if option.get("action") == ticket.action and _same_money(option, right):
                    return services.Pick(option=index)
            return services.Pick(option=None, own_action=ticket.action, own_params=right)
        return _reject_or_approve(
            run,
            catch or spurious,
            (proposed.mistake or "not due") if catch else "customer called in, handled by phone",
        )


def _same_money(option: dict, right: dict) -> bool:
    params = option.get("params") or {}
    return params.get("amount") == right.get("amount") if "amount" in right else True


def _reject_or_approve(run: Run, reject: bool, reason: str):
    if run.rung == 1:
        return services.DraftSubmission(
            params=(run.proposal or {}).get("params") or {}, discard=reject, reason=reason
        )
    if run.rung == 2:
        return services.Pick(option=None if reject else 0, reject=reject, reason=reason)
    return services.Approval(approve=not reject, reason=reason if reject else "")


def fast_commits() -> None:
    """On PostgreSQL, this connection does not wait for each commit to reach the disk
    (a simulation that crashes loses its last moments, no more)."""
    if connection.vendor == "postgresql" and not getattr(connection, "_sim_fast", False):
        with connection.cursor() as cursor:
            cursor.execute("SET synchronous_commit TO off")
        connection._sim_fast = True
