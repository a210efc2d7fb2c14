"""The gate: what the proxy does with each tool call, through the gateway and the SDK.

Read tools are forwarded upstream and remembered as the next proposal's `tool_calls`.
Act tools become a run (`AgentRun.propose`); the call is held while the run waits for a
person (progress every `progress_seconds`), for at most `hold_seconds`, then answered
"NOT DONE YET" (a retry with the same arguments resumes the same run). Once the action is
approved, claim → upstream call → report runs in the gate's own task group, shielded from
cancellation, so the action happens at most once whatever the client does meanwhile.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import time
import weakref
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Any

import anyio
import mcp_types as types
from mcp import Client, StdioServerParameters
from mcp.server.subscriptions import InMemorySubscriptionBus
from mcp.shared.subscriptions import ToolsListChanged

from ladder_client import (
    Conflict,
    DecisionTimeout,
    LadderClient,
    LadderError,
    LadderUnavailable,
    NotFound,
    Unauthorized,
)
from ladder_client.models import EXECUTED, EXECUTING, FINISHED_STATUSES, RunInfo
from ladder_client.runs import AgentRun, PendingDecision
from ladder_mcp.config import Config, ToolMapping

log = logging.getLogger("ladder_mcp")

META = "ladder"  # the `_meta` key every answer about a run carries
#: How many read-tool calls are kept for the next proposal.
MAX_RECORDED_READS = 20

Progress = Callable[[float, str], Awaitable[None]]


class StartupError(Exception):
    """The proxy cannot start; the message says what to fix."""


def _first_error(exc: BaseException) -> str:
    """The innermost first error of a task group's exception group, as words."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return f"{type(exc).__name__}: {exc}"


def canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def text_result(text: str, *, error: bool, meta: dict[str, Any] | None = None):
    return types.CallToolResult(
        content=[types.TextContent(text=text)],
        is_error=error,
        _meta={META: meta} if meta else None,
    )


def with_defaults(schema: dict[str, Any] | None, arguments: dict[str, Any]) -> dict[str, Any]:
    """The arguments with the tool's schema defaults filled in: they are part of what is
    approved."""
    filled = dict(arguments)
    for name, prop in ((schema or {}).get("properties") or {}).items():
        if name not in filled and isinstance(prop, dict) and "default" in prop:
            filled[name] = prop["default"]
    return filled


def _summary(mapping: ToolMapping, params: dict[str, Any]) -> str:
    if not mapping.summary:
        return f"{mapping.name} (MCP tool) → {mapping.action}"
    try:
        return mapping.summary.format_map(params)
    except (KeyError, IndexError, ValueError, AttributeError):
        return mapping.summary


def _output_of(result: types.CallToolResult) -> Any:
    """What is reported as the action's output: the structured content, else the text."""
    if result.structured_content is not None:
        return result.structured_content
    texts = [c.text for c in result.content if isinstance(c, types.TextContent)]
    return "\n".join(texts)


def _server_result(run: RunInfo, meta: dict[str, Any]) -> types.CallToolResult:
    result = run.result or {}
    if run.status == EXECUTED:
        output = result.get("output")
        text = output if isinstance(output, str) else canonical(output)
        answer = text_result(text, error=False, meta=meta)
        if isinstance(output, dict):
            answer.structured_content = output
        return answer
    error = result.get("error") or f"the action ended {run.status}"
    return text_result(f"FAILED: {error}", error=True, meta=meta)


@dataclass
class _Call:
    """One act call's run, remembered for retries within the window."""

    key: str
    first_seen: float
    lock: anyio.Lock = field(default_factory=anyio.Lock)
    agent_run: AgentRun | None = None
    pending: PendingDecision | None = None
    action_params: dict[str, Any] = field(default_factory=dict)
    #: the read-tool calls this run carries: taken once, so a retried submission sends
    #: the very same body
    reads: list[dict[str, Any]] | None = None


@dataclass
class _Execution:
    done: anyio.Event = field(default_factory=anyio.Event)
    result: types.CallToolResult | None = None


class Gate:
    """Holds the upstream `mcp.Client`, the `LadderClient` and what calls are under way.

    `async with Gate(config, upstream=...)` connects and checks everything (raising
    `StartupError`); `upstream` is a command list (stdio), a URL, or an in-process
    `mcp.server.Server` (tests).
    """

    def __init__(
        self,
        config: Config,
        *,
        upstream: list[str] | str | Any,
        ladder: LadderClient | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.upstream_spec = upstream
        self.ladder = ladder or LadderClient(
            config.url, config.token, retries=config.gateway_retries
        )
        self._own_ladder = ladder is None
        self.clock = clock
        self.upstream: Client | None = None
        self.upstream_tools: dict[str, types.Tool] = {}
        self.rungs: dict[str, int] = {}
        self.executors: dict[tuple[str, str], str] = {}
        self._rungs_read = 0.0
        self._calls: dict[str, _Call] = {}
        self._executions: dict[str, _Execution] = {}
        self._reads: list[tuple[str | None, dict[str, Any]]] = []
        self._sessions: weakref.WeakSet = weakref.WeakSet()
        self.bus = InMemorySubscriptionBus()
        self._limiter = anyio.CapacityLimiter(16)
        self._stack: AsyncExitStack | None = None
        self._tg: anyio.abc.TaskGroup | None = None
        #: how many upstream calls each act tool made (tests and the bench read it)
        self.executed: list[str] = []

    # -- start and stop -------------------------------------------------------------------

    async def __aenter__(self) -> Gate:
        stack = AsyncExitStack()
        await stack.__aenter__()
        try:
            await self._check_gateway()
            try:
                self.upstream = await stack.enter_async_context(self._upstream_client())
                listed = await self.upstream.list_tools()
            except StartupError:
                raise
            except Exception as exc:
                raise StartupError(
                    f"the upstream MCP server ({self._upstream_words()}) did not start or "
                    f"did not answer: {_first_error(exc)} (its own errors are above)"
                ) from None
            self.upstream_tools = {t.name: t for t in listed.tools}
            missing = sorted(set(self.config.tools) - set(self.upstream_tools))
            if missing:
                raise StartupError(
                    f"the upstream has no tool {', '.join(map(repr, missing))} that "
                    f"{self.config.path or 'the config'} maps (it has: "
                    f"{', '.join(sorted(self.upstream_tools)) or 'none'})"
                )
            self._tg = await stack.enter_async_context(anyio.create_task_group())
            stack.callback(self._tg.cancel_scope.cancel)
            self._tg.start_soon(self._watch_rungs)
        except BaseException:
            await stack.aclose()
            if self._own_ladder:
                self.ladder.close()
            raise
        self._stack = stack
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._stack is not None:
            await self._stack.aclose()
        if self._own_ladder:
            self.ladder.close()

    def _upstream_words(self) -> str:
        spec = self.upstream_spec
        if isinstance(spec, list):
            return " ".join(spec)
        return spec if isinstance(spec, str) else "in process"

    def _upstream_client(self) -> Client:
        spec = self.upstream_spec
        if isinstance(spec, list):
            if not spec:
                raise StartupError("no upstream: give `-- COMMAND …` or --upstream-url URL")
            # The agent token is ours: the upstream never sees it.
            env = {k: v for k, v in os.environ.items() if k != "LADDER_TOKEN"}
            server = StdioServerParameters(command=spec[0], args=spec[1:], env=env)
            return Client(server, mode="legacy")
        return Client(spec)

    async def _sdk(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """A blocking SDK call in a worker thread (the SDK is httpx, synchronous)."""
        return await anyio.to_thread.run_sync(
            lambda: fn(*args, **kwargs), limiter=self._limiter, abandon_on_cancel=True
        )

    async def _check_gateway(self) -> None:
        checker = LadderClient(self.config.url, self.config.token, retries=0, timeout=5)
        try:
            for slug in self.config.workflows:
                try:
                    workflow = await self._sdk(checker.workflow, slug)
                except LadderUnavailable as exc:
                    raise StartupError(
                        f"the gateway at {self.config.url} cannot be reached ({exc}); "
                        "is it running, and is LADDER_URL right?"
                    ) from None
                except Unauthorized:
                    raise StartupError(
                        "the gateway refused LADDER_TOKEN (unknown or revoked token)"
                    ) from None
                except (NotFound, LadderError) as exc:
                    raise StartupError(
                        f"the token cannot use workflow '{slug}' ({exc}); create one that "
                        f"can: manage.py create_agent_token {' '.join(self.config.workflows)}"
                    ) from None
                self._note_workflow(slug, workflow)
                actions = {a.get("name") for a in workflow.get("action_types") or []}
                for tool in self.config.tools.values():
                    if tool.workflow == slug and tool.kind == "act" and tool.action not in actions:
                        raise StartupError(
                            f"tool '{tool.name}' maps to action '{tool.action}', which workflow "
                            f"'{slug}' does not have (it has: {', '.join(sorted(actions))})"
                        )
        finally:
            checker.close()
        self._rungs_read = time.monotonic()

    def _note_workflow(self, slug: str, workflow: dict[str, Any]) -> None:
        self.rungs[slug] = int(workflow["rung"])
        for item in workflow.get("action_types") or []:
            self.executors[(slug, item.get("name"))] = item.get("executor") or "agent"

    # -- rungs ----------------------------------------------------------------------------

    async def refresh_rungs(self) -> bool:
        """Re-read every mapped workflow's rung; tell the clients when the tools change."""
        before = self.visible_names()
        for slug in self.config.workflows:
            try:
                self._note_workflow(slug, await self._sdk(self.ladder.workflow, slug))
            except LadderError as exc:
                log.warning("could not re-read workflow %s: %s", slug, exc)
        self._rungs_read = time.monotonic()
        changed = self.visible_names() != before
        if changed:
            await self.bus.publish(ToolsListChanged())
            for session in list(self._sessions):
                try:
                    await session.send_tool_list_changed()
                except Exception:  # a gone client must not stop the others
                    self._sessions.discard(session)
        return changed

    async def _watch_rungs(self) -> None:
        while True:
            await anyio.sleep(self.config.rung_refresh_seconds)
            await self.refresh_rungs()

    def visible(self, mapping: ToolMapping) -> bool:
        if mapping.kind == "act":
            return self.rungs.get(mapping.workflow or "", 0) > 0
        return True

    def visible_names(self) -> list[str]:
        return sorted(n for n, m in self.config.tools.items() if self.visible(m))

    # -- the MCP surface ------------------------------------------------------------------

    def list_tools(self, session: Any = None) -> list[types.Tool]:
        if session is not None:
            # A handshake-era client is told of changes on its connection's standalone
            # channel; the session object itself lives only as long as one request.
            self._sessions.add(getattr(session, "_connection", session))
        return [self.upstream_tools[name] for name in self.visible_names()]

    async def call_tool(
        self, name: str, arguments: dict[str, Any] | None, progress: Progress | None = None
    ) -> types.CallToolResult:
        mapping = self.config.tools.get(name)
        if mapping is None:
            return text_result(f"unknown tool '{name}'", error=True)
        arguments = dict(arguments or {})
        if mapping.kind == "read":
            return await self._read(mapping, arguments)
        return await self._act(mapping, arguments, progress)

    async def _read(self, mapping: ToolMapping, arguments: dict[str, Any]):
        assert self.upstream is not None
        result = await self.upstream.call_tool(mapping.name, arguments)
        self._reads.append(
            (
                mapping.workflow,
                {"name": mapping.name, "arguments": arguments, "result": _output_of(result)},
            )
        )
        del self._reads[:-MAX_RECORDED_READS]
        return result

    def _take_reads(self, workflow: str) -> list[dict[str, Any]]:
        taken = [call for wf, call in self._reads if wf in (None, workflow)]
        self._reads = [(wf, call) for wf, call in self._reads if wf not in (None, workflow)]
        return taken

    def _call_for(self, mapping: ToolMapping, arguments: dict[str, Any]) -> _Call:
        """The same call within the retry window is the same run (its idempotency key)."""
        now = self.clock()
        window = self.config.retry_window_seconds
        digest = hashlib.sha256(
            canonical([mapping.workflow, mapping.name, arguments]).encode()
        ).hexdigest()[:32]
        call = self._calls.get(digest)
        if call is None or now - call.first_seen >= window:
            # Without the proxy's memory (a restart) the window's bucket still matches.
            call = _Call(key=f"mcp-{digest}-{math.floor(now / window)}", first_seen=now)
            self._calls[digest] = call
            for old, seen in list(self._calls.items()):
                if now - seen.first_seen >= window:
                    del self._calls[old]
        return call

    async def _act(self, mapping: ToolMapping, arguments: dict[str, Any], progress):
        workflow = mapping.workflow or ""
        if time.monotonic() - self._rungs_read > self.config.rung_refresh_seconds:
            await self.refresh_rungs()
        if not self.visible(mapping):
            return text_result(
                f"NOT DONE: refused: workflow '{workflow}' is at L0 (record only), so "
                f"'{mapping.name}' may not act",
                error=True,
                meta={"workflow": workflow, "rung": 0},
            )
        schema = self.upstream_tools[mapping.name].input_schema
        arguments = with_defaults(schema, arguments)
        call = self._call_for(mapping, arguments)
        started = time.monotonic()
        async with call.lock:
            if call.pending is None:
                call.action_params = mapping.to_action(arguments)
                if call.reads is None:
                    call.reads = self._take_reads(workflow)
                    if call.reads:
                        # The reads are part of the body: after a restart of the proxy
                        # (its memory gone), the same arguments without them are a new
                        # run, not a 409 for a reused key.
                        call.key += (
                            "-" + hashlib.sha256(canonical(call.reads).encode()).hexdigest()[:12]
                        )
                agent_run = self.ladder.run(
                    workflow,
                    input={"mcp_tool": mapping.name, "arguments": arguments},
                    idempotency_key=call.key,
                )
                for read in call.reads:
                    agent_run.tool_call(read["name"], read["arguments"], read["result"])
                try:
                    call.pending = await self._sdk(
                        agent_run.propose,
                        mapping.action,
                        call.action_params,
                        summary=_summary(mapping, call.action_params),
                    )
                except LadderUnavailable as exc:
                    return text_result(
                        f"NOT DONE YET: the gateway could not be reached ({exc}); call again "
                        "with the same arguments",
                        error=True,
                        meta={"workflow": workflow},
                    )
                except LadderError as exc:
                    return text_result(
                        f"NOT DONE: the gateway refused the proposal: {exc}",
                        error=True,
                        meta={"workflow": workflow},
                    )
                call.agent_run = agent_run
        pending, agent_run = call.pending, call.agent_run
        assert pending is not None and agent_run is not None
        meta = {"run_id": pending.id, "workflow": workflow}

        # Held while a person decides, at most hold_seconds.
        deadline = started + self.config.hold_seconds
        while pending.run.waiting:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return text_result(
                    f"NOT DONE YET: run {pending.id} is waiting for approval; call again "
                    "with the same arguments",
                    error=True,
                    meta={**meta, "status": pending.status},
                )
            if progress is not None:
                waited = time.monotonic() - started
                await progress(waited, f"run {pending.id} is waiting for approval")
            step = min(self.config.progress_seconds, remaining)
            try:
                await self._sdk(pending.wait, timeout=step, poll=step)
            except DecisionTimeout:
                pass
            except LadderUnavailable as exc:
                log.warning(
                    "run %s: the gateway did not answer (%s); still holding", pending.id, exc
                )
                await anyio.sleep(min(1.0, max(0.0, deadline - time.monotonic())))
        decision = pending._decision_of(pending.run)
        meta["status"] = pending.status
        if not decision.approved:
            word = "rejected" if decision.status == "rejected" else "denied"
            reason = decision.reason or f"run {pending.id} was {decision.status}"
            return text_result(f"NOT DONE: {word}: {reason}", error=True, meta=meta)
        if decision.action and decision.action != mapping.action:
            message = (
                f"NOT DONE: the reviewer chose action '{decision.action}', not "
                f"'{mapping.action}', the only one '{mapping.name}' performs; it was not "
                "carried out"
            )
            if pending.status not in FINISHED_STATUSES and pending.status != EXECUTING:
                # As the SDK's @gated does: the run is closed as failed, not left approved.
                with contextlib.suppress(LadderError):
                    await self._sdk(agent_run.report, error=message)
            return text_result(message, error=True, meta=meta)
        if self.executors.get((workflow, mapping.action or "")) == "server":
            # The gateway's own executor acts: never forwarded upstream.
            try:
                run = await self._sdk(
                    pending.wait_result, timeout=max(0.5, deadline - time.monotonic())
                )
            except DecisionTimeout:
                return text_result(
                    f"NOT DONE YET: run {pending.id} is approved and executing on the "
                    "server; call again with the same arguments",
                    error=True,
                    meta=meta,
                )
            meta["status"] = run.status
            return _server_result(run, {**meta, "executor": "server"})
        execution = self._executions.get(pending.id)
        if execution is None:
            execution = self._executions[pending.id] = _Execution()
            assert self._tg is not None
            self._tg.start_soon(self._execute, mapping, call, decision.params, execution)
        await execution.done.wait()
        assert execution.result is not None
        return execution.result

    async def _execute(self, mapping, call: _Call, final_params, execution: _Execution):
        """claim → upstream call → report, shielded: once started it finishes, whatever
        happens to the request that asked for it."""
        with anyio.CancelScope(shield=True):
            try:
                execution.result = await self._claim_execute_report(mapping, call, final_params)
            except Exception as exc:
                log.exception("run %s: execution failed", call.pending and call.pending.id)
                execution.result = text_result(
                    f"FAILED: {type(exc).__name__}: {exc}",
                    error=True,
                    meta={"run_id": call.pending.id if call.pending else None},
                )
            finally:
                execution.done.set()

    async def _claim_execute_report(self, mapping, call: _Call, final_params):
        pending, agent_run = call.pending, call.agent_run
        assert pending is not None and agent_run is not None and self.upstream is not None
        meta: dict[str, Any] = {"run_id": pending.id, "workflow": mapping.workflow}
        if pending.status in FINISHED_STATUSES or pending.status == EXECUTING:
            run = pending.run
            if pending.status == EXECUTING:
                run = await self._sdk(pending.wait_result, timeout=300)
            meta["status"] = run.status
            return _server_result(run, {**meta, "executed_earlier": True})
        try:
            await self._sdk(agent_run.claim)
        except Conflict as exc:
            if exc.code != "already_claimed":
                raise
            run = await self._sdk(pending.wait_result, timeout=300)
            meta["status"] = run.status
            return _server_result(run, {**meta, "executed_earlier": True})
        arguments = mapping.to_tool(final_params)
        proposed = mapping.to_tool(call.action_params)
        self.executed.append(mapping.name)
        try:
            result = await self.upstream.call_tool(mapping.name, arguments)
        except Exception as exc:
            await self._sdk(agent_run.report, error=exc)
            raise
        if result.is_error:
            await self._sdk(agent_run.report, error=_output_of(result) or "the tool failed")
        else:
            try:
                await self._sdk(agent_run.report, _output_of(result))
            except LadderError:
                log.exception("run %s: the action succeeded but its report failed", pending.id)
        meta["status"] = pending.run.status
        edits = {
            k: {"proposed": proposed.get(k), "final": arguments.get(k)}
            for k in sorted(set(proposed) | set(arguments))
            if proposed.get(k) != arguments.get(k)
        }
        content = list(result.content)
        if edits:
            meta["edited"] = edits
            words = "; ".join(
                f"{k}: {canonical(v['proposed'])} → {canonical(v['final'])}"
                for k, v in edits.items()
            )
            content.insert(
                0,
                types.TextContent(
                    text=f"NOTE: a reviewer changed the arguments before this ran ({words})."
                ),
            )
        merged = dict(result.meta or {})
        merged[META] = meta
        return types.CallToolResult(
            content=content,
            structured_content=result.structured_content,
            is_error=result.is_error,
            _meta=merged,
        )
