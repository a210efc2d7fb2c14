"""What a policy envelope would have done over runs people already decided.

Pure: no database, no settings. The runs arrive as plain tuples, oldest first; the task
that reads them from PostgreSQL is `traces.services.backtests`. Rate limits and
first-seen rules are simulated in time order over this history, from the backtest's own
decisions (a rate limit counts what the policy itself allowed in its window; a subject
is first seen when no earlier run of the history named it), so the figures are what the
policy would really have done, not what it would do to each run alone. docs/policy.md,
"Backtests", defines every number so an examiner can recompute it from the runs' replays.

    tester = Backtester(compiled)
    tester.feed(rows)        # (id, created_at, proposal, status, value, currency), any chunks
    tester.result()          # the JSON stored on the Backtest
"""

from collections import Counter, deque
from collections.abc import Iterable
from datetime import datetime, timedelta
from decimal import Decimal

from ladder.policy import (
    ALLOW,
    DENY,
    ESCALATE,
    NO_COUNTERS,
    CompiledPolicy,
    Counters,
    RateLimit,
    evaluate,
    rate_keys,
    seen_keys,
    subject_key,
)
from traces.status import APPROVED_STATUSES, RunStatus

APPROVED = "approved"
REJECTED = "rejected"
OUTCOMES = (ALLOW, ESCALATE, DENY)


def _verdict(status: str) -> str:
    """ "rejected" or "approved", from the status a person's decision left the run in."""
    if status == RunStatus.REJECTED:
        return REJECTED
    if status in APPROVED_STATUSES:
        return APPROVED
    raise ValueError(f"a run in status {status!r} was not decided by a person")


def _currency(raw: str | None) -> str:
    return (raw or "").strip().upper()


class _Window:
    """The actions one rate limit allowed for one subject, inside its sliding window."""

    __slots__ = ("allowed", "count", "currency", "span", "total")

    def __init__(self, seconds: int, currency: str) -> None:
        self.span = timedelta(seconds=seconds)
        self.currency = currency
        self.allowed: deque[tuple[datetime, Decimal]] = deque()
        self.count = 0
        self.total = Decimal(0)

    def read(self, at: datetime) -> tuple[int, Decimal]:
        # The window is (at - span, at], as the gateway reads it: drop what fell out.
        start = at - self.span
        allowed = self.allowed
        while allowed and allowed[0][0] <= start:
            _, value = allowed.popleft()
            self.count -= 1
            self.total -= value
        return self.count, self.total

    def add(self, at: datetime, value: Decimal | None, currency: str) -> None:
        # A limit with a currency adds only that currency's values to its total.
        counted = (
            value
            if value is not None and (not self.currency or currency == self.currency)
            else Decimal(0)
        )
        self.allowed.append((at, counted))
        self.count += 1
        self.total += counted


class Backtester:
    """Feeds a history through one compiled policy, keeping the simulated counters."""

    def __init__(self, compiled: CompiledPolicy) -> None:
        self.compiled = compiled
        self._limits = {r.id: r for r in compiled.policy.rules if isinstance(r, RateLimit)}
        self._seen_pers = compiled.seen_pers
        self._windows: dict[tuple[str, str], _Window] = {}
        self._seen: set[str] = set()
        self._last: datetime | None = None
        self.runs = 0
        # (policy outcome, person's verdict) -> runs
        self.cells: Counter[tuple[str, str]] = Counter()
        self.rules_fired: Counter[str] = Counter()
        self.mistakes: list[str] = []
        self.mistake_value: dict[str, Decimal] = {}
        self.mistakes_without_value = 0
        self.first_at: datetime | None = None

    def feed(self, rows: Iterable[tuple]) -> int:
        """Decide each run in order; returns how many were fed. A row is (id, created_at,
        proposal, status, value, currency): the stored (redacted) proposal, the status a
        person's decision left the run in, and the run's value and currency columns."""
        fed = 0
        for row in rows:
            self._one(*row)
            fed += 1
        return fed

    def _one(self, run_id, at: datetime, proposal, status: str, value, currency) -> None:
        if self._last is not None and at < self._last:
            raise ValueError("a backtest needs its runs oldest first")
        self._last = at
        if self.first_at is None:
            self.first_at = at
        verdict = _verdict(status)
        if type(proposal) is not dict:
            proposal = {}
        currency = _currency(currency)
        keys = rate_keys(self.compiled, proposal)
        seen_for = seen_keys(self.compiled, proposal)
        if keys or seen_for:
            counters = Counters(
                rates={
                    rule_id: self._window(rule_id, subject, window).read(at)
                    for rule_id, subject, window in keys
                },
                seen={rule_id: subject in self._seen for rule_id, subject in seen_for},
            )
        else:
            counters = NO_COUNTERS
        decision = evaluate(self.compiled, proposal, counters)
        if decision.outcome == ALLOW:
            for rule_id, subject, window in keys:
                self._window(rule_id, subject, window).add(at, value, currency)
            if verdict == REJECTED:
                self._mistake(run_id, value, currency)
        self._mark_seen(proposal)
        self.runs += 1
        self.cells[(decision.outcome, verdict)] += 1
        if decision.rules_fired:
            self.rules_fired.update(decision.rules_fired)

    def _window(self, rule_id: str, subject: str, seconds: int) -> _Window:
        window = self._windows.get((rule_id, subject))
        if window is None:
            window = _Window(seconds, self._limits[rule_id].currency)
            self._windows[(rule_id, subject)] = window
        return window

    def _mark_seen(self, proposal: dict) -> None:
        # Every run names its subjects, whatever was decided and whatever its action, as
        # the gateway marks them (traces.services.policy.counting_for).
        if not self._seen_pers:
            return
        params = proposal.get("params")
        if not isinstance(params, dict):
            return
        for per in self._seen_pers:
            subject = subject_key(per, params)
            if subject is not None:
                self._seen.add(subject)

    def _mistake(self, run_id, value: Decimal | None, currency: str) -> None:
        self.mistakes.append(str(run_id))
        if value is None:
            self.mistakes_without_value += 1
        else:
            self.mistake_value[currency] = self.mistake_value.get(currency, Decimal(0)) + value

    def result(self) -> dict:
        """The figures, as JSON (decimals as strings; docs/policy.md, "Backtests")."""
        cells = {
            outcome: {verdict: self.cells[(outcome, verdict)] for verdict in (APPROVED, REJECTED)}
            for outcome in OUTCOMES
        }
        return {
            "runs": self.runs,
            "allowed": sum(cells[ALLOW].values()),
            "escalated": sum(cells[ESCALATE].values()),
            "denied": sum(cells[DENY].values()),
            "outcomes": cells,
            "mistakes": {
                "count": len(self.mistakes),
                "value": {c: str(v) for c, v in sorted(self.mistake_value.items())},
                "without_value": self.mistakes_without_value,
                "runs": self.mistakes,
            },
            "rules_fired": dict(sorted(self.rules_fired.items())),
            "first_at": self.first_at.isoformat() if self.first_at else None,
            "last_at": self._last.isoformat() if self._last else None,
        }


def backtest(compiled: CompiledPolicy, rows: Iterable[tuple]) -> dict:
    """The whole history at once: `Backtester(compiled)`, fed `rows`, its result."""
    tester = Backtester(compiled)
    tester.feed(rows)
    return tester.result()
