"""Python SDK for the Autonomy Ladder gateway (httpx only; no Django inside).

    from ladder_client import LadderClient

    client = LadderClient("http://127.0.0.1:8000", token)
    with client.run("support-refund", input={"ticket": 42}) as run:
        run.tool_call("orders.lookup", {"order_id": "A-1"}, {"total": 30.0})
        decision = run.propose("refund.issue", {"order_id": "A-1", "amount": 30.0}).wait()

See README.md next to this file.
"""

from ladder_client._version import __version__
from ladder_client.client import LadderClient
from ladder_client.errors import (
    ActionChanged,
    ActionFailed,
    ActionRejected,
    Conflict,
    DecisionTimeout,
    Forbidden,
    InvalidRequest,
    LadderAPIError,
    LadderError,
    LadderUnavailable,
    NotFound,
    PayloadTooLarge,
    Unauthorized,
)
from ladder_client.gated import current_run
from ladder_client.models import Decision, EvalCase, EvalScore, RunInfo
from ladder_client.runs import AgentRun, PendingDecision

__all__ = [
    "ActionChanged",
    "ActionFailed",
    "ActionRejected",
    "AgentRun",
    "Conflict",
    "Decision",
    "DecisionTimeout",
    "EvalCase",
    "EvalScore",
    "Forbidden",
    "InvalidRequest",
    "LadderAPIError",
    "LadderClient",
    "LadderError",
    "LadderUnavailable",
    "NotFound",
    "PayloadTooLarge",
    "PendingDecision",
    "RunInfo",
    "Unauthorized",
    "__version__",
    "current_run",
]
