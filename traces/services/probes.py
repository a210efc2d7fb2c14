"""Attention probes (EU AI Act Art. 14(4)(b), automation bias; docs/evals.md): known-wrong
eval cases put into a workflow's L3 queue at the owner's `probe_rate`, so the approval
rate is evidence only if reviewers are shown to look.

A probe looks like any run to the reviewer (same fields, same trace event types), and
is honest to an examiner: Run.probe is set, and its trace events are written by the
actor "system:probe", never by an agent. It is never executed: run_decide does not
queue it, run_execute and the sweep skip it, and no agent can read, claim or report on
it (it belongs to no agent's token)."""

import hashlib
import logging
import math
import uuid
from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import Count, Q
from django.utils import timezone

from ladder.decide import ActionRules, proposal_value
from ladder.errors import LadderError
from ladder.models import Workflow
from ladder.rungs import Queue, Rung
from traces.chain import GENESIS, canonical_json
from traces.ids import uuid7
from traces.models import EvalCase, EvalProbe, Run, RunStatus, TraceEvent
from traces.services.trace import EventSpec, chain_links

log = logging.getLogger(__name__)

PROBE_ACTOR = "system:probe"
# Probes are kept at probe_rate of what arrived in the L3 queue over this window.
PROBE_WINDOW = timedelta(days=7)
# At most this many probes per workflow per seeding: a rate raised on a busy queue
# fills in over a few beats instead of flooding reviewers at once.
PROBES_PER_SEED = 5
PROBE_RATE_MAX = 0.1


def probes_due(*, arrivals: int, probes: int, rate: float) -> int:
    """How many probes to add so that probes / (arrivals + probes) stays at about `rate`
    (probe_rate is the share of the L3 review work that is probes)."""
    if rate <= 0 or arrivals <= 0:
        return 0
    target = math.floor(rate * arrivals / (1 - rate))
    return max(0, min(PROBES_PER_SEED, target - probes))


def probes_seed(*, workflow: Workflow, now: datetime | None = None) -> list[Run]:
    """Top up the workflow's attention probes to about its probe_rate of the runs that
    arrived in its L3 queue over PROBE_WINDOW. Only at L3, only from active cases with a
    known-wrong proposal (least used first). Returns the probe runs made."""
    if workflow.rung != Rung.L3 or workflow.probe_rate <= 0:
        return []
    now = now or timezone.now()
    since = now - PROBE_WINDOW
    counts = Run.objects.filter(workflow=workflow, created_at__gte=since).aggregate(
        arrivals=Count(
            "id", filter=Q(probe=False, rung=Rung.L3, queue__in=[Queue.L3, Queue.ESCALATED])
        ),
        probes=Count("id", filter=Q(probe=True)),
    )
    due = probes_due(
        arrivals=counts["arrivals"],
        probes=counts["probes"],
        rate=min(workflow.probe_rate, PROBE_RATE_MAX),
    )
    if not due:
        return []
    cases = list(
        EvalCase.objects.filter(workflow=workflow, retired_at=None)
        .exclude(wrong_action="")
        .annotate(used=Count("probes"))
        .order_by("used", "?")[:due]
    )
    if not cases:
        log.info("%s: probe_rate is set but no eval case has a known-wrong proposal", workflow)
        return []
    actions = {a.name: a for a in workflow.action_types.all()}
    made = []
    # A small set is used round and round: the same known-wrong case may come back.
    for index in range(due):
        case = cases[index % len(cases)]
        action = actions.get(case.wrong_action)
        if action is None:  # the action type was removed since the case was stored
            continue
        try:
            made.append(_probe_create(workflow=workflow, case=case, action=action, now=now))
        except LadderError as exc:  # a value the run row cannot hold: skip the case
            log.warning("eval case %s cannot be a probe: %s", case.pk, exc)
    return made


@transaction.atomic
def _probe_create(*, workflow: Workflow, case: EvalCase, action, now: datetime) -> Run:
    params = case.wrong_params or {}
    # The same keys as a proposal the gateway stores (RunIn's ProposalIn, every field).
    proposal = {
        "action": case.wrong_action,
        "params": params,
        "alternatives": None,
        "artifact": None,
        "flags": None,
        "summary": None,
    }
    value, currency = proposal_value(
        ActionRules(
            name=action.name,
            param_schema=action.param_schema or {},
            value_param=action.value_param,
            currency_param=action.currency_param,
        ),
        params,
    )
    run_id = uuid7()
    specs = [
        # The same payload as the gateway's first event, rung included (the examiner's
        # recount reads it there).
        EventSpec(TraceEvent.Type.INPUT, {"input": case.input, "rung": Rung.L3}, PROBE_ACTOR),
        EventSpec(TraceEvent.Type.PROPOSAL, proposal, PROBE_ACTOR),
    ]
    links = chain_links(run_id=run_id, specs=specs, prev_hash=GENESIS, start_seq=1, at=now)
    body = {"input": case.input, "output": None, "proposal": proposal, "tool_calls": None}
    run = Run.objects.create(
        id=run_id,
        workflow=workflow,
        # A random key as the SDK makes them: a key naming the probe would give it away.
        idempotency_key=str(uuid.uuid4()),
        request_hash=hashlib.sha256(canonical_json(body).encode("utf-8")).hexdigest(),
        rung=Rung.L3,
        status=RunStatus.PENDING_REVIEW,
        queue=Queue.L3,
        action_type=action,
        proposal=proposal,
        summary=case.wrong_action,
        value=value,
        currency=currency[:8],
        flags=[],
        probe=True,
        deadline_at=now + timedelta(seconds=workflow.review_deadline_seconds),
        trace_head=links[-1].hash,
        trace_length=len(links),
    )
    # created_at is auto_now_add: keep it on the events' instant.
    Run.objects.filter(pk=run_id).update(created_at=now, updated_at=now)
    TraceEvent.objects.bulk_create(
        TraceEvent(run_id=run_id, at=now, **link._asdict()) for link in links
    )
    EvalProbe.objects.create(run=run, case=case)
    return run


def probes_seed_all(*, now: datetime | None = None) -> int:
    """probes_seed for every L3 workflow with a probe rate (the beat task)."""
    made = 0
    for workflow in Workflow.objects.filter(rung=Rung.L3, probe_rate__gt=0):
        made += len(probes_seed(workflow=workflow, now=now))
    return made
