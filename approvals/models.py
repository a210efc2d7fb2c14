import json

from django.conf import settings
from django.db import models
from django.utils.functional import cached_property

from ladder.models import Certificate, GateSnapshot, Workflow
from ladder.rungs import Rung
from traces.models import Run


class Role(models.TextChoices):
    REVIEWER = "reviewer", "Reviewer"
    OWNER = "owner", "Owner"
    COMPLIANCE = "compliance", "Compliance"
    ADMIN = "admin", "Admin"


class RoleChange(models.Model):
    """One grant or revoke of a role on a workflow: who, whom, which role, when.

    Append-only (the database refuses UPDATE and DELETE, migration 0003): the four-eyes
    rules of promotion ask this table who held which role and who gave it to them.
    """

    class Change(models.TextChoices):
        GRANT = "grant", "granted"
        REVOKE = "revoke", "revoked"

    workflow = models.ForeignKey(Workflow, on_delete=models.PROTECT, related_name="+")
    person = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    role = models.CharField(max_length=12, choices=Role.choices)
    change = models.CharField(max_length=6, choices=Change.choices)
    # Null: the system (seed_demo, a management command), never a person in a browser.
    by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.PROTECT, related_name="+"
    )
    at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-at", "-id"]
        indexes = [models.Index(fields=["workflow", "-at", "-id"], name="rolechange_by_workflow")]

    def __str__(self) -> str:
        return f"{self.person_id} {self.get_change_display()} {self.role} on {self.workflow_id}"


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


class PromotionRequest(models.Model):
    """An owner's request to move a workflow up one rung, with the evidence it rests on
    frozen at the moment of asking: a compliance user who is not the requester decides
    it, once (approvals/services.py; docs/promotion.md)."""

    class State(models.TextChoices):
        OPEN = "open", "Open"
        APPROVED = "approved", "Approved"
        DECLINED = "declined", "Declined"
        WITHDRAWN = "withdrawn", "Withdrawn"

    workflow = models.ForeignKey(Workflow, on_delete=models.PROTECT, related_name="+")
    from_rung = models.PositiveSmallIntegerField(choices=Rung.choices)
    to_rung = models.PositiveSmallIntegerField(choices=Rung.choices)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    requested_at = models.DateTimeField(auto_now_add=True)
    note = models.TextField(blank=True)
    # The snapshot recomputed for the request, and a copy of its evidence as frozen: the
    # copy (and its hash) is what the decision and the certificate rest on.
    snapshot = models.ForeignKey(GateSnapshot, on_delete=models.PROTECT, related_name="+")
    # The evidence as canonical JSON text (traces.chain.canonical_json), byte for byte
    # what was hashed: a database JSON type may rewrite numbers (jsonb turns 1e+20 into
    # an integer), which would make intact evidence fail its own hash.
    evidence_canonical = models.TextField()
    # sha256 of evidence_canonical: anyone holding the JSON can recompute it.
    evidence_hash = models.CharField(max_length=64)
    state = models.CharField(max_length=10, choices=State.choices, default=State.OPEN)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    decided_at = models.DateTimeField(null=True, blank=True)
    decision_reason = models.TextField(blank=True)
    # The autonomy certificate an approval issued (docs/certificates.md).
    certificate = models.ForeignKey(
        Certificate, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )

    class Meta:
        ordering = ["-requested_at", "-id"]
        constraints = [
            # At most one open request per workflow, whoever asks and however fast.
            models.UniqueConstraint(
                fields=["workflow"],
                condition=models.Q(state="open"),
                name="promotion_one_open_per_workflow",
            ),
            models.CheckConstraint(
                condition=models.Q(to_rung=models.F("from_rung") + 1),
                name="promotion_one_rung",
            ),
        ]
        indexes = [models.Index(fields=["state", "-requested_at"], name="promotion_by_state")]

    def __str__(self) -> str:
        return f"promotion #{self.pk} of {self.workflow_id} L{self.from_rung}->L{self.to_rung}"

    @cached_property
    def evidence(self) -> dict:
        return json.loads(self.evidence_canonical)
