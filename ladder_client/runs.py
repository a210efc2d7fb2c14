"""Recording a run and waiting for its decision."""

from __future__ import annotations

import dataclasses
import functools
import inspect
import logging
import re
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar, overload

from ladder_client._json import jsonable
from ladder_client.client import error_text
from ladder_client.errors import DecisionTimeout, LadderError
from ladder_client.models import APPROVED, FINISHED_STATUSES, Decision, RunInfo

if TYPE_CHECKING:
    from ladder_client.client import LadderClient

log = logging.getLogger("ladder_client")

F = TypeVar("F", bound=Callable[..., Any])


class PendingDecision:
    """A submitted proposal. `wait()` for the decision; `wait_result()` for a server
    executor's result."""

    def __init__(self, client: LadderClient, run: RunInfo, proposal: Mapping[str, Any]) -> None:
        self.client = client
        self.run = run
        self.proposal = dict(proposal)
        self.decision: Decision | None = None
        # What the gateway pseudonymised in our own proposal (params, alternatives,
        # artifact): decided params come back with `<EMAIL:…>` tokens, and this turns them
        # into the real values again, here in the agent's process only. Empty for a run
        # that cannot be decided (recorded): the gateway then sends none.
        self.pseudonyms: dict[str, Any] = dict(run.raw.get("pseudonyms") or {})

    def __repr__(self) -> str:
        return f"<PendingDecision run={self.id} status={self.status}>"

    @property
    def id(self) -> str:
        return self.run.id

    @property
    def status(self) -> str:
        """The run's status as last seen."""
        return self.run.status

    def refresh(self) -> RunInfo:
        """Fetch the run's current state."""
        self.run = self.client.get_run(self.id)
        return self.run

    def _decision_of(self, run: RunInfo) -> Decision:
        decision = Decision.from_payload(
            run.raw.get("decision"), run_id=run.id, status=run.status, proposal=self.proposal
        )
        if not self.pseudonyms:
            return decision
        return dataclasses.replace(decision, params=restore(decision.params, self.pseudonyms))

    def wait(self, timeout: float = 300.0, poll: float = 25.0) -> Decision:
        """Long-poll `GET /runs/{id}?wait=` until the run stops waiting for review.

        Returns the final `Decision` (`approved`, `action`, the *final* `params` after a
        reviewer's edits, `reason`, `status`). A run nobody decided before its review
        deadline comes back denied by the deadline (`reason` "no decision within …"); the
        server answers a poll open at the deadline then. An approval of a workflow that
        is stopped is not returned until the workflow resumes: the action may not be
        carried out meanwhile. Raises `DecisionTimeout` after `timeout` seconds; the run
        keeps waiting on the server, so calling `wait()` again is fine.
        """
        deadline = time.monotonic() + timeout
        run = self.run
        while run.waiting:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise DecisionTimeout(self.id, timeout, run.status, stopped=_stop_reason(run))
            wait = max(0.0, min(poll, remaining))
            started = time.monotonic()
            run = self.client.get_run(self.id, wait=wait)
            self.run = run
            # A server that answers early without a decision must not be hammered.
            if run.waiting and time.monotonic() - started < wait / 2:
                self.client._sleep(min(0.25, max(0.0, deadline - time.monotonic())))
        self.decision = self._decision_of(run)
        return self.decision

    def wait_result(self, timeout: float = 300.0) -> RunInfo:
        """Poll until an approved action has finished executing (executed, failed or
        rolled back) — for actions the server executes. Returns the run; its `result`
        holds the executor's output or error. A run that was not approved is returned as
        soon as that is known. Raises `DecisionTimeout` after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        delay = 0.1
        run = self.run
        while run.waiting or run.status not in FINISHED_STATUSES:
            decision = self._decision_of(run)
            if not run.waiting and not decision.approved:
                break
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise DecisionTimeout(self.id, timeout, run.status, stopped=_stop_reason(run))
            if run.waiting:
                run = self.client.get_run(self.id, wait=min(25.0, remaining))
            else:
                self.client._sleep(min(delay, remaining))
                delay = min(delay * 2, 2.0)
                run = self.client.get_run(self.id)
            self.run = run
        self.decision = self._decision_of(run)
        return run


class AgentRun:
    """One pass of an agent through a workflow, recorded locally then submitted once.

    Use it as a context manager (`client.run(...)`). Record what the agent did with
    `tool_call`/`tool` and `output`, then either `propose(...)` an action (which submits
    the whole run and returns a `PendingDecision`) or `record()` it without one (L0).
    After submission, further tool calls and outputs are appended to the run's trace:
    before the decision as context (refused once a reviewer was shown the run), after an
    approval as execution-phase events.

    Leaving the block:

    - normally, without having submitted: the run is `record()`ed (call `discard()` to
      leave nothing);
    - with an exception, before submitting: nothing is sent;
    - with an exception after an approval this agent had not reported on: the failure is
      reported with the exception text (the action is taken not to have been completed).
    """

    def __init__(
        self,
        client: LadderClient,
        workflow: str,
        *,
        input: Any = None,
        idempotency_key: str | None = None,
    ) -> None:
        self.client = client
        self.workflow = workflow
        self.input = jsonable(input)
        self.idempotency_key = idempotency_key or str(uuid.uuid4())
        self.tool_calls: list[dict[str, Any]] = []
        self.output_value: Any = None
        self.info: RunInfo | None = None
        self.pending: PendingDecision | None = None
        self.reported = False
        self._discarded = False

    def __repr__(self) -> str:
        state = self.info.status if self.info else "not submitted"
        return f"<AgentRun {self.workflow} key={self.idempotency_key} {state}>"

    # -- context manager ----------------------------------------------------------------

    def __enter__(self) -> AgentRun:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is None:
            if self.info is None and not self._discarded:
                self.record()
            elif self._approved_unreported():
                log.warning("run %s was approved but no result was reported", self.id)
            return
        if self.info is None:
            return  # nothing was sent: nothing is left half-submitted
        if self._approved_unreported():
            try:
                self.report(error=exc)
            except LadderError:
                log.exception("could not report the failure of run %s", self.id)

    def _approved_unreported(self) -> bool:
        decision = self.pending.decision if self.pending else None
        return (
            decision is not None
            and decision.approved
            and decision.status == APPROVED
            and not self.reported
        )

    # -- recording ----------------------------------------------------------------------

    @property
    def submitted(self) -> bool:
        return self.info is not None

    @property
    def id(self) -> str:
        """The run's id (only once submitted)."""
        if self.info is None:
            raise RuntimeError("the run has not been submitted yet")
        return self.info.id

    @property
    def decision(self) -> Decision | None:
        """The decision, once `PendingDecision.wait()` returned it."""
        return self.pending.decision if self.pending else None

    def tool_call(
        self,
        name: str,
        arguments: Any = None,
        result: Any = None,
        *,
        error: BaseException | str | None = None,
        **extra: Any,
    ) -> Any:
        """Record one tool call; returns `result` so it can wrap an expression."""
        call: dict[str, Any] = {
            "name": name,
            "arguments": jsonable(arguments),
            "result": jsonable(result),
        }
        if error is not None:
            call["error"] = error_text(error)
        for key, value in extra.items():
            if key not in call and key != "type":
                call[key] = jsonable(value)
        if self.info is None:
            self.tool_calls.append(call)
        else:
            self.client.append_events(self.info.id, [self._after_submit("tool_call", call)])
        return result

    @overload
    def record_tool(self, fn: F, *, name: str | None = None) -> F: ...
    @overload
    def record_tool(self, fn: None = None, *, name: str | None = None) -> Callable[[F], F]: ...

    def record_tool(self, fn: F | None = None, *, name: str | None = None) -> F | Callable[[F], F]:
        """Wrap `fn` so each call is recorded with its arguments and its result or
        exception (which is re-raised). Usable as `@run.tool`, `@run.tool(name="x")` or
        `lookup = run.record_tool(lookup)`."""

        def wrap(fn: F) -> F:
            tool_name = name or getattr(fn, "__name__", "tool")
            try:
                sig: inspect.Signature | None = inspect.signature(fn)
            except (TypeError, ValueError):
                sig = None

            if inspect.iscoroutinefunction(fn):

                @functools.wraps(fn)
                async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                    arguments = _call_arguments(sig, args, kwargs)
                    try:
                        result = await fn(*args, **kwargs)
                    except Exception as exc:
                        self.tool_call(tool_name, arguments, error=exc)
                        raise
                    return self.tool_call(tool_name, arguments, result)

                return async_wrapper  # type: ignore[return-value]

            @functools.wraps(fn)
            def wrapper(*args: Any, **kwargs: Any) -> Any:
                arguments = _call_arguments(sig, args, kwargs)
                try:
                    result = fn(*args, **kwargs)
                except Exception as exc:
                    self.tool_call(tool_name, arguments, error=exc)
                    raise
                return self.tool_call(tool_name, arguments, result)

            return wrapper  # type: ignore[return-value]

        return wrap(fn) if fn is not None else wrap

    tool = record_tool

    def output(self, value: Any) -> Any:
        """Set the run's output (e.g. the model's answer); returns `value`."""
        if self.info is None:
            self.output_value = jsonable(value)
        else:
            self.client.append_events(
                self.info.id, [self._after_submit("output", {"output": value})]
            )
        return value

    def _after_submit(self, kind: str, body: dict[str, Any]) -> dict[str, Any]:
        """An event sent after submitting. Once the decision is known, what the agent
        records is about carrying out the decided action: the gateway takes it as
        `"phase": "execution"` and keeps the context the decision was made on intact
        (before the decision, a reviewer who was already shown the run freezes it too)."""
        event = {"type": kind, **body}
        if self.decision is not None and self.decision.approved:
            event["phase"] = "execution"
        return event

    def discard(self) -> None:
        """Leave the block without submitting anything."""
        if self.info is not None:
            raise RuntimeError("the run was already submitted")
        self._discarded = True

    # -- submitting ---------------------------------------------------------------------

    def _submit(self, proposal: dict[str, Any] | None) -> RunInfo:
        if self.info is not None:
            raise RuntimeError("this run was already submitted (one proposal per run)")
        if self._discarded:
            raise RuntimeError("this run was discarded")
        self.info = self.client.submit_run(
            self.workflow,
            idempotency_key=self.idempotency_key,
            input=self.input,
            tool_calls=self.tool_calls or None,
            output=self.output_value,
            proposal=proposal,
        )
        return self.info

    def record(self) -> RunInfo:
        """Submit the run without a proposal: it is only recorded (the L0 way)."""
        return self._submit(None)

    def propose(
        self,
        action: str,
        params: Mapping[str, Any] | None = None,
        *,
        alternatives: Iterable[Mapping[str, Any] | tuple[Any, ...]] | None = None,
        artifact: Any = None,
        flags: Iterable[str] | None = None,
        summary: str | None = None,
    ) -> PendingDecision:
        """Submit the whole run (input, tool calls, output) with this proposal, once.

        `alternatives` are `{action, params, score?}` dicts or `(action, params[, score])`
        tuples (L2 shows them to the reviewer). Returns a `PendingDecision`.
        """
        proposal: dict[str, Any] = {"action": action, "params": jsonable(dict(params or {}))}
        if alternatives is not None:
            proposal["alternatives"] = [_alternative(a) for a in alternatives]
        if artifact is not None:
            proposal["artifact"] = jsonable(artifact)
        if flags is not None:
            proposal["flags"] = [str(f) for f in flags]
        if summary is not None:
            proposal["summary"] = summary
        info = self._submit(proposal)
        self.pending = PendingDecision(self.client, info, proposal)
        return self.pending

    def claim(self) -> RunInfo:
        """Take the approved action before carrying it out, so it is done at most once
        (raises `Conflict` `already_claimed` when another attempt holds it)."""
        if self.info is None:
            raise RuntimeError("the run has not been submitted yet")
        self.info = self.client.claim(self.info.id)
        if self.pending is not None:
            self.pending.run = self.info
        return self.info

    def report(self, result: Any = None, *, error: BaseException | str | None = None) -> RunInfo:
        """Report how the approved action went: succeeded with `result` as its output,
        or failed with `error` (an exception is sent as `"Type: message"`)."""
        if self.info is None:
            raise RuntimeError("the run has not been submitted yet")
        info = self.client.report_result(
            self.info.id,
            succeeded=error is None,
            output=jsonable(result),
            error=error,
        )
        self.reported = True
        self.info = info
        if self.pending is not None:
            self.pending.run = info
        return info


def _stop_reason(run: RunInfo) -> str:
    return str((run.workflow_stopped or {}).get("reason") or "") if run.stopped else ""


def _alternative(item: Mapping[str, Any] | tuple[Any, ...]) -> dict[str, Any]:
    if isinstance(item, tuple):
        action, params, *rest = item
        item = {"action": action, "params": params}
        if rest:
            item["score"] = rest[0]
    out = {"action": item["action"], "params": jsonable(dict(item.get("params") or {}))}
    if item.get("score") is not None:
        out["score"] = float(item["score"])
    return out


def _call_arguments(
    sig: inspect.Signature | None, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    """A call's arguments by parameter name (positional ones too)."""
    if sig is None:
        return {"args": list(args), "kwargs": kwargs} if args else dict(kwargs)
    try:
        bound = sig.bind(*args, **kwargs)
    except TypeError:
        return {"args": list(args), "kwargs": kwargs}
    arguments = dict(bound.arguments)
    first = next(iter(sig.parameters), None)
    if first in ("self", "cls"):
        arguments.pop(first, None)
    return arguments


# The gateway's pseudonyms: 16 hex characters since 2026-11, 8 before (both still seen).
_TOKEN = re.compile(r"<[A-Z][A-Z0-9_]*:(?:[0-9a-f]{16}|[0-9a-f]{8})>")


def restore(value: Any, pseudonyms: Mapping[str, Any]) -> Any:
    """Put the real values back for the pseudonyms this agent itself sent.

    A string that is exactly one pseudonym becomes the original value (of its original
    type); pseudonyms inside longer text are replaced by the original's text. Tokens the
    agent did not send (other customers') stay as they are.
    """
    if isinstance(value, str):
        if value in pseudonyms:
            return pseudonyms[value]
        return _TOKEN.sub(lambda m: str(pseudonyms.get(m.group(0), m.group(0))), value)
    if isinstance(value, dict):
        return {restore(k, pseudonyms): restore(v, pseudonyms) for k, v in value.items()}
    if isinstance(value, list):
        return [restore(v, pseudonyms) for v in value]
    return value
