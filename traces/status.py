"""A run's status, and the groups of statuses the code asks about, defined once.

Importable before Django's apps are loaded (no models here): the pure replay module and
the server's long-poll worker use it too. The SDK, which has no Django, keeps its own
copy of the groups (ladder_client/models.py); tests/traces/test_status.py holds the two
equal.
"""

from django.db import models


class RunStatus(models.TextChoices):
    RECEIVED = "received", "Received"
    RECORDED = "recorded", "Recorded"
    PENDING_REVIEW = "pending_review", "Waiting for review"
    APPROVED = "approved", "Approved"
    REJECTED = "rejected", "Rejected"
    EXECUTING = "executing", "Executing"
    EXECUTED = "executed", "Executed"
    FAILED = "failed", "Failed"
    DENIED = "denied", "Denied"
    ROLLED_BACK = "rolled_back", "Rolled back"


# A decision is still to come: an agent's `?wait=` poll waits while its run is in one.
WAITING_STATUSES = frozenset({RunStatus.RECEIVED, RunStatus.PENDING_REVIEW})
# A person or the policy decided: the trace must hold that decision (replay), and the
# context it was made on is closed to the agent. The rest (waiting, or only recorded)
# was decided by nobody.
DECIDED_STATUSES = frozenset(
    {
        RunStatus.APPROVED,
        RunStatus.REJECTED,
        RunStatus.EXECUTING,
        RunStatus.EXECUTED,
        RunStatus.FAILED,
        RunStatus.DENIED,
        RunStatus.ROLLED_BACK,
    }
)
# Reached only through an approved (or policy-allowed) action.
APPROVED_STATUSES = frozenset(
    {
        RunStatus.APPROVED,
        RunStatus.EXECUTING,
        RunStatus.EXECUTED,
        RunStatus.FAILED,
        RunStatus.ROLLED_BACK,
    }
)
# The action's execution is over, one way or the other: the trace must show it.
FINISHED_STATUSES = frozenset({RunStatus.EXECUTED, RunStatus.FAILED, RunStatus.ROLLED_BACK})
