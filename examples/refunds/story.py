"""The worked example's story, played on simulated time (docs/worked-example.md).

A web shop's support desk puts its refund agent on the ladder: two weeks at L1 (drafts a
person edits), two at L2 (recommendations a person picks from), six at L3 (a person
approves each refund, the draft L4 envelope evaluated in shadow beside them, attention
probes in the queue), then a backtest, a timed rollback drill, a promotion request with
its frozen evidence and a compliance approval with its certificate, and L4 inside a
200 EUR cap that escalates fraud-adjacent refunds. Then a bad model update makes the
agent refund what it should not, the audit labels the refunds wrong, and the breaker
puts the workflow back on L3.

Everything goes through the product's public surfaces: the agent through the SDK (over
the real HTTP stack, in process), the people through the services the pages call, the
nightly work through the services the beat schedule calls. Nothing writes the control
plane's rows directly; only the example's own setup (the workflow, its action types, the
people) is written the way an admin would in the admin site.
"""

from __future__ import annotations

import gc
import heapq
import math
import time
import zlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.contrib.auth.models import User
from django.db import transaction
from django.test.utils import override_settings
from django.utils import timezone

from approvals import services as approvals
from approvals.roles import Role, role_grant
from examples.refunds.agent import ErrorProfile, Proposed, SupportAgent, params_for
from examples.refunds.business import Shop
from examples.refunds.clock import SimClock
from examples.refunds.reviewers import ReviewDesk, ReviewerProfile, fast_commits
from examples.refunds.workflow import ACTIONS
from ladder.errors import LadderError
from ladder.gates import max_rung_for
from ladder.models import ActionType, RungChange, Workflow
from ladder.rungs import Executor, RiskClass, Rung

MIN_RUNS = 2000  # fewer cannot clear the L3 -> L4 volume gate (1,000 decided at L3)
# The L4 envelope: refunds only, up to 200 EUR each, fraud-adjacent ones to a person, and
# no more than 5,000 EUR a day without a person.
POLICY = {
    "audit_sample_rate": 0.05,
    "rules": [
        {"id": "refunds-and-replies", "kind": "allow_actions",
         "actions": ["refund.issue", "reply.send"], "control": "allowed_tools"},
        {"id": "cap-200", "kind": "value_cap", "action": "refund.issue", "max": "200.00",
         "currency": "EUR", "then": "escalate", "control": "value_cap"},
        {"id": "fraud-adjacent", "kind": "flag", "flag": "fraud_adjacent", "then": "escalate",
         "control": "rbac"},
        {"id": "daily-total", "kind": "rate_limit", "action": "refund.issue",
         "window_seconds": 86400, "max_value": "5000.00", "currency": "EUR", "per": "workflow",
         "then": "escalate", "control": "rate_limit"},
    ],
}  # fmt: skip
_MEMORY_MAIL = {"default": {"BACKEND": "django.core.mail.backends.locmem.EmailBackend"}}
OUTCOME = "refund_hours"  # hours from a ticket to the customer's money (or answer)


@dataclass(frozen=True)
class Stage:
    rung: int
    days: int
    share: float  # of the runs
    sessions: tuple[float, ...]  # review sessions, hours of the day


STAGES = (
    Stage(Rung.L1, 15, 0.12, (11.0, 15.0, 17.5)),
    Stage(Rung.L2, 15, 0.17, (10.0, 13.0, 16.0, 18.0)),
    Stage(Rung.L3, 43, 0.55, tuple(8.5 + h for h in range(11))),
    Stage(Rung.L4, 6, 0.12, tuple(8.5 + h for h in range(11))),
    Stage(Rung.L3, 2, 0.04, tuple(8.5 + h for h in range(11))),  # after the trip
)
BURST_DAY = 2  # the L4 stage's day on which the bad model update ships
BURST_FACTOR = 50.0


@dataclass
class Result:
    """What the story did, for the command's last lines and for the tests."""

    workflow: Workflow
    runs: int = 0
    rung_changes: list[str] = field(default_factory=list)
    promotion_ids: list[int] = field(default_factory=list)
    seconds: float = 0.0
    spent: Counter = field(default_factory=Counter)  # seconds, by what they went on


class Story:
    def __init__(
        self,
        *,
        slug: str,
        runs: int,
        seed: int,
        say: Callable[[str], None],
        progress: Callable[[str], None] | None = None,
        errors: ErrorProfile | None = None,
        reviewers: ReviewerProfile | None = None,
        eager: bool | None = None,
    ) -> None:
        if runs < MIN_RUNS:
            raise ValueError(
                f"--runs must be at least {MIN_RUNS}: fewer cannot clear the L3 -> L4 volume "
                "gate (1,000 decided runs at L3)"
            )
        self.slug, self.runs, self.seed = slug, runs, seed
        self.say = say
        self.progress = progress or (lambda line: None)
        self.errors = errors or ErrorProfile()
        self.reviewer_profile = reviewers or ReviewerProfile()
        from ladder.celery import app

        self.eager = app.conf.task_always_eager if eager is None else eager
        self.known: dict[str, Proposed] = {}
        # Submitted and not finished: waiting for a person, or decided and to look at.
        self.waiting: dict[str, Proposed] = {}
        self.to_check: dict[str, Proposed] = {}
        self.resolved_today: list[float] = []
        self.labels_due: list[tuple[datetime, Proposed]] = []
        self.alerts_told = 0

    # -- setting the shop up ----------------------------------------------------------

    def _people(self) -> dict[str, User]:
        names = {
            "owner": "ops-lead",
            "compliance": "compliance-officer",
            "reviewers": ["support-ana", "support-ben", "support-chen"],
        }
        made = {}
        for name in [names["owner"], names["compliance"], *names["reviewers"]]:
            user, created = User.objects.get_or_create(
                username=name, defaults={"email": f"{name}@shop.invalid"}
            )
            if created:
                user.set_unusable_password()  # simulated people never log in
                user.save(update_fields=["password"])
            made[name] = user
        return {
            "owner": made[names["owner"]],
            "compliance": made[names["compliance"]],
            "reviewers": [made[n] for n in names["reviewers"]],
        }

    @transaction.atomic
    def _workflow(self, people: dict) -> Workflow:
        if Workflow.objects.filter(slug=self.slug).exists():
            raise ValueError(
                f"workflow {self.slug!r} exists already: the simulation builds its history from "
                "nothing (run it on a fresh database, or name another workflow)"
            )
        wf = Workflow.objects.create(
            slug=self.slug,
            name="Support refund",
            description=(
                "The shop's support agent answers tickets and refunds damaged, late or "
                "double-charged orders (the worked example, docs/worked-example.md)."
            ),
            owner=people["owner"],
            rung=Rung.L1,
            risk_class=RiskClass.CONSEQUENTIAL,
            max_rung=max_rung_for(RiskClass.CONSEQUENTIAL),
            personal_fields=["customer_name", "address"],
            outcome_metric=OUTCOME,
            outcome_direction="down",
        )
        RungChange.objects.create(
            workflow=wf,
            kind=RungChange.Kind.INITIAL,
            from_rung=None,
            to_rung=Rung.L1,
            reason="the refund agent starts on drafts",
            actor=people["owner"],
        )
        for a in ACTIONS:
            ActionType.objects.create(
                workflow=wf,
                name=a["name"],
                param_schema=a["schema"],
                value_param=a.get("value", ""),
                currency_param="currency" if a.get("value") else "",
                reversible=a.get("reversible", False),
                executor=a.get("executor", Executor.AGENT),
                executor_path=a.get("path", ""),
                compensating_action=a.get("compensation", ""),
            )
        role_grant(workflow=wf, user=people["owner"], role=Role.OWNER, by=None)
        role_grant(workflow=wf, user=people["compliance"], role=Role.COMPLIANCE, by=None)
        for person in people["reviewers"]:
            role_grant(workflow=wf, user=person, role=Role.REVIEWER, by=None)
        return wf

    def _client(self, wf: Workflow):
        import httpx

        from ladder.wsgi import application
        from ladder_client import LadderClient
        from traces.services.tokens import token_create

        _, raw = token_create(name=f"{self.slug} simulated agent", workflows=[wf])
        transport = httpx.WSGITransport(app=application)
        return LadderClient("http://127.0.0.1", raw, transport=transport, retries=2)

    def _eval_set(self, wf: Workflow, shop: Shop, owner: User, start: datetime) -> dict:
        """The owner's eval set: 90 tickets with their expected action, and a known-wrong
        one for each (the attention probes are made from those)."""
        import json

        from traces.services.evals import eval_cases_import

        tickets, lines = {}, []
        for i in range(90):
            ticket = shop.ticket(start - timedelta(days=30, minutes=i))
            if i % 9 == 0:  # a refund that was paid twice: take one back
                ticket.kind, ticket.action, ticket.amount = (
                    "refunded_twice",
                    "refund.reverse",
                    ticket.item_price,
                )
            key = f"E-{i + 1:03d}"
            tickets[key] = ticket
            expected = params_for(ticket, ticket.action, ticket.amount)
            if ticket.action == "refund.issue":
                wrong = {**expected, "amount": float(ticket.order_total * 3)}
                why = "three times the order's total"
            else:
                wrong = params_for(ticket, "refund.issue", ticket.order_total)
                why = "no refund is due on this ticket"
            lines.append(
                json.dumps(
                    {
                        "input": {"ticket": ticket.text, "case": key},
                        "expected": {"action": ticket.action, "params": expected},
                        "wrong": {"action": "refund.issue", "params": wrong, "why": why},
                    }
                )
            )
        eval_cases_import(workflow=wf, text="\n".join(lines), by=owner)
        return tickets

    # -- the story ----------------------------------------------------------------------

    def play(self) -> Result:
        began = time.monotonic()
        # A batch job holding weeks of runs in memory: collect young garbage less often.
        gc.collect()
        gc.freeze()
        threshold = gc.get_threshold()
        gc.set_threshold(50_000, 20, 100)
        fast_commits()  # weeks of traffic in minutes
        days = sum(s.days for s in STAGES)
        now = timezone.now()
        start = (now - timedelta(days=days + 1)).replace(hour=0, minute=0, second=0, microsecond=0)
        # The gateway's request-rate limit counts real seconds, and here a simulated day
        # passes in one: the in-process gateway of the simulation does without it.
        # Alerts go to the simulated people's (invalid) addresses: kept in memory and told
        # in the narrative, never sent, whatever mail server is configured.
        try:
            with (
                override_settings(LADDER_RATE_LIMIT_PER_SECOND=0, MAILERS=_MEMORY_MAIL),
                SimClock(start, publish=not self.eager) as clock,
            ):
                self.clock = clock
                result = self._play(start)
        finally:
            if getattr(self, "desk", None) is not None:
                self.desk.close()
            gc.set_threshold(*threshold)
            gc.unfreeze()
        result.seconds = time.monotonic() - began
        return result

    def _play(self, start: datetime) -> Result:
        people = self._people()
        wf = self._workflow(people)
        result = Result(workflow=wf)
        self.result, self.wf, self.people = result, wf, people
        shop = Shop(self.seed, prefix=f"{zlib.crc32(self.slug.encode()) % 46656:03X}"[:3])
        client = self._client(wf)
        self.agent = SupportAgent(client, self.slug, seed=self.seed, errors=self.errors)
        from django.db import connection

        self.desk = ReviewDesk(
            people["reviewers"],
            seed=self.seed,
            profile=self.reviewer_profile,
            together=connection.vendor == "postgresql",
        )
        self.eval_tickets = self._eval_set(wf, shop, people["owner"], start)
        self.say(
            f"{start:%d %b %Y}: the shop's refund agent joins {wf.slug} on L1 (drafts). "
            f"{len(self.eval_tickets)} eval cases are on file."
        )
        budgets = _budgets(self.runs)
        day = start
        total_days = sum(s.days for s in STAGES)
        day_no = 0
        carry_runs = carry_days = 0  # what a stage cut short (by the breaker) leaves over
        for index, stage in enumerate(STAGES):
            days = stage.days + carry_days
            per_day = _spread(budgets[index] + carry_runs, days)
            carry_runs = carry_days = 0
            for stage_day, count in enumerate(per_day):
                if index == 3 and stage_day == BURST_DAY:
                    self.agent.errors = self.errors.scaled(BURST_FACTOR)
                    self.say(
                        f"{day:%d %b}: a model update ships; the agent now refunds tickets "
                        "that only need an answer."
                    )
                self._day(day, shop, count, stage)
                day_no += 1
                self.progress(
                    _bar(day_no, total_days, f"{day:%d %b} L{_rung(wf)} {result.runs:,} runs")
                )
                day += timedelta(days=1)
                began = time.monotonic()
                self._night(day)
                result.spent["nights (breaker, gates, probes)"] += time.monotonic() - began
                self._alerts()
                if stage.rung == Rung.L4 and _rung(wf) == Rung.L3:
                    self.agent.errors = self.errors
                    self.say(f"{day:%d %b}: the team rolls the model update back.")
                    carry_runs = sum(per_day[stage_day + 1 :])
                    carry_days = days - stage_day - 1
                    break
            began = time.monotonic()
            self._stage_end(index, day)
            result.spent["stage ends (evals, backtest, drill, promotions)"] += (
                time.monotonic() - began
            )
        self.progress("")
        return result

    # -- one day ------------------------------------------------------------------------

    def _day(self, day: datetime, shop: Shop, count: int, stage: Stage) -> None:
        rng = shop.rng
        arrivals = sorted(day + timedelta(hours=rng.uniform(7, 20)) for _ in range(count))
        sessions = [day + timedelta(hours=h) for h in stage.sessions]
        evening = day + timedelta(hours=21)
        events = [(t, 0, n, None) for n, t in enumerate(arrivals)]
        events += [(t, 1, n, None) for n, t in enumerate(sessions)]
        heapq.heapify(events)
        labelled = 0
        while True:
            # An audit finding made today (the agent settles as the day goes) is due today.
            for item in [i for i in self.labels_due if i[0] < evening]:
                self.labels_due.remove(item)
                labelled += 1
                heapq.heappush(events, (item[0], 2, labelled, item[1]))
            if not events:
                break
            at, kind, _, payload = heapq.heappop(events)
            self.clock.advance_to(at)
            began = time.monotonic()
            if kind == 0:
                proposed = self.agent.handle(shop.ticket(at))
                run_id = proposed.pending.id
                self.known[run_id] = proposed
                waits = proposed.pending.run.status == "pending_review"
                (self.waiting if waits else self.to_check)[run_id] = proposed
                self.result.runs += 1
                self.result.spent["the agent's submissions"] += time.monotonic() - began
            elif kind == 1:
                for run_id in self.desk.work_queue(self.wf.pk, self.known):
                    if run_id in self.waiting:
                        self.to_check[run_id] = self.waiting.pop(run_id)
                self.result.spent["reviews (and, eager, executions)"] += time.monotonic() - began
                self._settle(wait=False)
            else:
                self.agent.label_wrong(payload.pending.id, f"audit: {payload.mistake}")
        self.clock.advance_to(evening)
        self._settle(wait=True)
        if self.resolved_today:
            mean = sum(self.resolved_today) / len(self.resolved_today)
            self.agent.post_metric(OUTCOME, round(mean, 3), day + timedelta(hours=21))
        self.resolved_today = []

    def _settle(self, *, wait: bool) -> None:
        """The agent looks at its open runs: sends approved replies, notes finished
        refunds (and how long the customer waited), and, for a refund that should not
        have been paid, the shop's audit finds it the next morning."""
        began = time.monotonic()
        if wait and not self.eager:
            self._wait_for_workers()
        for run_id, proposed in list(self.to_check.items()):
            status = self.agent.carry_out(proposed)
            if status == "pending_review":  # escalated by the policy, or by its deadline
                self.waiting[run_id] = self.to_check.pop(run_id)
                continue
            if status in ("approved", "executing"):
                continue
            del self.to_check[run_id]
            if status in ("executed", "failed", "rejected", "denied"):
                hours = (timezone.now() - proposed.ticket.arrives).total_seconds() / 3600
                if status == "executed":
                    self.resolved_today.append(hours)
                if status == "executed" and not proposed.correct:
                    found = timezone.now() + timedelta(hours=3 if _rung(self.wf) >= 4 else 15)
                    self.labels_due.append((found, proposed))
        self.result.spent["the agent's follow-up (replies sent, results read)"] += (
            time.monotonic() - began
        )

    def _wait_for_workers(self, timeout: float = 120) -> None:
        from traces.models import Run, RunStatus

        deadline = time.monotonic() + timeout
        # The server's executions only: the agent carries out its replies itself, and an
        # approved attention probe is never carried out (it is a reviewer's miss).
        busy = Run.objects.filter(
            workflow=self.wf,
            probe=False,
            action_type__executor=Executor.SERVER,
            status__in=[RunStatus.APPROVED, RunStatus.EXECUTING],
        )
        while busy.exists():
            if time.monotonic() > deadline:
                stuck = ", ".join(
                    f"{run.pk} ({run.status} at L{run.rung}, {run.created_at:%d %b %H:%M})"
                    for run in busy[:5]
                )
                raise RuntimeError(
                    f"the Celery worker did not execute the approved runs within {timeout:g} s "
                    f"(is one running, with LADDER_SIMULATED_CLOCK=1?): {stuck}"
                )
            time.sleep(0.05)

    def _night(self, day: datetime) -> None:
        """What the beat schedule does overnight, through the same services."""
        from traces.services.breaker import breaker_check_all
        from traces.services.gates import gates_recompute_all
        from traces.services.probes import probes_seed

        self.clock.advance_to(day + timedelta(hours=2))
        wf = Workflow.objects.get(pk=self.wf.pk)
        self.wf = wf
        self._rung_changes()
        breaker_check_all()
        self._rung_changes()
        gates_recompute_all(trigger="nightly", workflows=[wf])
        probes_seed(workflow=wf)

    def _alerts(self) -> None:
        from django.core import mail

        for message in getattr(mail, "outbox", [])[self.alerts_told :]:
            self.say(
                f"{timezone.now():%d %b}: alert mailed to {', '.join(message.to)}: "
                f"{message.subject}"
            )
        self.alerts_told = len(getattr(mail, "outbox", []))

    def _rung_changes(self) -> None:
        from ladder.services import rung_history

        history = list(reversed(rung_history(workflow=self.wf, people=False)))
        for change in history[len(self.result.rung_changes) :]:
            self.result.rung_changes.append(
                f"L{change['from_rung']}->L{change['to_rung']} ({change['cause']})"
                if change["from_rung"] is not None
                else f"L{change['to_rung']} ({change['cause']})"
            )
            if change.get("cause") == "breaker":
                at = datetime.fromisoformat(change["at"])
                self.say(
                    f"{at:%d %b %H:%M}: the breaker trips, L{change['from_rung']} -> "
                    f"L{change['to_rung']}: {change['reason'].removeprefix('breaker tripped: ')}"
                )

    # -- between stages -----------------------------------------------------------------

    def _stage_end(self, index: int, day: datetime) -> None:
        if index == 0:
            self._promote(day, "L1 drafts were edited lightly")
        elif index == 1:
            matched, total = self.agent.eval_pass(f"{day:%Y-%m-%d}", self.eval_tickets)
            self.say(f"{day:%d %b}: eval pass: {matched} of {total} cases matched.")
            self._promote(day, "L2 picks matched the agent's first recommendation")
            self._l3_setup()
        elif index == 2:
            self._backtest()
            self._drill()
            self._promote(day, "six weeks of approved refunds at L3")
        elif index == 3 and _rung(self.wf) == Rung.L4:
            self.say(f"{day:%d %b}: L4 held through the bad update; the breaker did not trip.")

    def _l3_setup(self) -> None:
        from traces.services.policy import policy_set

        owner = self.people["owner"]
        wf = Workflow.objects.get(pk=self.wf.pk)
        policy_set(workflow=wf, document=POLICY, by=owner, note="L4 envelope: 200 EUR cap")
        approvals.workflow_probe_rate_set(workflow=wf, rate=0.05, by=owner)
        self.say(
            f"{timezone.now():%d %b}: the owner writes the L4 envelope (200 EUR cap, "
            "fraud-adjacent refunds to a person); it is evaluated in shadow on every L3 run. "
            "5% of the review work becomes attention probes."
        )

    def _backtest(self) -> None:
        from traces.models import Backtest
        from traces.services.backtests import backtest_start

        wf = Workflow.objects.get(pk=self.wf.pk)
        from ladder.policies import policy_latest

        test = backtest_start(workflow=wf, by=self.people["owner"], version=policy_latest(wf))
        test = _wait_until(lambda: Backtest.objects.get(pk=test.pk), lambda b: b.finished_at)
        figures = test.result or {}
        self.say(
            f"{timezone.now():%d %b}: backtest of the envelope over "
            f"{figures.get('runs', figures.get('total', '?'))} decided L3 runs: "
            f"{_backtest_line(figures)}"
        )

    def _drill(self) -> None:
        from traces.models import RollbackDrill
        from traces.services.drills import drill_start, drills_sweep

        wf = Workflow.objects.get(pk=self.wf.pk)
        drill = drill_start(workflow=wf, batch=50, actor=self.people["owner"])

        def finished():
            drills_sweep()
            return RollbackDrill.objects.get(pk=drill.pk)

        drill = _wait_until(finished, lambda d: d.finished_at)
        self.say(
            f"{timezone.now():%d %b}: rollback drill: {drill.succeeded} of {drill.picked} "
            f"refunds reverted in {drill.duration_seconds:.1f} s "
            f"({'passed' if drill.passed else 'FAILED'})."
        )

    def _promote(self, day: datetime, why: str) -> None:
        wf = Workflow.objects.get(pk=self.wf.pk)
        owner, compliance = self.people["owner"], self.people["compliance"]
        try:
            request = approvals.promotion_request(workflow=wf, by=owner, note=why)
        except LadderError as exc:
            raise RuntimeError(_refusal(wf, exc)) from exc
        self.result.promotion_ids.append(request.pk)
        self.say(f"{day:%d %b}: {owner.username} asks for L{request.to_rung}: {why}.")
        for line in _gate_lines(request.snapshot):
            self.say("    " + line)
        self.say(f"    evidence frozen into request #{request.pk}: sha256 {request.evidence_hash}")
        self.clock.advance_to(timezone.now() + timedelta(hours=5))
        request = approvals.promotion_decide(
            request=request, by=compliance, approve=True, reason="evidence reviewed"
        )
        self.wf = Workflow.objects.get(pk=wf.pk)
        self._rung_changes()
        cert = request.certificate
        self.say(
            f"{timezone.now():%d %b}: {compliance.username} approves; {wf.slug} is on "
            f"L{self.wf.rung}" + (f", certificate {str(cert.pk)[:8]}." if cert else ".")
        )


def _rung(wf: Workflow) -> int:
    return Workflow.objects.values_list("rung", flat=True).get(pk=wf.pk)


def _budgets(runs: int) -> list[int]:
    budgets = [math.floor(runs * s.share) for s in STAGES]
    budgets[2] += runs - sum(budgets)
    return budgets


def _spread(total: int, days: int) -> list[int]:
    base, extra = divmod(total, days)
    return [base + (1 if i < extra else 0) for i in range(days)]


def _bar(done: int, total: int, label: str) -> str:
    width = 30
    filled = round(width * done / total)
    return f"[{'#' * filled}{'.' * (width - filled)}] {label}"


def _wait_until(read, ready, timeout: float = 300):
    deadline = time.monotonic() + timeout
    while True:
        value = read()
        if ready(value):
            return value
        if time.monotonic() > deadline:
            raise RuntimeError(f"gave up waiting for {value}")
        time.sleep(0.05)


def _gate_lines(snapshot) -> list[str]:
    return [
        f"{g['verdict']:>5}  {g['sentence']}"
        for g in snapshot.gates
        if g.get("name") not in {"time_at_rung"}
    ]


def _refusal(wf: Workflow, exc: Exception) -> str:
    from ladder.models import GateSnapshot

    snapshot = GateSnapshot.objects.filter(workflow=wf).order_by("-computed_at", "-pk").first()
    lines = [f"the promotion of {wf.slug} from L{wf.rung} was refused: {exc}"]
    if snapshot is not None:
        lines += ["  " + line for line in _gate_lines(snapshot)]
    return "\n".join(lines)


def _backtest_line(figures: dict) -> str:
    keys = ("allowed", "escalated", "denied", "agreement")
    shown = [f"{k} {figures[k]}" for k in keys if k in figures]
    return ", ".join(shown) or str(figures)[:200]
