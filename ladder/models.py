import json
import uuid

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator
from django.db import models

from ladder import breaker, drift
from ladder.certificates import certificate_file
from ladder.gates import ThresholdError, thresholds_validate
from ladder.rungs import DeadlineAction, Executor, OutcomeDirection, RiskClass, Rung

slug_validator = RegexValidator(r"^[a-z0-9][a-z0-9-]*$", "lowercase letters, digits and dashes")
action_name_validator = RegexValidator(
    r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$", "dotted lowercase name such as refund.issue"
)


def linkage_domain(*, workflow_id: int, group: str) -> str:
    """The pseudonym linkage domain of a workflow (see Workflow.linkage_group)."""
    return f"group:{group}" if group else f"workflow:{workflow_id}"


class Workflow(models.Model):
    """The unit of autonomy: every run belongs to one, and its rung decides what happens."""

    slug = models.SlugField(max_length=80, unique=True, validators=[slug_validator])
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    rung = models.PositiveSmallIntegerField(choices=Rung.choices, default=Rung.L1)
    max_rung = models.PositiveSmallIntegerField(choices=Rung.choices, default=Rung.L4)
    risk_class = models.CharField(max_length=20, choices=RiskClass.choices, default=RiskClass.LOW)
    # Keys anywhere in a payload whose values are personal data (names, addresses...):
    # the gateway pseudonymises them whatever they contain.
    personal_fields = models.JSONField(default=list, blank=True)
    # Where pseudonyms link: the same person gets the same pseudonym only within one
    # linkage domain, keyed by its own HMAC key derived from LADDER_PSEUDONYM_KEY. Blank:
    # this workflow alone (by its id, so a renamed slug keeps its links). Workflows that
    # name the same group share one key, so their evidence about a person links.
    linkage_group = models.CharField(
        max_length=80, blank=True, default="", db_default="", validators=[slug_validator]
    )
    # Per-workflow bars, only ever tighter than ladder.gates' defaults:
    # {"4": {"approval_rate": 0.97}} (ladder.gates.thresholds_validate).
    gate_thresholds = models.JSONField(default=dict, blank=True)
    # The gate snapshot's window: runs decided in the last N days (docs/gates.md).
    gate_window_days = models.PositiveSmallIntegerField(default=90, db_default=90)
    # The business metric the outcome gate reads (points from POST .../metrics), which
    # way is better, and the baseline: its mean over the N days before the current rung
    # began, against its mean over the window since.
    outcome_metric = models.CharField(max_length=100, blank=True, default="", db_default="")
    outcome_direction = models.CharField(
        max_length=4, choices=OutcomeDirection.choices, default="up", db_default="up"
    )
    outcome_baseline_days = models.PositiveSmallIntegerField(default=30, db_default=30)
    # How long an L4/L5 autonomy certificate stays valid (docs/certificates.md).
    certificate_valid_days = models.PositiveSmallIntegerField(default=90, db_default=90)
    # Attention probes: the share of L3 review work that is a known-wrong eval case
    # (0 = none; docs/evals.md).
    probe_rate = models.FloatField(default=0.0, db_default=0.0)
    # The breaker's bounds, over the defaults in ladder.breaker (docs/breaker.md):
    # {"window_runs": 50, "failure_rate_max": 0.05, ...}; validated by bounds_validate.
    breaker_bounds = models.JSONField(default=dict, blank=True)
    # Drift thresholds for L4/L5, over the defaults in ladder.drift (docs/drift.md).
    drift_bounds = models.JSONField(default=dict, blank=True)
    # The stop button (docs/breaker.md): while stopped_at is set no proposal executes,
    # whatever the rung, and new runs wait. Changing it bumps rules_version (trigger),
    # so every gateway process sees it on its very next run.
    stopped_at = models.DateTimeField(null=True, blank=True)
    stopped_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    stop_reason = models.CharField(max_length=300, blank=True, default="", db_default="")
    # How long a run may wait for a person, and what happens then (docs/deadlines.md).
    # Never unbounded: an agent is never left waiting forever.
    review_deadline_seconds = models.PositiveIntegerField(default=72 * 3600, db_default=72 * 3600)
    deadline_action = models.CharField(
        max_length=10,
        choices=DeadlineAction.choices,
        default=DeadlineAction.DENY,
        db_default=DeadlineAction.DENY,
    )
    # Bumped by database triggers on every change to this row or to its action types
    # (migration 0002; the tables are listed in ladder/rules.py), whoever writes it. The
    # gateway keeps the rules in memory and its insert re-checks this number, so a change
    # applies to the very next run.
    rules_version = models.PositiveBigIntegerField(default=1, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["slug"]
        permissions = [
            ("review_workflow", "Decide review queue items of this workflow"),
            ("own_workflow", "Configure this workflow, request promotion, run drills"),
            ("comply_workflow", "Read all history of this workflow, decide promotions"),
        ]

    def __str__(self) -> str:
        return self.slug

    def clean(self) -> None:
        """The admin's check: gate bars may only tighten, and a consequential workflow
        tops out at L4 unless an admin raises its max rung on purpose."""
        try:
            thresholds_validate(risk_class=self.risk_class, overrides=self.gate_thresholds)
        except ThresholdError as exc:
            raise ValidationError({"gate_thresholds": str(exc)}) from exc
        try:
            breaker.bounds_validate(self.breaker_bounds)
        except breaker.BoundsError as exc:
            raise ValidationError({"breaker_bounds": str(exc)}) from exc
        try:
            drift.drift_bounds_validate(self.drift_bounds)
        except drift.DriftBoundsError as exc:
            raise ValidationError({"drift_bounds": str(exc)}) from exc
        if self.rung > self.max_rung:
            raise ValidationError({"rung": f"above the max rung L{self.max_rung}"})

    @property
    def rung_label(self) -> str:
        return f"L{self.rung}"

    @property
    def linkage_domain(self) -> str:
        return linkage_domain(workflow_id=self.pk, group=self.linkage_group)


class ActionType(models.Model):
    """What an agent may propose in a workflow, e.g. `refund.issue`."""

    workflow = models.ForeignKey(Workflow, on_delete=models.CASCADE, related_name="action_types")
    name = models.CharField(max_length=100, validators=[action_name_validator])
    description = models.CharField(max_length=300, blank=True)
    # A small JSON-schema-like description: {"amount": {"type": "number", "required": true}}.
    param_schema = models.JSONField(default=dict, blank=True)
    value_param = models.CharField(max_length=100, blank=True)
    currency_param = models.CharField(max_length=100, blank=True)
    reversible = models.BooleanField(default=False)
    executor = models.CharField(max_length=10, choices=Executor.choices, default=Executor.AGENT)
    # Dotted path of the callable a `server` executor runs (registered in traces.executors).
    executor_path = models.CharField(max_length=200, blank=True)
    compensating_action = models.CharField(max_length=100, blank=True)

    class Meta:
        ordering = ["workflow", "name"]
        constraints = [
            models.UniqueConstraint(fields=["workflow", "name"], name="action_type_unique_name")
        ]

    def __str__(self) -> str:
        return f"{self.workflow.slug}:{self.name}"


class RungChange(models.Model):
    """Every promotion and demotion, forever."""

    class Kind(models.TextChoices):
        INITIAL = "initial", "Initial rung"
        PROMOTION = "promotion", "Promotion"
        DEMOTION = "demotion", "Demotion"
        # The stop button: the rung stays (from_rung == to_rung), nothing executes.
        STOP = "stop", "Stopped"
        RESUME = "resume", "Resumed"

    workflow = models.ForeignKey(Workflow, on_delete=models.PROTECT, related_name="rung_changes")
    kind = models.CharField(max_length=20, choices=Kind.choices)
    from_rung = models.PositiveSmallIntegerField(choices=Rung.choices, null=True)
    to_rung = models.PositiveSmallIntegerField(choices=Rung.choices)
    reason = models.TextField()
    evidence = models.JSONField(default=dict, blank=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.workflow_id}: {self.kind} to L{self.to_rung}"


class PolicyVersion(models.Model):
    """One version of a workflow's policy envelope (docs/policy.md). Append-only: every
    change is a new number, and each run decided by a policy records the number.

    The workflow's newest version is its policy: in force at L4/L5, a draft evaluated in
    shadow (decides nothing) at L2/L3. A database trigger bumps the workflow's
    `rules_version` on insert (ladder/rules.py), so the gateway's next run uses it.
    """

    workflow = models.ForeignKey(Workflow, on_delete=models.PROTECT, related_name="policy_versions")
    number = models.PositiveIntegerField()
    # The normalised document (ladder.policy.policy_document), validated when saved.
    document = models.JSONField()
    note = models.CharField(max_length=300, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["workflow", "-number"]
        constraints = [
            models.UniqueConstraint(fields=["workflow", "number"], name="policy_version_unique")
        ]

    def __str__(self) -> str:
        return f"{self.workflow_id} policy v{self.number}"


class GateSnapshot(models.Model):
    """The gates of one workflow over one window, computed from its runs
    (traces/gates.py; docs/gates.md). Kept forever, append-only: a promotion request
    freezes one, and the history draws its charts from them."""

    class Trigger(models.TextChoices):
        NIGHTLY = "nightly", "Nightly recompute"
        ON_DEMAND = "on_demand", "Recomputed on demand"
        COMMAND = "command", "manage.py recompute_gates"

    workflow = models.ForeignKey(
        Workflow, on_delete=models.PROTECT, related_name="+", db_index=False
    )
    computed_at = models.DateTimeField()
    rung = models.PositiveSmallIntegerField(choices=Rung.choices)
    # None at L5: nothing to climb to.
    target_rung = models.PositiveSmallIntegerField(choices=Rung.choices, null=True)
    window_days = models.PositiveSmallIntegerField()
    window_start = models.DateTimeField()
    window_end = models.DateTimeField()
    eligible = models.BooleanField()
    # Why not eligible, one sentence per unmet gate.
    reasons = models.JSONField(default=list)
    # The counts the gates were computed from (ladder.gates.Tallies as JSON).
    tallies = models.JSONField()
    # [{name, label, value, n, lower, upper, bar, verdict, sentence, required}, ...]
    gates = models.JSONField()
    trigger = models.CharField(max_length=10, choices=Trigger.choices)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )

    class Meta:
        ordering = ["workflow", "-computed_at", "-id"]
        indexes = [
            models.Index(fields=["workflow", "-computed_at", "-id"], name="gatesnapshot_latest_idx")
        ]

    def __str__(self) -> str:
        return f"gates of {self.workflow_id} at {self.computed_at:%Y-%m-%d %H:%M}"

    def as_json(self) -> dict:
        """The API's `gate_snapshot` (DESIGN.md "Gate metrics")."""
        return {
            "computed_at": self.computed_at.isoformat(),
            "window": {
                "days": self.window_days,
                "start": self.window_start.isoformat(),
                "end": self.window_end.isoformat(),
            },
            "rung": self.rung,
            "target_rung": self.target_rung,
            "eligible": self.eligible,
            "reasons": list(self.reasons),
            "gates": [
                {
                    key: gate.get(key)
                    for key in (
                        "name",
                        "label",
                        "value",
                        "n",
                        "lower",
                        "upper",
                        "bar",
                        "verdict",
                        "sentence",
                        "required",
                    )
                }
                for gate in self.gates
            ],
        }


class Certificate(models.Model):
    """A signed autonomy certificate (ladder/certificates.py; docs/certificates.md): the
    workflow may stand on `rung` until `valid_until` (None below L4: no expiry).

    Append-only: database triggers refuse UPDATE and DELETE, and an INSERT bumps the
    workflow's `rules_version` (ladder/rules.py): the gateway handles L4/L5 runs only
    under a valid certificate and keeps the newest expiry in its memo.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    workflow = models.ForeignKey(
        Workflow, on_delete=models.PROTECT, related_name="certificates", db_index=False
    )
    rung = models.PositiveSmallIntegerField(choices=Rung.choices)
    # The number of the workflow's policy version in force (None: no policy).
    policy_version = models.PositiveIntegerField(null=True, blank=True)
    # sha256 hex of the frozen evidence (a promotion request's snapshot).
    evidence_hash = models.CharField(max_length=64)
    # None: issued by the system (seed_demo, a command). The name is kept as signed.
    approved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    approved_by_name = models.CharField(max_length=150, blank=True)
    # What led to it (a promotion request's reference), as signed.
    promotion_ref = models.CharField(max_length=200, blank=True)
    issued_at = models.DateTimeField()
    valid_until = models.DateTimeField(null=True, blank=True)
    # Fingerprint of the public key that verifies it (ladder.certificates.key_id).
    key_id = models.CharField(max_length=64)
    # The signed certificate object in canonical JSON, byte for byte what was signed.
    document = models.TextField()
    signature = models.TextField()

    class Meta:
        ordering = ["workflow", "-issued_at"]
        indexes = [
            models.Index(fields=["workflow", "rung", "valid_until"], name="certificate_cover_idx")
        ]

    def __str__(self) -> str:
        return f"{self.workflow_id} L{self.rung} certificate {self.id}"

    def valid_at(self, at) -> bool:
        return self.issued_at <= at and (self.valid_until is None or at < self.valid_until)

    def as_file(self) -> dict:
        """The certificate file: `{"certificate", "signature", "key_id", "algorithm"}`."""
        return certificate_file(payload=json.loads(self.document), signature=self.signature)


class Alert(models.Model):
    """Something a workflow's people must know about: a demotion, a stop or resume, a
    drift alert, a failed rollback drill (ladder/notify.py). Shown on the workflow page
    and mailed to its owners (and, for stops, to compliance). Kept forever."""

    class Kind(models.TextChoices):
        DEMOTION = "demotion", "Demotion"
        STOP = "stop", "Stopped"
        RESUME = "resume", "Resumed"
        DRIFT = "drift", "Drift alert"
        DRILL_FAILED = "drill_failed", "Rollback drill failed"

    workflow = models.ForeignKey(Workflow, on_delete=models.PROTECT, related_name="alerts")
    kind = models.CharField(max_length=20, choices=Kind.choices)
    subject = models.CharField(max_length=200)
    body = models.TextField()
    # What it rests on (the numbers that tripped a breaker, a drift check's figures...).
    evidence = models.JSONField(default=dict, blank=True)
    # Who was mailed: usernames and addresses as they were when it was sent.
    recipients = models.JSONField(default=list, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["workflow", "-created_at", "-id"]
        indexes = [models.Index(fields=["workflow", "-created_at"], name="alert_recent_idx")]

    def __str__(self) -> str:
        return f"{self.workflow_id}: {self.kind} {self.subject}"


class DriftCheck(models.Model):
    """One drift check of an L4/L5 workflow: a recent window of its runs against a
    baseline window (ladder/drift.py; docs/drift.md). Kept forever, append-only, like gate
    snapshots: a breach it raised must stay explainable by the figures it stored."""

    class Trigger(models.TextChoices):
        NIGHTLY = "nightly", "Nightly check"
        ON_DEMAND = "on_demand", "Checked on demand"
        COMMAND = "command", "manage.py drift_check"

    workflow = models.ForeignKey(
        Workflow, on_delete=models.PROTECT, related_name="+", db_index=False
    )
    computed_at = models.DateTimeField()
    rung = models.PositiveSmallIntegerField(choices=Rung.choices)
    baseline_start = models.DateTimeField()
    baseline_end = models.DateTimeField()
    recent_start = models.DateTimeField()
    recent_end = models.DateTimeField()
    # The bounds judged against (defaults with the workflow's overrides), as they were.
    bounds = models.JSONField(default=dict)
    # [{name, label, verdict, sentence, value, bound, detail, breached}, ...]
    checks = models.JSONField(default=list)
    breached = models.BooleanField()
    trigger = models.CharField(max_length=10, choices=Trigger.choices)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )

    class Meta:
        ordering = ["workflow", "-computed_at", "-id"]
        indexes = [
            models.Index(fields=["workflow", "-computed_at", "-id"], name="driftcheck_latest_idx")
        ]

    def __str__(self) -> str:
        return f"drift of {self.workflow_id} at {self.computed_at:%Y-%m-%d %H:%M}"

    @property
    def breached_checks(self) -> list[dict]:
        return [c for c in self.checks if c.get("breached")]

    def as_json(self) -> dict:
        """The API's `drift` (docs/drift.md)."""
        return {
            "computed_at": self.computed_at.isoformat(),
            "rung": self.rung,
            "baseline": {
                "start": self.baseline_start.isoformat(),
                "end": self.baseline_end.isoformat(),
            },
            "recent": {"start": self.recent_start.isoformat(), "end": self.recent_end.isoformat()},
            "breached": self.breached,
            "checks": [
                {
                    key: check.get(key)
                    for key in (
                        "name",
                        "label",
                        "verdict",
                        "value",
                        "bound",
                        "breached",
                        "sentence",
                    )
                }
                for check in self.checks
            ],
        }
