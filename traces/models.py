import json

from django.conf import settings
from django.db import models

from ladder.models import ActionType, Workflow
from ladder.rungs import AuditState, Queue
from traces.gate_code import StoredGeneratedField, gate_code_expression
from traces.ids import uuid7
from traces.status import RunStatus


class AgentToken(models.Model):
    """An agent's API credential. Only its sha256 is stored; the token is shown once."""

    name = models.CharField(max_length=200)
    prefix = models.CharField(max_length=12, db_index=True)
    token_hash = models.CharField(max_length=64, unique=True)
    workflows = models.ManyToManyField(Workflow, related_name="agent_tokens")
    created_at = models.DateTimeField(auto_now_add=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"


class Decider(models.TextChoices):
    NONE = "", "Nobody yet"
    PERSON = "person", "A person"
    POLICY = "policy", "The policy"
    DEADLINE = "deadline", "The deadline"


class Run(models.Model):
    """One pass of an agent through a workflow. Its evidence lives in its trace events."""

    id = models.UUIDField(primary_key=True, default=uuid7, editable=False)
    # No single-column index: the (workflow, idempotency_key) unique index leads with it.
    workflow = models.ForeignKey(
        Workflow, on_delete=models.PROTECT, related_name="runs", db_index=False
    )
    idempotency_key = models.CharField(max_length=200)
    # sha256 of the redacted request: a reused key with a different body is a conflict.
    request_hash = models.CharField(max_length=64)
    rung = models.PositiveSmallIntegerField()
    # Indexed only through the partial queue indexes and run_wf_status_idx: every extra
    # index is paid on each insert by the gateway.
    status = models.CharField(max_length=20, choices=RunStatus.choices)
    queue = models.CharField(max_length=12, choices=Queue.choices, blank=True)
    action_type = models.ForeignKey(
        ActionType,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="runs",
        db_index=False,
    )
    # Denormalised from the (redacted) proposal so queue pages need no JSON digging.
    proposal = models.JSONField(null=True, blank=True)
    summary = models.CharField(max_length=300, blank=True)
    value = models.DecimalField(max_digits=18, decimal_places=4, null=True, blank=True)
    currency = models.CharField(max_length=8, blank=True)
    flags = models.JSONField(default=list, blank=True)
    escalation_reason = models.CharField(max_length=300, blank=True)
    # The decision: final action and params (after edits or a pick), who and when.
    decision = models.JSONField(null=True, blank=True)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        db_index=False,
    )
    decided_at = models.DateTimeField(null=True, blank=True)
    result = models.JSONField(null=True, blank=True)
    execution_attempts = models.PositiveSmallIntegerField(default=0)
    executed_at = models.DateTimeField(null=True, blank=True)
    outcome = models.CharField(max_length=10, blank=True)
    # The policy that decided this run at L4/L5: {version, outcome, rules_fired}
    # (version null when no envelope was in force); null when no policy decided.
    policy = models.JSONField(null=True, blank=True)
    # At L2/L3, what the workflow's draft envelope would have done (same shape), decided
    # nothing: set beside the person's decision as evidence for L3 -> L4.
    shadow = models.JSONField(null=True, blank=True)
    # An allowed run sampled for a human audit (AuditState): "" | due | correct | wrong.
    audit = models.CharField(
        max_length=8, choices=AuditState.choices, blank=True, default="", db_default=""
    )
    # A waiting run is decided by the deadline after this instant (docs/deadlines.md).
    deadline_at = models.DateTimeField(null=True, blank=True)
    # When a server executor last claimed the run (approved -> executing): a run still
    # executing long after it was abandoned by a worker that died (traces.tasks sweeper).
    execution_claimed_at = models.DateTimeField(null=True, blank=True)
    # What the evidence gates count, in typed columns so traces/gates.py reads no JSON
    # (docs/gates.md). Who decided: a person, the policy (L4/L5) or the deadline.
    decider = models.CharField(
        max_length=8, choices=Decider.choices, blank=True, default="", db_default=""
    )
    # L1: the submitted draft was a light edit of the agent's (false when discarded).
    light_edit = models.BooleanField(null=True, blank=True)
    # L2: the person picked the agent's first recommendation, type and params.
    matched = models.BooleanField(null=True, blank=True)
    # The shadow decision of a draft envelope at L2/L3 (Run.shadow's outcome, version).
    shadow_outcome = models.CharField(max_length=8, blank=True, default="", db_default="")
    shadow_version = models.PositiveIntegerField(null=True, blank=True)
    # A known-wrong eval case put in the L3 queue to show reviewers look (docs/evals.md):
    # never executed, never counted as the agent's evidence.
    probe = models.BooleanField(default=False, db_default=False)
    # An L4/L5 run that arrived while its workflow was stopped (docs/stop.md): it waits
    # in the escalated queue undecided by the policy, which decides it on resume unless
    # a person decided it first.
    held = models.BooleanField(default=False, db_default=False)
    # Once the execution is over: the replay was complete and its chain verified.
    replay_ok = models.BooleanField(null=True, blank=True)
    # The nine columns above packed into one integer by the database itself
    # (traces/gate_code.py), so the gate count groups by one key.
    gate_code = StoredGeneratedField(
        expression=gate_code_expression(), output_field=models.IntegerField(), db_persist=True
    )
    # Bumped on every change a reviewer could have seen: a decision made on an older
    # version is stale and refused.
    version = models.PositiveIntegerField(default=1)
    trace_head = models.CharField(max_length=64, blank=True)
    trace_length = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["workflow", "idempotency_key"], name="run_unique_idempotency_key"
            )
        ]
        indexes = [
            # The reviewer's queue: waiting runs, oldest first, across the workflows a
            # person reviews (the order comes from the index, the workflow set filters);
            # and the same per filter, so a narrow filter never walks the whole queue.
            models.Index(
                fields=["created_at", "id"],
                name="run_waiting_idx",
                condition=models.Q(status="pending_review"),
            ),
            models.Index(
                fields=["workflow", "created_at", "id"],
                name="run_waiting_wf_idx",
                condition=models.Q(status="pending_review"),
            ),
            # Facet counts are an index-only scan of this one.
            models.Index(
                fields=["workflow", "queue", "action_type"],
                name="run_waiting_facets_idx",
                condition=models.Q(status="pending_review"),
            ),
            models.Index(
                fields=["queue", "created_at", "id"],
                name="run_waiting_queue_idx",
                condition=models.Q(status="pending_review"),
            ),
            models.Index(
                fields=["action_type", "created_at", "id"],
                name="run_waiting_action_idx",
                condition=models.Q(status="pending_review"),
            ),
            models.Index(fields=["workflow", "status", "created_at"], name="run_wf_status_idx"),
            # The deadline sweep: waiting runs by when they expire.
            models.Index(
                fields=["deadline_at"],
                name="run_deadline_idx",
                condition=models.Q(status="pending_review"),
            ),
            # The audit queue: sampled allowed runs not yet audited.
            models.Index(
                fields=["workflow", "created_at", "id"],
                name="run_audit_due_idx",
                condition=models.Q(audit="due"),
            ),
            # The gate recompute (traces/gates.py): each workflow's window is one range of
            # this index, read index-only. Partial: a run enters it once decided, so the
            # gateway pays for it only on runs the policy decides at submission.
            models.Index(
                fields=["workflow", "rung", "decided_at"],
                include=["action_type", "shadow_version", "gate_code"],
                name="run_gate_idx",
                condition=models.Q(decided_at__isnull=False),
            ),
            # Runs held by a stopped workflow, released on resume (few, and only while a
            # workflow is stopped: the gateway pays for it on held runs only).
            models.Index(
                fields=["workflow", "created_at", "id"],
                name="run_held_idx",
                condition=models.Q(held=True),
            ),
            # The compliance history (approvals/history.py, docs/history.md): newest
            # first over everything, per workflow, per status, per decider, per person
            # who decided, and the failures. Each keyset page is one backward range scan
            # of one of these, whatever the filter. The partial ones cost nothing on the
            # gateway's inserts of undecided runs.
            models.Index(fields=["created_at", "id"], name="run_history_idx"),
            models.Index(fields=["workflow", "created_at", "id"], name="run_history_wf_idx"),
            models.Index(fields=["status", "created_at", "id"], name="run_history_status_idx"),
            models.Index(
                fields=["decider", "created_at", "id"],
                name="run_history_decider_idx",
                condition=~models.Q(decider=""),
            ),
            models.Index(
                fields=["decided_by", "created_at", "id"],
                name="run_history_person_idx",
                condition=models.Q(decided_by__isnull=False),
            ),
            models.Index(
                fields=["created_at", "id"],
                name="run_history_failure_idx",
                condition=models.Q(status="failed")
                | models.Q(outcome="wrong")
                | models.Q(audit="wrong"),
            ),
            # The re-dispatch sweep: approved or executing runs (few at any time).
            models.Index(
                fields=["updated_at"],
                name="run_in_flight_idx",
                condition=models.Q(status__in=["approved", "executing"]),
            ),
        ]

    def __str__(self) -> str:
        return f"run {self.id} ({self.workflow_id}, {self.status})"

    @property
    def action(self) -> str:
        return (self.proposal or {}).get("action", "")


class TraceEvent(models.Model):
    """Append-only: database triggers refuse UPDATE and DELETE (see migration 0002)."""

    class Type(models.TextChoices):
        INPUT = "input"
        TOOL_CALL = "tool_call"
        OUTPUT = "output"
        PROPOSAL = "proposal"
        REVIEW_SHOWN = "review_shown"
        REVIEW_DECISION = "review_decision"
        POLICY_DECISION = "policy_decision"
        # At L2/L3: what the draft envelope would have done; decides nothing.
        POLICY_SHADOW = "policy_shadow"
        EXECUTION = "execution"
        OUTCOME = "outcome"
        ROLLBACK = "rollback"
        DEADLINE = "deadline"
        # The run arrived while its workflow was stopped and waits (docs/stop.md).
        HOLD = "hold"

    # Keyed by its place in its run's chain: no surrogate id, so no sequence to draw from
    # and one index fewer for every event the gateway writes (migration 0007).
    pk = models.CompositePrimaryKey("run_id", "seq")
    # No single-column index: the (run, seq) primary key leads with it. No database
    # foreign key either: checking it on every event (a FOR KEY SHARE lock on the run row,
    # on the page every concurrent submission writes to) was a third of the gateway's
    # database CPU (bench/README.md). What it guaranteed holds without it: events are only
    # written in the same statement as their run or under its row lock, a trigger refuses
    # to delete runs (migration 0006), and verify_traces reports any event whose run is
    # missing.
    run = models.ForeignKey(
        Run,
        on_delete=models.PROTECT,
        related_name="events",
        db_index=False,
        db_constraint=False,
    )
    seq = models.PositiveIntegerField()
    type = models.CharField(max_length=20, choices=Type.choices)
    # Who appended it: "agent:<token prefix>", "user:<id>", "system".
    actor = models.CharField(max_length=100)
    at = models.DateTimeField()
    # The canonical JSON that was hashed, kept as text (see traces.chain).
    document = models.TextField()
    prev_hash = models.CharField(max_length=64)
    hash = models.CharField(max_length=64)

    class Meta:
        ordering = ["run", "seq"]

    def __str__(self) -> str:
        return f"{self.run_id}#{self.seq} {self.type}"

    @property
    def payload(self):
        return json.loads(self.document)["payload"]


class MetricPoint(models.Model):
    """A business outcome point an owner's system reports for a workflow."""

    workflow = models.ForeignKey(Workflow, on_delete=models.CASCADE, related_name="metric_points")
    metric = models.CharField(max_length=100)
    value = models.FloatField()
    at = models.DateTimeField()
    received_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [models.Index(fields=["workflow", "metric", "at"], name="metric_wf_at_idx")]

    def __str__(self) -> str:
        return f"{self.metric}={self.value} at {self.at:%Y-%m-%d %H:%M}"


class DemoLedgerEntry(models.Model):
    """The demo's stand-in for an external payment system: one row per idempotency key,
    which is how a real executor makes a retried call harmless."""

    idempotency_key = models.CharField(max_length=100, unique=True)
    action = models.CharField(max_length=100)
    params = models.JSONField()
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.idempotency_key


class PolicyAllowance(models.Model):
    """What a policy allowed, for its rate limits: one row per allowed run and subject
    it counts under ("workflow", or "<param>=<value>" of a per-subject limit).

    Kept in PostgreSQL beside the run, written in the same transaction and under the
    same per-subject lock as the run itself (traces/services/policy.py): an allowance is
    counted exactly when its run is stored, so N per window lets exactly N through,
    across processes, and a crash can neither lose a count nor leave a stray one.
    `shadow` rows are what a draft envelope would have allowed at L2/L3.
    """

    run = models.ForeignKey(
        Run, on_delete=models.PROTECT, related_name="+", db_index=False, db_constraint=False
    )
    workflow = models.ForeignKey(
        Workflow, on_delete=models.PROTECT, related_name="+", db_index=False
    )
    shadow = models.BooleanField(default=False)
    action = models.CharField(max_length=100)
    # sha256 of the subject key: the key holds a (pseudonymous) parameter value of any size.
    subject = models.CharField(max_length=64)
    at = models.DateTimeField()
    value = models.DecimalField(max_digits=18, decimal_places=4, null=True, blank=True)
    currency = models.CharField(max_length=8, blank=True)

    class Meta:
        indexes = [
            models.Index(
                fields=["workflow", "shadow", "action", "subject", "at"],
                name="allowance_window_idx",
            )
        ]

    def __str__(self) -> str:
        return f"{self.action} allowed for run {self.run_id}"


class SubjectSeen(models.Model):
    """Subjects ("<param>=<value>", as sha256) that earlier runs of a workflow proposed
    for, for `first_seen` rules. Written for every run with a proposal, whatever was
    decided, for the parameters the workflow's policy names; a new version naming a new
    parameter is filled from the workflow's history when it is saved."""

    workflow = models.ForeignKey(
        Workflow, on_delete=models.PROTECT, related_name="+", db_index=False
    )
    subject = models.CharField(max_length=64)
    first_run = models.UUIDField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["workflow", "subject"], name="subject_seen_unique")
        ]

    def __str__(self) -> str:
        return f"{self.subject[:12]}… first seen in run {self.first_run}"


class Backtest(models.Model):
    """ "What would this policy have done?": one policy document run over a workflow's
    past L3 runs that people decided (traces/backtest.py; docs/policy.md, "Backtests").

    The document tested is always stored as it was at the start (a copy of the saved
    version's, or the editor's unsaved draft), so the figures stay explainable after the
    workflow's policy moves on."""

    class State(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    # No single-column index: backtest_wf_idx leads with it.
    workflow = models.ForeignKey(
        Workflow, on_delete=models.PROTECT, related_name="backtests", db_index=False
    )
    # The saved version tested, or null for an unsaved draft document.
    version = models.ForeignKey(
        "ladder.PolicyVersion",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        db_index=False,
    )
    document = models.JSONField()
    # Only runs created in [since, until) are replayed (null: no bound).
    since = models.DateTimeField(null=True, blank=True)
    until = models.DateTimeField(null=True, blank=True)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        db_index=False,
    )
    state = models.CharField(max_length=8, choices=State.choices, default=State.QUEUED)
    progress_done = models.PositiveIntegerField(default=0)
    progress_total = models.PositiveIntegerField(default=0)
    result = models.JSONField(null=True, blank=True)
    error = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["workflow", "-created_at"], name="backtest_wf_idx")]

    def __str__(self) -> str:
        tested = f"v{self.version.number}" if self.version_id else "draft"
        return f"backtest {self.pk} of {self.workflow_id} ({tested}, {self.state})"

    @property
    def finished(self) -> bool:
        return self.state in (self.State.DONE, self.State.FAILED)


class EvalCase(models.Model):
    """One case of a workflow's eval set (docs/evals.md): an input, redacted like a run's,
    and the action a correct agent proposes for it. A case may also carry a known-wrong
    proposal (`wrong_*`), which makes it usable as an attention probe."""

    class Source(models.TextChoices):
        IMPORT = "import", "Imported"
        RUN = "run", "Saved from a run"

    workflow = models.ForeignKey(
        Workflow, on_delete=models.PROTECT, related_name="eval_cases", db_index=False
    )
    input = models.JSONField(null=True, blank=True)
    expected_action = models.CharField(max_length=100)
    expected_params = models.JSONField(default=dict)
    # A known-wrong proposal ("" when none) and why it is wrong, for probes.
    wrong_action = models.CharField(max_length=100, blank=True, default="")
    wrong_params = models.JSONField(null=True, blank=True)
    wrong_why = models.CharField(max_length=1000, blank=True, default="")
    note = models.CharField(max_length=1000, blank=True, default="")
    source = models.CharField(max_length=8, choices=Source.choices)
    # The decided run it was saved from; a run gives at most one case.
    source_run = models.UUIDField(null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        db_index=False,
    )
    created_at = models.DateTimeField(auto_now_add=True)
    retired_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["workflow", "id"], name="evalcase_wf_idx")]
        constraints = [
            models.UniqueConstraint(
                fields=["workflow", "source_run"],
                name="evalcase_one_per_run",
                condition=models.Q(source_run__isnull=False),
            )
        ]

    def __str__(self) -> str:
        return f"eval case {self.pk} of {self.workflow_id} ({self.expected_action})"

    @property
    def has_wrong(self) -> bool:
        return bool(self.wrong_action)


class EvalResult(models.Model):
    """An agent's proposal for one eval case in one pass, scored against the expected
    action. One per (case, pass): an eval pass is every result under one label."""

    case = models.ForeignKey(
        EvalCase, on_delete=models.PROTECT, related_name="results", db_index=False
    )
    workflow = models.ForeignKey(
        Workflow, on_delete=models.PROTECT, related_name="eval_results", db_index=False
    )
    pass_label = models.CharField(max_length=100)
    # True when the label was made by the server because the agent sent none.
    pass_auto = models.BooleanField(default=False)
    proposed_action = models.CharField(max_length=100)
    proposed_params = models.JSONField(default=dict)
    matched = models.BooleanField()
    # "agent:<token prefix>"
    agent = models.CharField(max_length=100)
    submitted_at = models.DateTimeField()

    class Meta:
        ordering = ["submitted_at"]
        constraints = [
            models.UniqueConstraint(fields=["case", "pass_label"], name="evalresult_one_per_pass")
        ]
        indexes = [
            models.Index(
                fields=["workflow", "pass_label", "submitted_at"], name="evalresult_wf_pass_idx"
            ),
            models.Index(fields=["workflow", "submitted_at"], name="evalresult_wf_at_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.pass_label}: case {self.case_id} {'matched' if self.matched else 'missed'}"


class EvalProbe(models.Model):
    """Which eval case an attention probe run was made from (the run itself is marked
    Run.probe). Kept beside the run, never in what the reviewer is shown."""

    run = models.OneToOneField(Run, on_delete=models.PROTECT, related_name="probe_of")
    case = models.ForeignKey(EvalCase, on_delete=models.PROTECT, related_name="probes")
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"probe {self.run_id} from case {self.case_id}"


class RollbackDrill(models.Model):
    """A timed rollback drill (docs/drills.md): a batch of a workflow's executed,
    reversible runs reverted through their compensating actions by the workers, timed
    from the start to the last item finished. Evidence for L3 -> L4 and L4 -> L5."""

    class Trigger(models.TextChoices):
        COMMAND = "command", "Management command"
        PAGE = "page", "Workflow page"

    class Status(models.TextChoices):
        RUNNING = "running", "Running"
        FINISHED = "finished", "Finished"

    workflow = models.ForeignKey(
        Workflow, on_delete=models.PROTECT, related_name="rollback_drills", db_index=False
    )
    batch = models.PositiveIntegerField()
    picked = models.PositiveIntegerField(default=0)
    succeeded = models.PositiveIntegerField(default=0)
    failed = models.PositiveIntegerField(default=0)
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.RUNNING)
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)
    # The last item's finish minus started_at.
    duration_seconds = models.FloatField(null=True, blank=True)
    # Null: a management command (nobody signed in).
    started_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        db_index=False,
    )
    trigger = models.CharField(max_length=8, choices=Trigger.choices)
    # Runs the gateway stored (every workflow) while the drill ran, and their rate:
    # under_load when the rate reached LADDER_DRILL_LOAD_MIN_RPS (docs/drills.md).
    load_runs = models.PositiveIntegerField(null=True, blank=True)
    load_rps = models.FloatField(null=True, blank=True)
    under_load = models.BooleanField(default=False)

    class Meta:
        indexes = [models.Index(fields=["workflow", "-started_at"], name="drill_wf_idx")]

    def __str__(self) -> str:
        return f"drill {self.pk} of {self.workflow_id} ({self.status})"

    @property
    def finished(self) -> bool:
        return self.status == self.Status.FINISHED

    @property
    def passed(self) -> bool:
        """Finished, at least one run reverted, and no compensation failed."""
        return self.finished and self.failed == 0 and self.picked >= 1


class RollbackDrillItem(models.Model):
    """One run of a drill and what its compensation did. A run is in at most one item
    ever (drillitem_one_per_run): no drill, and no redelivered task, reverses it twice,
    and a compensation that failed is left for a person, never tried again."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        REVERTING = "reverting", "Reverting"
        REVERTED = "reverted", "Reverted"
        FAILED = "failed", "Failed"

    drill = models.ForeignKey(RollbackDrill, on_delete=models.PROTECT, related_name="items")
    run = models.ForeignKey(Run, on_delete=models.PROTECT, related_name="+", db_index=False)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    compensating_action = models.CharField(max_length=100)
    output = models.JSONField(null=True, blank=True)
    error = models.TextField(blank=True, default="")
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["id"]
        constraints = [models.UniqueConstraint(fields=["run"], name="drillitem_one_per_run")]
        indexes = [
            # The sweep: items nobody finished (few at any time).
            models.Index(
                fields=["status"],
                name="drillitem_open_idx",
                condition=models.Q(status__in=["pending", "reverting"]),
            )
        ]

    def __str__(self) -> str:
        return f"drill {self.drill_id} item {self.pk}: run {self.run_id} {self.status}"
