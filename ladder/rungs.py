"""The rungs of the ladder and the vocabulary around them (DESIGN.md)."""

from django.db import models


class Rung(models.IntegerChoices):
    L0 = 0, "L0 Assistant"
    L1 = 1, "L1 Draft + approval"
    L2 = 2, "L2 Recommend"
    L3 = 3, "L3 Execute with approval"
    L4 = 4, "L4 Execute under policy"
    L5 = 5, "L5 Autonomous"

    @property
    def short(self) -> str:
        return f"L{self.value}"


class RiskClass(models.TextChoices):
    LOW = "low", "Low"
    CONSEQUENTIAL = "consequential", "Consequential"


class Queue(models.TextChoices):
    """Where a person decides a run: what ladder.decide routes a proposal to for review."""

    L1 = "l1", "L1 draft"
    L2 = "l2", "L2 pick"
    L3 = "l3", "L3 approve"
    ESCALATED = "escalated", "Escalated"
    AUDIT = "audit", "Audit sample"


class Executor(models.TextChoices):
    AGENT = "agent", "Agent reports the result"
    SERVER = "server", "Registered callable run by a worker"


class OutcomeDirection(models.TextChoices):
    """Which way a workflow's business metric should move."""

    UP = "up", "Higher is better"
    DOWN = "down", "Lower is better"


class DeadlineAction(models.TextChoices):
    """What happens to a run nobody decided in time (Workflow.review_deadline_seconds)."""

    DENY = "deny", "Deny it"
    ESCALATE = "escalate", "Escalate it, then deny at the next deadline"


# How long an owner may let a run wait for a person (the settings page and its service):
# long enough to be read, never so long that an agent is as good as left waiting forever.
REVIEW_DEADLINE_MIN_SECONDS = 60
REVIEW_DEADLINE_MAX_SECONDS = 30 * 86400


class PolicyOutcome(models.TextChoices):
    ALLOW = "allow", "Allowed"
    ESCALATE = "escalate", "Escalated"
    DENY = "deny", "Denied"


class AuditState(models.TextChoices):
    """An allowed run sampled for a human audit (ladder.policy.audit_sampled)."""

    NONE = "", "Not sampled"
    DUE = "due", "Waiting for audit"
    CORRECT = "correct", "Audited: correct"
    WRONG = "wrong", "Audited: wrong"
