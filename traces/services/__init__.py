"""Writes on runs and their traces. Every status change is a guarded UPDATE or happens
under a row lock, so retries, double clicks and concurrent duplicates are harmless.

Split by what a reader looks for, in the order a run meets them:

    gateway.py     POST /runs: token and rules → redaction → trace → ladder decides →
                   the run waits in a queue, is recorded, denied or approved for execution
    redactors.py   the cached redactor per workflow, an agent request's redaction budget
    trace.py       appending events to a run's hash chain
    agent.py       the agent's endpoints after submitting: events, claim, result,
                   outcome, metrics
    decisions.py   decisions by people (approvals calls run_decide)
    execution.py   server executors, at most once (the Celery task calls run_execute)
    tokens.py      agent tokens

Callers import from the module that holds a name; the names below stay importable from
`traces.services` for code written before the split.
"""

from traces.services.agent import (
    metric_record,
    run_append_events,
    run_claim,
    run_for_agent,
    run_record_outcome,
    run_report_result,
)
from traces.services.decisions import DecisionInput, run_decide
from traces.services.execution import run_execute
from traces.services.gateway import run_submit, stored_idempotency_key, submission_json
from traces.services.redactors import agent_redaction_budget, redactor_for
from traces.services.tokens import token_create
from traces.services.trace import EventSpec, trace_append

__all__ = [
    "DecisionInput",
    "EventSpec",
    "agent_redaction_budget",
    "metric_record",
    "redactor_for",
    "run_append_events",
    "run_claim",
    "run_decide",
    "run_execute",
    "run_for_agent",
    "run_record_outcome",
    "run_report_result",
    "run_submit",
    "stored_idempotency_key",
    "submission_json",
    "token_create",
    "trace_append",
]
