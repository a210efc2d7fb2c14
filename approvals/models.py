from django.conf import settings
from django.db import models

from traces.models import Run


class Review(models.Model):
    """A human decision on a run: who, when, verdict, what they saw, what they changed."""

    class Kind(models.TextChoices):
        DRAFT = "draft", "L1 draft review"
        PICK = "pick", "L2 pick"
        APPROVE = "approve", "L3 approval"

    class Verdict(models.TextChoices):
        SUBMITTED = "submitted", "Submitted"
        DISCARDED = "discarded", "Discarded"
        PICKED = "picked", "Picked"
        APPROVED = "approved", "Approved"
        REJECTED = "rejected", "Rejected"

    run = models.ForeignKey(Run, on_delete=models.PROTECT, related_name="reviews")
    reviewer = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    kind = models.CharField(max_length=10, choices=Kind.choices)
    verdict = models.CharField(max_length=10, choices=Verdict.choices)
    seen_hash = models.CharField(max_length=64)
    # The action as decided: {"action", "params", "artifact"}.
    submitted = models.JSONField(null=True, blank=True)
    diff = models.TextField(blank=True)
    edit_distance = models.FloatField(null=True, blank=True)
    light_edit = models.BooleanField(null=True)
    matched = models.BooleanField(null=True)
    # Index of the picked option (0 = the agent's first recommendation); null = own action.
    chosen_option = models.SmallIntegerField(null=True, blank=True)
    reason = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            # The database's own guarantee behind "exactly one decision per run".
            models.UniqueConstraint(fields=["run"], name="review_one_decision_per_run")
        ]

    def __str__(self) -> str:
        return f"{self.get_verdict_display()} {self.run_id}"
