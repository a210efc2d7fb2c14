"""`@client.gated(workflow, action)`: a function that only runs once its action is approved."""

from __future__ import annotations

import contextvars
import functools
import inspect
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ladder_client.errors import (
    ActionChanged,
    ActionFailed,
    ActionRejected,
    Conflict,
    LadderError,
)
from ladder_client.models import EXECUTED, EXECUTING, FINISHED_STATUSES, ROLLED_BACK, RunInfo

if TYPE_CHECKING:
    from ladder_client.client import LadderClient
    from ladder_client.runs import AgentRun, PendingDecision

log = logging.getLogger("ladder_client")

_current_run: contextvars.ContextVar[RunInfo | None] = contextvars.ContextVar(
    "ladder_current_run", default=None
)


def current_run() -> RunInfo | None:
    """Inside a gated function: the approved run it is executing (else None).

    Its `id` is a good idempotency key toward the system the function acts on: if the
    caller repeats a call with the same `idempotency_key` after a crash between the action
    and its report, the function may be called again for the same run.
    """
    return _current_run.get()


def _check_signature(fn: Callable[..., Any]) -> inspect.Signature:
    sig = inspect.signature(fn)
    for p in sig.parameters.values():
        if p.kind in (p.POSITIONAL_ONLY, p.VAR_POSITIONAL):
            raise TypeError(
                f"{fn.__qualname__}: a gated function is called as fn(**params), so it "
                f"cannot take positional-only or *args parameters ('{p.name}')"
            )
    if "idempotency_key" in sig.parameters:
        raise TypeError(f"{fn.__qualname__}: 'idempotency_key' is reserved by @gated")
    return sig


def _params(sig: inspect.Signature, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict:
    bound = sig.bind(*args, **kwargs)
    params: dict[str, Any] = {}
    for name, p in sig.parameters.items():
        if name in bound.arguments:
            value = bound.arguments[name]
            if p.kind == p.VAR_KEYWORD:
                params.update(value)
            else:
                params[name] = value
        elif p.default is not p.empty and p.default is not None:
            # Defaults are part of what is approved; a None default is "not given".
            params[name] = p.default
    return params


def _summary(summary: str | Callable[[dict], str] | None, params: dict) -> str | None:
    if summary is None:
        return None
    if callable(summary):
        return summary(params)
    try:
        return summary.format_map(params)
    except (KeyError, IndexError, ValueError, AttributeError):
        return summary


def _finished(run: RunInfo) -> Any:
    """The output of an execution that is over, or `ActionFailed`."""
    result = run.result or {}
    if run.status == EXECUTED:
        return result.get("output")
    if run.status == ROLLED_BACK:
        raise ActionFailed(
            "the action was executed, then rolled back", run_id=run.id, result=result
        )
    raise ActionFailed(
        str(result.get("error") or "the action failed"), run_id=run.id, result=result
    )


def _report_quietly(run: AgentRun, *, error: BaseException | str) -> None:
    """Report a failure without masking the error being raised."""
    try:
        run.report(error=error)
    except LadderError:
        log.exception("run %s: could not report its failure", run.id)


def _claim(run: AgentRun, pending: PendingDecision, *, until: float, poll: float) -> None:
    """Claim the approved action; if its workflow was stopped since the approval (409
    `workflow_stopped`), wait for the resume and claim then, up to `until`."""
    while True:
        try:
            run.claim()
            return
        except Conflict as exc:
            if exc.code != "workflow_stopped":
                raise
        pending.refresh()
        # Waits while the run is approved and its workflow stopped (RunInfo.waiting).
        pending.wait(timeout=max(0.0, until - time.monotonic()), poll=poll)


def gated(
    client: LadderClient,
    workflow: str,
    action: str,
    *,
    summary: str | Callable[[dict[str, Any]], str] | None = None,
    flags: list[str] | None = None,
    timeout: float = 300.0,
    poll: float = 25.0,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Gate a function that performs `action` in `workflow` behind the ladder.

    Calling the decorated `fn(**params)` (optionally with `idempotency_key=`) submits a
    run proposing `action` with those params, waits up to `timeout` seconds for the
    decision, and then:

    - approved, agent executor: calls `fn(**final_params)` once, with the reviewer's final
      params, reports its return value (or its exception, which is re-raised) and returns
      the return value;
    - approved, server executor: does not call `fn`; waits for the server's execution and
      returns its output (`ActionFailed` if it failed);
    - rejected or denied (by the policy, or by the review deadline when nobody decided
      in time): raises `ActionRejected(reason)` without calling `fn`;
      approved for a different action: reports the run failed, raises `ActionChanged`;
    - the workflow is stopped (docs/stop.md): an approved action is not carried out
      (nor claimed) until it is resumed; the call keeps waiting, within `timeout`;
    - no decision in time: raises `DecisionTimeout` (calling again with the same
      `idempotency_key` resumes the same run instead of proposing a new one).

    Repeating a call with the same `idempotency_key` after the action finished returns
    the recorded output (or raises `ActionFailed`) without calling `fn` again.

    `summary` is what the reviewer reads: a string formatted with the params
    (`"Refund {amount} {currency}"`) or a callable taking the params.
    """

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        sig = _check_signature(fn)
        name = getattr(fn, "__qualname__", getattr(fn, "__name__", "fn"))

        @functools.wraps(fn)
        def wrapper(*args: Any, idempotency_key: str | None = None, **kwargs: Any) -> Any:
            params = _params(sig, args, kwargs)
            started = time.monotonic()
            with client.run(
                workflow,
                input={"call": name, "params": params},
                idempotency_key=idempotency_key,
            ) as run:
                pending = run.propose(
                    action, params, summary=_summary(summary, params), flags=flags
                )
                decision = pending.wait(timeout=timeout, poll=poll)
                if not decision.approved:
                    raise ActionRejected(
                        decision.reason or f"run {pending.id} was {decision.status}", decision
                    )
                if decision.action and decision.action != action:
                    message = (
                        f"approved action '{decision.action}' is not '{action}', the only "
                        f"action {name} performs; it was not carried out"
                    )
                    if decision.status not in FINISHED_STATUSES and decision.status != EXECUTING:
                        _report_quietly(run, error=message)
                    raise ActionChanged(message, decision)
                if decision.status in FINISHED_STATUSES:
                    return _finished(pending.run)  # an earlier call already finished it
                if (
                    decision.status == EXECUTING
                    or client.action_executor(workflow, action) == "server"
                ):
                    return _finished(pending.wait_result(timeout=timeout))
                try:
                    _claim(run, pending, until=started + timeout, poll=poll)
                except Conflict as exc:
                    if exc.code != "already_claimed":
                        raise
                    # Another attempt (a retry after a crash, a replica) is doing it:
                    # wait for its result rather than do the action twice.
                    return _finished(pending.wait_result(timeout=timeout))
                token = _current_run.set(pending.run)
                try:
                    result = fn(**decision.params)
                except Exception as exc:
                    _report_quietly(run, error=exc)
                    raise
                finally:
                    _current_run.reset(token)
                try:
                    run.report(result)
                except LadderError:
                    # The action happened: return its result rather than invite a retry.
                    log.exception("run %s: the action succeeded but its report failed", run.id)
                return result

        wrapper.ladder_workflow = workflow  # type: ignore[attr-defined]
        wrapper.ladder_action = action  # type: ignore[attr-defined]
        return wrapper

    return decorate
