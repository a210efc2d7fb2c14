"""One domain error base; each subclass carries a stable code and an HTTP status.

The API maps these to `{"error": {"code", "message"}}` and the UI to messages, in one
place each.
"""


class LadderError(Exception):
    code = "error"
    status = 400

    def __init__(self, message: str, *, code: str | None = None, details: dict | None = None):
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.details = details or {}


class BadRequest(LadderError):
    code = "bad_request"
    status = 400


class Unauthorized(LadderError):
    code = "unauthorized"
    status = 401


class Forbidden(LadderError):
    code = "forbidden"
    status = 403


class NotFound(LadderError):
    code = "not_found"
    status = 404


class Conflict(LadderError):
    code = "conflict"
    status = 409


class PayloadTooLarge(LadderError):
    code = "payload_too_large"
    status = 413


class Unprocessable(LadderError):
    code = "unprocessable"
    status = 422


class TooManyRequests(LadderError):
    """429: the API adds `Retry-After` (whole seconds, rounded up) from `retry_after`."""

    code = "rate_limited"
    status = 429

    def __init__(self, message: str, *, retry_after: float, **kwargs):
        super().__init__(message, **kwargs)
        self.retry_after = retry_after
