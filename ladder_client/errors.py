"""Everything the SDK raises derives from `LadderError`.

`LadderAPIError` carries the gateway's `{"error": {"code", "message"}}` body; one subclass
per status an agent can act on. `LadderUnavailable` means the gateway could not be reached
(or kept answering 502/503/504) after the retries ran out.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ladder_client.models import Decision


class LadderError(Exception):
    """Base of every error raised by `ladder_client`."""


class LadderAPIError(LadderError):
    """The gateway answered with an error status.

    `code` is the gateway's stable machine code (e.g. `rung_forbids_action`), `message`
    its human sentence, `details` any structured extra (e.g. per-field problems).
    """

    def __init__(self, status: int, code: str, message: str, details: Any = None) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.details = details


class InvalidRequest(LadderAPIError):
    """400 or 422: the request was malformed or its content refused (e.g. `invalid_params`)."""


class Unauthorized(LadderAPIError):
    """401: missing, unknown or revoked agent token."""


class Forbidden(LadderAPIError):
    """403: the token is not scoped to this workflow."""


class NotFound(LadderAPIError):
    """404: unknown workflow or run (or one outside the token's scope)."""


class Conflict(LadderAPIError):
    """409: e.g. `rung_forbids_action`, `idempotency_key_reused`, `already_reported`."""


class PayloadTooLarge(InvalidRequest):
    """413: the request body is over the gateway's size cap."""


_BY_STATUS: dict[int, type[LadderAPIError]] = {
    400: InvalidRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    413: PayloadTooLarge,
    422: InvalidRequest,
}


def api_error(status: int, code: str, message: str, details: Any = None) -> LadderAPIError:
    """The most specific `LadderAPIError` subclass for `status`."""
    return _BY_STATUS.get(status, LadderAPIError)(status, code, message, details)


class LadderUnavailable(LadderError):
    """The gateway could not be reached, timed out or answered 502/503/504, and the
    retries ran out (or the request was not safe to retry).

    `maybe_applied` is True when the last attempt may have reached the server, so the
    request may or may not have taken effect (only for requests that are not idempotent).
    """

    def __init__(self, message: str, *, attempts: int, maybe_applied: bool = False) -> None:
        super().__init__(message)
        self.attempts = attempts
        self.maybe_applied = maybe_applied


class DecisionTimeout(LadderError):
    """No decision within the time given to `PendingDecision.wait`. The run keeps
    waiting on the server: wait again, or resubmit with the same idempotency key later."""

    def __init__(self, run_id: str, timeout: float, status: str, *, stopped: str = "") -> None:
        why = f" (its workflow is stopped: {stopped})" if stopped else ""
        super().__init__(f"run {run_id} still {status} after {timeout:g}s{why}")
        self.stopped = stopped
        self.run_id = run_id
        self.timeout = timeout
        self.status = status


class ActionRejected(LadderError):
    """The proposed action was not approved (rejected by a reviewer, denied by the policy
    or by the review deadline), so it was not performed. `reason` is what the reviewer,
    the policy or the deadline said."""

    def __init__(self, reason: str, decision: Decision | None = None) -> None:
        super().__init__(reason or "the action was rejected")
        self.reason = reason
        self.decision = decision


class ActionChanged(ActionRejected):
    """The reviewer approved a different action than the one a gated function performs,
    so the function was not called."""


class ActionFailed(LadderError):
    """The action was executed and failed (reported by the server's executor, or by an
    earlier attempt of this agent). `error` is the recorded error text."""

    def __init__(self, error: str, *, run_id: str, result: dict | None = None) -> None:
        super().__init__(error or "the action failed")
        self.error = error
        self.run_id = run_id
        self.result = result
