"""`LadderClient`: the gateway's HTTP contract (DESIGN.md, "The agent contract") over httpx.

Retry rules, in one place (`LadderClient._send`):

- Connection errors, timeouts and 502/503/504 answers are retried with exponential
  backoff, up to `retries` times, for requests that are safe to repeat: reads, run
  submissions (the same body and idempotency key is sent on every attempt, so the gateway
  answers a repeat with the run it already stored) and results (the gateway accepts an
  identical report twice and changes nothing).
- Requests that would append twice if repeated (events, outcomes, metric points) are
  retried only when they cannot have reached the gateway: the connection was never made,
  or the gateway said 503 (unless its error says `"details": {"maybe_applied": true}`:
  the database connection was lost after the request may have written). Otherwise
  `LadderUnavailable(maybe_applied=True)` is raised.
- A 503 `database_unavailable` (PostgreSQL down or restarting) carries a Retry-After of
  a second or two: a submission keeps its idempotency key through every retry, so a run
  the gateway stored just before the connection was lost comes back as the same run.
- 429 (the token's request rate or open waits, refused before anything is done) is
  retried for every request, after the gateway's Retry-After.
"""

from __future__ import annotations

import contextlib
import logging
import random
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import httpx

from ladder_client._json import dumps, jsonable
from ladder_client._version import __version__
from ladder_client.errors import LadderAPIError, LadderUnavailable, api_error
from ladder_client.models import EvalCase, EvalScore, RunInfo

if TYPE_CHECKING:
    from ladder_client.runs import AgentRun

log = logging.getLogger("ladder_client")

RETRY_STATUSES = frozenset({429, 502, 503, 504})
# Answers that say the request was refused before it did anything: safe to repeat any.
NOT_APPLIED_STATUSES = frozenset({429, 503})
# The request cannot have reached the server: safe to retry anything.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
_MAX_ERROR_TEXT = 10_000  # the gateway's cap on a result's error text
_MAX_RETRY_AFTER = 30.0


def _says_maybe_applied(response: httpx.Response) -> bool:
    """A refusal whose error body says the request may have been applied all the same."""
    try:
        details = response.json()["error"]["details"]
    except (ValueError, KeyError, TypeError):
        return False
    return isinstance(details, dict) and details.get("maybe_applied") is True


def error_text(error: BaseException | str) -> str:
    """`"ValueError: message"` for an exception, the string itself otherwise (capped)."""
    text = f"{type(error).__name__}: {error}" if isinstance(error, BaseException) else str(error)
    return text[:_MAX_ERROR_TEXT]


class LadderClient:
    """A client for one agent token.

    >>> with LadderClient("http://127.0.0.1:8000", token) as client:
    ...     info = client.get_run(run_id)

    `base_url` is the server's root (`/api/v1` is appended unless already there).
    `timeout` is per attempt, in seconds (a long poll adds its wait to the read timeout).
    `retries` is how many times a failed attempt is repeated; the pause before repeat n is
    `backoff * 2**(n-1)` seconds (plus a little jitter, or the server's Retry-After). The
    default 6 outlasts about 13 s of an unreachable gateway or database (with the
    gateway's 1 s Retry-After: 1, 1, 1, 1.6, 3.2 and 6.4 s), a PostgreSQL restart.
    `transport` is handed to `httpx.Client` (tests use it to inject failures).
    """

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        timeout: float = 10.0,
        retries: int = 6,
        backoff: float = 0.2,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if not token:
            raise ValueError("an agent token is required (manage.py create_agent_token)")
        if retries < 0:
            raise ValueError("retries must be >= 0")
        root = base_url.rstrip("/")
        if not root.endswith("/api/v1"):
            root += "/api/v1"
        self.base_url = root
        self.timeout = float(timeout)
        self.retries = int(retries)
        self.backoff = float(backoff)
        self._sleep: Callable[[float], None] = time.sleep
        self._eval_pass: str | None = None
        self._http = httpx.Client(
            base_url=root + "/",
            headers={
                "Authorization": f"Bearer {token}",
                "Accept": "application/json",
                "User-Agent": f"ladder-client/{__version__} httpx/{httpx.__version__}",
            },
            timeout=self.timeout,
            transport=transport,
        )

    def __repr__(self) -> str:
        return f"LadderClient({self.base_url!r})"

    # -- lifecycle ----------------------------------------------------------------------

    def close(self) -> None:
        """Close the underlying connection pool."""
        self._http.close()

    def __enter__(self) -> LadderClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- transport ----------------------------------------------------------------------

    def _pause(self, attempt: int, response: httpx.Response | None) -> None:
        delay = self.backoff * (2 ** (attempt - 1)) * (1 + random.random() * 0.1)
        if response is not None:
            retry_after = response.headers.get("Retry-After", "")
            with contextlib.suppress(ValueError):
                delay = max(delay, min(float(retry_after), _MAX_RETRY_AFTER))
        if delay > 0:
            self._sleep(delay)

    def _send(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        params: Mapping[str, Any] | None = None,
        idempotent: bool,
        timeout: httpx.Timeout | float | None = None,
    ) -> httpx.Response:
        """One logical request, retried by the rules in the module docstring. The body is
        serialized once, so every attempt sends the very same bytes."""
        content = None if body is None else dumps(body).encode("utf-8")
        headers = {"Content-Type": "application/json"} if content is not None else None
        attempts = self.retries + 1
        what = f"{method} {self.base_url}/{path}"
        for attempt in range(1, attempts + 1):
            try:
                response = self._http.request(
                    method,
                    path,
                    content=content,
                    params=params,
                    headers=headers,
                    timeout=timeout if timeout is not None else self.timeout,
                )
            except httpx.TransportError as exc:
                reached = not isinstance(exc, _NOT_SENT)
                problem = f"{type(exc).__name__}: {exc}"
                if reached and not idempotent:
                    raise LadderUnavailable(
                        f"{what}: {problem}; the request may or may not have been applied, "
                        "and repeating it could apply it twice",
                        attempts=attempt,
                        maybe_applied=True,
                    ) from exc
                if attempt == attempts:
                    raise LadderUnavailable(
                        f"{what}: {problem} (after {attempts} attempts)", attempts=attempt
                    ) from exc
                log.warning("%s: %s; retrying (%d/%d)", what, problem, attempt, self.retries)
                self._pause(attempt, None)
                continue
            status = response.status_code
            if status not in RETRY_STATUSES:
                return response
            response.close()
            if not idempotent and (
                status not in NOT_APPLIED_STATUSES or _says_maybe_applied(response)
            ):
                raise LadderUnavailable(
                    f"{what}: HTTP {status}; the request may or may not have been applied",
                    attempts=attempt,
                    maybe_applied=True,
                )
            if attempt == attempts:
                raise LadderUnavailable(
                    f"{what}: HTTP {status} (after {attempts} attempts)", attempts=attempt
                )
            log.warning("%s: HTTP %d; retrying (%d/%d)", what, status, attempt, self.retries)
            self._pause(attempt, response)
        raise AssertionError("unreachable")  # pragma: no cover

    @staticmethod
    def _json(response: httpx.Response) -> Any:
        """The body of a 2xx answer, or the matching `LadderAPIError`."""
        try:
            data = response.json()
        except ValueError:
            data = None
        if response.is_success:
            if data is None:
                raise LadderAPIError(
                    response.status_code, "invalid_response", "the gateway sent no JSON body"
                )
            return data
        error = data.get("error") if isinstance(data, dict) else None
        if isinstance(error, dict):
            raise api_error(
                response.status_code,
                str(error.get("code") or "error"),
                str(error.get("message") or response.reason_phrase),
                error.get("details"),
            )
        text = response.text.strip()[:300] or response.reason_phrase
        raise api_error(response.status_code, f"http_{response.status_code}", text)

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        return self._json(self._send(method, path, **kwargs))

    # -- the contract -------------------------------------------------------------------

    def submit_run(
        self,
        workflow: str,
        *,
        idempotency_key: str,
        input: Any,
        tool_calls: Iterable[Mapping[str, Any]] | None = None,
        output: Any = None,
        proposal: Mapping[str, Any] | None = None,
    ) -> RunInfo:
        """`POST /runs`: submit one whole run.

        `proposal` is `{action, params, alternatives?, artifact?, flags?, summary?}`. Safe
        to repeat: the same idempotency key and body return the stored run (`created` is
        False) and store nothing; the same key with another body raises `Conflict`
        (`idempotency_key_reused`).
        """
        if not idempotency_key:
            raise ValueError("idempotency_key is required")
        body: dict[str, Any] = {
            "workflow": workflow,
            "idempotency_key": str(idempotency_key),
            "input": input,
        }
        if tool_calls is not None:
            body["tool_calls"] = list(tool_calls)
        if output is not None:
            body["output"] = output
        if proposal is not None:
            body["proposal"] = dict(proposal)
        response = self._send("POST", "runs", body=body, idempotent=True)
        return RunInfo.from_json(self._json(response), created=response.status_code == 201)

    def get_run(self, run_id: str, *, wait: float = 0) -> RunInfo:
        """`GET /runs/{id}`: status and decision. With `wait` > 0 the gateway holds the
        request up to that many seconds (it caps it, 30 s by default) until a decision."""
        wait = max(0.0, float(wait))
        params = {"wait": f"{wait:g}"} if wait else None
        timeout = httpx.Timeout(self.timeout, read=self.timeout + wait)
        data = self._call(
            "GET", f"runs/{_seg(run_id)}", params=params, idempotent=True, timeout=timeout
        )
        return RunInfo.from_json(data)

    def append_events(self, run_id: str, events: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
        """`POST /runs/{id}/events`: append `{type, …}` events (agents may send `input`,
        `tool_call` and `output`). Returns `{appended, trace: {events, head}}`."""
        items = [dict(e) for e in events]
        if not items:
            raise ValueError("no events to append")
        return self._call(
            "POST", f"runs/{_seg(run_id)}/events", body={"events": items}, idempotent=False
        )

    def claim(self, run_id: str) -> RunInfo:
        """`POST /runs/{id}/claim`: take an approved action before doing it. Exactly one
        claim succeeds; a second raises `Conflict` with code `already_claimed`."""
        data = self._call("POST", f"runs/{_seg(run_id)}/claim", body={}, idempotent=False)
        return RunInfo.from_json(data)

    def report_result(
        self,
        run_id: str,
        *,
        succeeded: bool,
        output: Any = None,
        error: BaseException | str | None = None,
    ) -> RunInfo:
        """`POST /runs/{id}/result`: how the approved action went (agent executors only).
        An exception as `error` is sent as `"Type: message"`."""
        body: dict[str, Any] = {"status": "succeeded" if succeeded else "failed"}
        if output is not None:
            body["output"] = output
        if error is not None:
            body["error"] = error_text(error)
        data = self._call("POST", f"runs/{_seg(run_id)}/result", body=body, idempotent=True)
        return RunInfo.from_json(data)

    def record_outcome(self, run_id: str, *, label: str, source: str, note: str = "") -> RunInfo:
        """`POST /runs/{id}/outcome`: label how the run turned out (`correct` or `wrong`)."""
        if label not in ("correct", "wrong"):
            raise ValueError("label must be 'correct' or 'wrong'")
        body = {"label": label, "source": source, "note": note}
        data = self._call("POST", f"runs/{_seg(run_id)}/outcome", body=body, idempotent=False)
        return RunInfo.from_json(data)

    def replay(self, run_id: str) -> dict[str, Any]:
        """`GET /runs/{id}/replay`: the run rebuilt from its trace alone
        (`{complete, verified, steps, …}`)."""
        return self._call("GET", f"runs/{_seg(run_id)}/replay", idempotent=True)

    def workflow(self, slug: str) -> dict[str, Any]:
        """`GET /workflows/{slug}`: rung, action types (with their executor), policy and
        the latest gate snapshot."""
        return self._call("GET", f"workflows/{_seg(slug)}", idempotent=True)

    def eval_cases(self, slug: str, *, page_size: int = 100) -> Iterator[EvalCase]:
        """`GET /workflows/{slug}/eval-cases`: yield every active eval case of the
        workflow, oldest first, following the cursor page by page."""
        after: str | None = "0"
        while after is not None:
            data = self._call(
                "GET",
                f"workflows/{_seg(slug)}/eval-cases",
                params={"after": after, "limit": page_size},
                idempotent=True,
            )
            for item in data.get("cases") or []:
                yield EvalCase.from_json(item, workflow=slug)
            after = data.get("next")

    @property
    def eval_pass(self) -> str:
        """The pass label `submit_eval` uses when given none: made at this client's first
        eval submission (UTC time, to the second) and kept, so a retried or resumed pass
        stays one pass; a new client starts a new pass."""
        if self._eval_pass is None:
            self._eval_pass = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return self._eval_pass

    def submit_eval(
        self,
        workflow: str,
        case: int | EvalCase,
        *,
        action: str,
        params: Mapping[str, Any] | None = None,
        eval_pass: str | None = None,
        input: Any = None,
    ) -> EvalScore:
        """`POST /runs` with `eval_case`: score a proposal for one eval case. Nothing is
        queued or executed. Safe to repeat: the same answer in the same pass returns the
        stored score (`created` False); a different answer raises `Conflict`
        (`eval_already_answered`): start another pass (`eval_pass=`) instead."""
        case_id = case.id if isinstance(case, EvalCase) else int(case)
        label = eval_pass or self.eval_pass
        body: dict[str, Any] = {
            "workflow": workflow,
            # The (case, pass) pair is what makes an eval submission idempotent; the
            # key is only there because every POST /runs body carries one.
            "idempotency_key": f"eval-{case_id}-{label}"[:200],
            "input": input,
            "proposal": {"action": action, "params": dict(params or {})},
            "eval_case": case_id,
            "eval_pass": label,
        }
        response = self._send("POST", "runs", body=body, idempotent=True)
        return EvalScore.from_json(self._json(response), created=response.status_code == 201)

    def post_metrics(
        self, slug: str, points: Iterable[Mapping[str, Any] | tuple[Any, ...]]
    ) -> dict[str, Any]:
        """`POST /workflows/{slug}/metrics`: business outcome points.

        Each point is `{metric, value, at?}` or a tuple `(metric, value[, at])`; `at`
        defaults to now (UTC). Returns `{stored: n}`.
        """
        now = datetime.now(UTC)
        items = []
        for point in points:
            if isinstance(point, tuple):
                metric, value, *rest = point
                point = {"metric": metric, "value": value, "at": rest[0] if rest else now}
            item = dict(point)
            item.setdefault("at", now)
            items.append(jsonable(item))
        if not items:
            raise ValueError("no metric points to post")
        return self._call(
            "POST", f"workflows/{_seg(slug)}/metrics", body={"points": items}, idempotent=False
        )

    # -- the agent's API ----------------------------------------------------------------

    def run(
        self, workflow: str, *, input: Any = None, idempotency_key: str | None = None
    ) -> AgentRun:
        """A run to record and submit, as a context manager:

        >>> with client.run("support-refund", input={"ticket": 42}) as run:
        ...     order = run.tool_call("orders.lookup", {"id": "A-1"}, {"total": 30})
        ...     decision = run.propose("refund.issue", {...}).wait()

        See `ladder_client.runs.AgentRun`. Without `idempotency_key` a uuid4 is used.
        """
        from ladder_client.runs import AgentRun

        return AgentRun(self, workflow, input=input, idempotency_key=idempotency_key)

    def gated(
        self,
        workflow: str,
        action: str,
        *,
        summary: str | Callable[[dict[str, Any]], str] | None = None,
        flags: list[str] | None = None,
        timeout: float = 300.0,
        poll: float = 25.0,
    ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Decorate a function that performs `action` so it only runs once approved.

        See `ladder_client.gated.gated`.
        """
        from ladder_client.gated import gated

        return gated(
            self, workflow, action, summary=summary, flags=flags, timeout=timeout, poll=poll
        )

    def action_executor(self, workflow: str, action: str) -> str | None:
        """Who executes `action` in `workflow`: `"agent"`, `"server"`, or None if unknown."""
        for item in self.workflow(workflow).get("action_types") or []:
            if item.get("name") == action:
                return item.get("executor")
        return None

    @staticmethod
    def new_idempotency_key() -> str:
        """A fresh random idempotency key."""
        return str(uuid.uuid4())


def _seg(value: str) -> str:
    return quote(str(value), safe="")
