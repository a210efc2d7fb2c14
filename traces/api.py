"""The gateway every agent run goes through (/api/v1, contract in DESIGN.md).

django-ninja: pydantic schemas give typed validation and the OpenAPI document from one
source, with far less per-request overhead than DRF's serializers on the hot path.
"""

import logging
import math
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.core.serializers.json import DjangoJSONEncoder
from django.db.utils import Error as DjangoDatabaseError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from ninja import NinjaAPI, Query, Status
from ninja.errors import AuthenticationError, HttpError, ValidationError
from ninja.parser import Parser
from ninja.security import HttpBearer
from psycopg import Error as DatabaseLibraryError
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, create_model
from pydantic import ValidationError as PydanticValidationError

from ladder.dbfaults import database_unavailable, unavailable_response
from ladder.errors import Forbidden, LadderError, NotFound
from ladder.models import Certificate, Workflow
from ladder.policies import policy_latest, policy_out
from ladder.rungs import Rung
from ladder.services import certificate_current, certificate_public_key_pem, rung_history
from traces.auth import AgentAuth, authenticate, authenticate_hash
from traces.evals import eval_cases_for_agent
from traces.jsonbody import parse_json_body
from traces.limits import rate_check
from traces.longpoll import ENVIRON_KEY, run_wait
from traces.models import Run, RunStatus
from traces.selectors import (
    drift_check_latest,
    gate_snapshot_latest,
    run_replay_for_agent,
    stop_out,
)
from traces.services import agent, deadlines, evals, gateway

log = logging.getLogger(__name__)


class StrictJsonParser(Parser):
    def parse_body(self, request: HttpRequest):
        return parse_json_body(
            request.body,
            max_bytes=settings.LADDER_MAX_BODY_BYTES,
            max_depth=settings.LADDER_MAX_JSON_DEPTH,
        )


class AgentBearer(HttpBearer):
    def __init__(self, *, memo: bool = False):
        super().__init__()
        self.memo = memo

    def authenticate(self, request: HttpRequest, token: str) -> AgentAuth:
        auth = authenticate(token.strip(), memo=self.memo)
        hook = request.META.get(ENVIRON_KEY)
        if hook is None or not hook.resumed:  # a parked poll run again is not a new request
            rate_check(auth.token_id)  # 429 rate_limited (traces/limits.py)
        return auth


api = NinjaAPI(
    title="Autonomy Ladder gateway",
    version="1",
    urls_namespace="api",
    parser=StrictJsonParser(),
    auth=AgentBearer(),
    openapi_url="/openapi.json",
    docs_url="/docs",
)


def error_response(status: int, code: str, message: str, details: Any = None) -> JsonResponse:
    body: dict[str, Any] = {"code": code, "message": message}
    if details:
        body["details"] = details
    return JsonResponse({"error": body}, status=status)


@api.exception_handler(LadderError)
def _ladder_error(request, exc: LadderError):
    response = error_response(exc.status, exc.code, exc.message, exc.details)
    if (retry_after := getattr(exc, "retry_after", None)) is not None:
        response["Retry-After"] = str(max(1, math.ceil(retry_after)))
    return response


@api.exception_handler(AuthenticationError)
def _auth_error(request, exc):
    return error_response(
        401, "unauthorized", "send 'Authorization: Bearer <agent token>' (create_agent_token)"
    )


@api.exception_handler(HttpError)
def _http_error(request, exc: HttpError):
    cause = exc.__cause__
    if isinstance(cause, LadderError):
        return _ladder_error(request, cause)
    if isinstance(cause, RequestDataTooBig):
        return _too_big(request, cause)
    return error_response(exc.status_code, "bad_request", str(exc))


@api.exception_handler(RequestDataTooBig)
def _too_big(request, exc):
    return error_response(
        413, "payload_too_large", f"request body is over {settings.LADDER_MAX_BODY_BYTES} bytes"
    )


@api.exception_handler(DatabaseLibraryError)
@api.exception_handler(DjangoDatabaseError)
def _database_error(request, exc):
    """PostgreSQL unreachable (down, restarting, connection lost): 503 database_unavailable
    with Retry-After (ladder/dbfaults.py); any other database error is a server error."""
    if database_unavailable(exc):
        return unavailable_response(request, exc)
    raise exc


@api.exception_handler(ValidationError)
def _validation_error(request, exc: ValidationError):
    problems = []
    for err in exc.errors:
        loc = ".".join(str(p) for p in err.get("loc", ())[1:]) or "body"
        problems.append({"field": loc, "problem": err.get("msg", "invalid")})
    summary = "; ".join(f"{p['field']}: {p['problem']}" for p in problems[:5])
    return error_response(422, "invalid_request", summary or "invalid request", problems)


# -- schemas ----------------------------------------------------------------------------
# Plain pydantic models rather than ninja's Schema: Schema's Django-aware root validator
# costs more CPU than the rest of validation on the hot path, and it drops extra keys.

Slug = Field(..., min_length=1, max_length=80, pattern=r"^[a-z0-9][a-z0-9-]*$")


class ToolCallIn(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: str = Field(..., min_length=1, max_length=200)
    arguments: Any = None
    result: Any = None


class AlternativeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    action: str = Field(..., min_length=1, max_length=100)
    params: dict[str, Any] = Field(default_factory=dict)
    score: float | None = Field(None, allow_inf_nan=False)


class ProposalIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    action: str = Field(..., min_length=1, max_length=100)
    params: dict[str, Any] = Field(default_factory=dict)
    alternatives: list[AlternativeIn] | None = Field(None, max_length=50)
    artifact: Any = None
    flags: list[str] | None = Field(None, max_length=20)
    summary: str | None = Field(None, max_length=2000)


class RunIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    workflow: str = Slug
    idempotency_key: str = Field(..., min_length=1, max_length=200)
    input: Any = None
    tool_calls: list[ToolCallIn] | None = Field(None, max_length=500)
    output: Any = None
    proposal: ProposalIn | None = None
    # An eval submission (docs/evals.md): the proposal is scored against this eval case
    # and stored as an eval result in the pass `eval_pass`; no run is made.
    eval_case: int | None = Field(None, ge=1)
    eval_pass: str | None = Field(None, min_length=1, max_length=100)


class TraceOut(BaseModel):
    events: int
    head: str


class WorkflowStoppedOut(BaseModel):
    at: datetime
    reason: str


class RunOut(BaseModel):
    id: str
    workflow: str
    rung: int
    status: str
    queue: str | None = None
    decision: dict | None = None
    result: dict | None = None
    outcome: str | None = None
    # L4/L5: the policy version that decided, its outcome and the rules that fired.
    policy: dict | None = None
    # Why a person is asked (an escalation by the policy or by a missed deadline).
    escalation_reason: str | None = None
    # While waiting for a person: when the deadline decides instead (docs/deadlines.md).
    deadline_at: datetime | None = None
    # The run's workflow is stopped (docs/stop.md): when and why, else null. Nothing of
    # it executes meanwhile: an approved run waits (a claim is 409 workflow_stopped), an
    # L4/L5 proposal waits in the escalated queue for the resume.
    workflow_stopped: WorkflowStoppedOut | None = None
    created_at: datetime
    trace: TraceOut
    # POST /runs only: pseudonym → the value it replaced in *this* request's body, so the
    # agent can turn decided params (`<EMAIL:…>`) back into real values. Derived from the
    # request each time; never stored.
    pseudonyms: dict[str, Any] | None = None


class FieldProblemOut(BaseModel):
    field: str
    problem: str


class ErrorBody(BaseModel):
    # Exactly what error_response() and ladder.middleware.api_error write: a request that
    # fails validation lists each field and its problem; a refusal may say more in a
    # dict (`{"field": ...}`, `{"reasons": [...]}`, `{"problems": [...]}`).
    model_config = ConfigDict(extra="forbid")
    code: str
    message: str
    details: list[FieldProblemOut] | dict[str, Any] | None = None


class ErrorOut(BaseModel):
    model_config = ConfigDict(extra="forbid")
    error: ErrorBody


# `pass` is a Python keyword: the model is made by name so the field keeps it.
EvalResultOut = create_model(
    "EvalResultOut",
    case=(int, ...),
    **{"pass": (str, ...)},
    matched=(bool, ...),
    submitted_at=(datetime, ...),
)


class EvalSubmittedOut(BaseModel):
    """The answer to an eval submission (`eval_case` set): no run is made."""

    status: Literal["evaluated"]
    workflow: str
    eval: EvalResultOut


ERRORS = {
    400: ErrorOut,
    401: ErrorOut,
    403: ErrorOut,
    404: ErrorOut,
    409: ErrorOut,
    413: ErrorOut,
    422: ErrorOut,
    429: ErrorOut,
    503: ErrorOut,
}


# OpenAPI links: how an answer's values feed the next request (a run's id into its other
# operations, its workflow's slug into GET /workflows/{slug}). Clients and tools follow
# them (schemathesis' stateful tests do: tests/traces/test_api_schema_fuzz.py).
def _links(run_id: str, *, workflow: str | None = None) -> dict:
    links = {
        name: {"operationId": f"traces_api_{operation}", "parameters": {"run_id": run_id}}
        for name, operation in (
            ("GetRun", "get_run"),
            ("AppendEvents", "append_events"),
            ("ClaimRun", "claim_run"),
            ("ReportResult", "report_result"),
            ("RecordOutcome", "record_outcome"),
            ("ReplayRun", "replay_run"),
        )
    }
    if workflow:
        links["GetWorkflow"] = {
            "operationId": "traces_api_get_workflow",
            "parameters": {"slug": workflow},
        }
    return links


def _linked(*statuses: int, run_id: str = "$response.body#/id", workflow: str | None = None):
    """openapi_extra declaring the run links on the answers with these statuses."""
    links = _links(run_id, workflow=workflow)
    return {"responses": {status: {"links": links} for status in statuses}}


_RUN_LINKS = _linked(200, workflow="$response.body#/workflow")


def run_out(run: Run, *, workflow_slug: str | None = None) -> dict:
    decision = None
    if run.decision:
        # The agent learns what was decided and the final params, not who decided.
        decision = {k: run.decision.get(k) for k in ("verdict", "action", "params", "reason", "at")}
    return {
        "id": str(run.id),
        "workflow": workflow_slug or run.workflow.slug,
        "rung": run.rung,
        "status": run.status,
        "queue": run.queue or None,
        "decision": decision,
        "result": run.result,
        "outcome": run.outcome or None,
        "policy": run.policy,
        "escalation_reason": run.escalation_reason or None,
        "deadline_at": run.deadline_at if run.status == RunStatus.PENDING_REVIEW else None,
        "workflow_stopped": _workflow_stopped(run),
        "created_at": run.created_at,
        "trace": {"events": run.trace_length, "head": run.trace_head},
    }


def _workflow_stopped(run: Run) -> dict | None:
    # The gateway sets it on the runs it answers for (the state the run was judged
    # under, no extra query); every other answer reads the run's workflow.
    known = run.__dict__.get("workflow_stopped", _UNKNOWN)
    if known is not _UNKNOWN:
        return known
    workflow = run.workflow
    return stop_out(at=workflow.stopped_at, reason=workflow.stop_reason)


_UNKNOWN = object()


# -- runs -------------------------------------------------------------------------------


# The one endpoint that may authenticate from memory: its INSERT re-checks the token
# (traces.fastpath). Every other endpoint reads the token from the database each time.
@api.post(
    "/runs",
    response={200: RunOut | EvalSubmittedOut, 201: RunOut | EvalSubmittedOut, **ERRORS},
    tags=["runs"],
    auth=AgentBearer(memo=True),
    openapi_extra=_linked(200, 201, workflow="$response.body#/workflow"),
)
def submit_run(request, payload: RunIn):
    """Submit one run. 201 when stored; 200 when this idempotency key was already seen.
    With `eval_case`, an eval submission instead: scored and stored as an eval result
    (201, or 200 for a repeat in the same pass), never a run (docs/evals.md)."""
    if payload.eval_case is not None:  # off the hot path before anything else is done
        return _submit_eval(request, payload)
    body = payload.model_dump(mode="json", exclude_unset=False)
    pseudonyms: dict = {}
    run, created = gateway.run_submit(auth=request.auth, body=body, pseudonyms=pseudonyms)
    out = run_out(run, workflow_slug=payload.workflow)
    out["pseudonyms"] = pseudonyms
    # Rendered here rather than re-validated against RunOut: run_out() builds exactly its
    # fields (tests/traces/test_gateway.py checks the body against the schema), and this
    # endpoint is the hot path. Times as every other answer has them (DjangoJSONEncoder).
    return HttpResponse(
        _ENCODE(out),
        status=201 if created else 200,
        content_type="application/json; charset=utf-8",
    )


_ENCODE = DjangoJSONEncoder(ensure_ascii=False).encode  # built once, not per call


def _submit_eval(request, payload: RunIn) -> HttpResponse:
    # POST /runs may authenticate from the per-process memo, which only the run INSERT
    # re-checks: an eval result is written here, so the token is read afresh.
    auth = request.auth
    if auth.from_memo:
        auth = authenticate_hash(auth.token_hash)
    result, created = evals.eval_result_submit(
        auth=auth,
        workflow=_workflow_for(auth, payload.workflow),
        case_id=payload.eval_case,
        pass_label=evals.pass_label_check(payload.eval_pass),
        proposal=payload.proposal.model_dump(mode="json") if payload.proposal else None,
    )
    out = {
        "status": "evaluated",
        "workflow": payload.workflow,
        "eval": {
            "case": result.case_id,
            "pass": result.pass_label,
            "matched": result.matched,
            "submitted_at": result.submitted_at,
        },
    }
    return HttpResponse(
        _ENCODE(out), status=201 if created else 200, content_type="application/json"
    )


# -- POST /runs without ninja's per-request layers ----------------------------------------
# The gateway's hot path. ninja's dispatch around a view (auth callbacks probed for
# coroutines on every call, a scratch response, nested wrappers, URL resolution through
# the API's include) costs some 7 % of this endpoint's CPU, so ladder/urls.py routes
# POST /api/v1/runs here first. It does what ninja does for submit_run, in the same
# order and with the same pieces: the same AgentBearer, the same StrictJsonParser, RunIn
# under the same "body.payload" location, the same exception handlers (api.on_exception),
# then the very submit_run above; the operation stays declared on `api` for the OpenAPI
# document and answers every other method. tests/traces/test_submit_view.py holds the two
# to the same answers, status and body, for good and bad requests alike.


class _SubmitBody(BaseModel):
    payload: RunIn


_SUBMIT_AUTH = AgentBearer(memo=True)
_PARSER = StrictJsonParser()


def _submit_payload(request: HttpRequest) -> RunIn:
    raw = request.body  # over DATA_UPLOAD_MAX_MEMORY_SIZE: RequestDataTooBig, a 413
    data = {}
    if raw:
        try:
            data = {"payload": _PARSER.parse_body(request)}
        except Exception as exc:
            message = "Cannot parse request body"
            if settings.DEBUG:
                message += f" ({exc})"
            raise HttpError(400, message) from exc
    try:
        return _SubmitBody.model_validate(data).payload
    except PydanticValidationError as exc:
        errors = []
        for err in exc.errors(include_url=False):
            err = dict(err)
            err["loc"] = ("body", *err["loc"])
            err.pop("input", None)
            errors.append(err)
        raise ValidationError(errors) from None


@csrf_exempt
def submit_run_endpoint(request: HttpRequest) -> HttpResponse:
    if request.method != "POST":
        return _ninja_view("submit_run")(request)
    try:
        auth = _SUBMIT_AUTH(request)
        if not auth:
            raise AuthenticationError
        request.auth = auth
        return submit_run(request, _submit_payload(request))
    except Exception as exc:  # as ninja: a handler answers, anything else propagates
        return api.on_exception(request, exc)


def _ninja_view(name: str):
    """ninja's own view for one of `api`'s URL names (looked up once)."""
    view = _NINJA_VIEWS.get(name)
    if view is None:
        patterns = api.urls[0]
        view = next(p.callback for p in patterns if getattr(p, "name", None) == name)
        _NINJA_VIEWS[name] = view
    return view


_NINJA_VIEWS: dict = {}


class WaitQuery(BaseModel):
    wait: float = Field(0, ge=0, allow_inf_nan=False)


@api.get(
    "/runs/{run_id}", response={200: RunOut, **ERRORS}, tags=["runs"], openapi_extra=_RUN_LINKS
)
def get_run(request, run_id: str, query: Query[WaitQuery]):
    """Status and decision; `?wait=S` long-polls up to S seconds for a decision. A run
    past its review deadline is decided by it here if the sweep has not yet done so, and
    a poll ends at the deadline at the latest (docs/deadlines.md)."""
    run = agent.run_for_agent(auth=request.auth, run_id=run_id)
    run = deadlines.run_after_deadline(run)
    seconds = deadlines.wait_seconds(run, min(query.wait, settings.LADDER_MAX_WAIT_SECONDS))
    # Without holding this thread under the documented server (traces/longpoll.py).
    run = run_wait(request, auth=request.auth, run=run, seconds=seconds)
    if run is None:  # parked: the server drops this answer and calls the view again
        return HttpResponse(status=202)
    return run_out(deadlines.run_after_deadline(run))


class EventIn(BaseModel):
    # An input event must carry its input (traces.services.agent: 422 `invalid_event`).
    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={
            "if": {"properties": {"type": {"const": "input"}}},
            "then": {"required": ["input"], "properties": {"input": {"not": {"type": "null"}}}},
        },
    )
    # Any other type is a 422 `event_type_not_allowed` (traces.services.agent), which
    # names the types agents may send; the document lists them.
    type: str = Field(
        ...,
        min_length=1,
        max_length=20,
        json_schema_extra={"enum": sorted(map(str, agent.AGENT_EVENT_TYPES))},
    )


class EventsIn(BaseModel):
    events: list[EventIn] = Field(..., min_length=1, max_length=500)


class AppendedOut(BaseModel):
    appended: int
    trace: TraceOut


@api.post(
    "/runs/{run_id}/events",
    response={201: AppendedOut, **ERRORS},
    tags=["runs"],
    openapi_extra=_linked(201, run_id="$request.path.run_id"),
)
def append_events(request, run_id: str, payload: EventIn | EventsIn):
    """Append one `{type, …}` event, or `{"events": [...]}`; agents may add input,
    tool_call and output events."""
    run = agent.run_for_agent(auth=request.auth, run_id=run_id)
    items = payload.events if isinstance(payload, EventsIn) else [payload]
    events = [item.model_dump(mode="json") for item in items]
    created = agent.run_append_events(auth=request.auth, run=run, events=events)
    run.refresh_from_db(fields=["trace_head", "trace_length"])
    return Status(
        201,
        {"appended": len(created), "trace": {"events": run.trace_length, "head": run.trace_head}},
    )


@api.post(
    "/runs/{run_id}/claim",
    response={200: RunOut, **ERRORS},
    tags=["runs"],
    openapi_extra=_RUN_LINKS,
)
def claim_run(request, run_id: str):
    """Take an approved action before carrying it out (agent executors). Exactly one
    claim succeeds; a second gets 409 `already_claimed`, so the action is done once."""
    run = agent.run_for_agent(auth=request.auth, run_id=run_id)
    return run_out(agent.run_claim(auth=request.auth, run=run))


class ResultIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    status: Literal["succeeded", "failed"]
    output: Any = None
    error: str | None = Field(None, max_length=10_000)


@api.post(
    "/runs/{run_id}/result",
    response={200: RunOut, **ERRORS},
    tags=["runs"],
    openapi_extra=_RUN_LINKS,
)
def report_result(request, run_id: str, payload: ResultIn):
    """The agent reports how its approved (ideally claimed) action went (agent executors)."""
    run = agent.run_for_agent(auth=request.auth, run_id=run_id)
    run = agent.run_report_result(
        auth=request.auth,
        run=run,
        succeeded=payload.status == "succeeded",
        output=payload.output,
        error=payload.error,
    )
    return run_out(run)


class OutcomeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    label: Literal["correct", "wrong"]
    source: str = Field(..., min_length=1, max_length=100)
    note: str = Field("", max_length=10_000)


@api.post(
    "/runs/{run_id}/outcome",
    response={200: RunOut, **ERRORS},
    tags=["runs"],
    openapi_extra=_RUN_LINKS,
)
def record_outcome(request, run_id: str, payload: OutcomeIn):
    """Label how a run turned out; a wrong executed run is a silent failure."""
    run = agent.run_for_agent(auth=request.auth, run_id=run_id)
    run = agent.run_record_outcome(
        actor=request.auth.actor,
        run=run,
        label=payload.label,
        source=payload.source,
        note=payload.note,
    )
    return run_out(run)


class ReplayProblemOut(BaseModel):
    seq: int | None  # None: the problem is the chain's, not one event's (a missing tail)
    problem: str


class ReplayOut(BaseModel):
    id: str
    complete: bool
    verified: bool
    missing: list[str]
    problems: list[ReplayProblemOut]
    run: dict[str, Any]
    steps: list[dict[str, Any]]


@api.get("/runs/{run_id}/replay", response={200: ReplayOut, **ERRORS}, tags=["runs"])
def replay_run(request, run_id: str):
    """The run rebuilt from its trace events alone, with `complete` and `verified`;
    reviewers appear as "reviewer", never by name (the people's replay page names them)."""
    run = agent.run_for_agent(auth=request.auth, run_id=run_id)
    return run_replay_for_agent(run=run)


# -- workflows --------------------------------------------------------------------------


def _workflow_for(auth: AgentAuth, slug: str) -> Workflow:
    """Same answers as POST /runs: 404 unknown workflow, 403 not in this token's scope."""
    workflow = Workflow.objects.filter(slug=slug).first()
    if workflow is None:
        raise NotFound(f"unknown workflow '{slug}'", code="unknown_workflow")
    if workflow.pk not in auth.workflow_ids:
        raise Forbidden(
            f"this token is not scoped to workflow '{slug}'", code="workflow_not_allowed"
        )
    return workflow


class ActionTypeOut(BaseModel):
    name: str
    reversible: bool
    executor: str
    value_param: str | None
    param_schema: dict[str, Any]


class CertificateOut(BaseModel):
    id: str
    rung: int
    policy_version: int | None
    # As written (isoformat, "+00:00"), not re-rendered: typed as date-time strings.
    issued_at: str = Field(..., json_schema_extra={"format": "date-time"})
    valid_until: str | None = Field(..., json_schema_extra={"format": "date-time"})
    valid: bool
    key_id: str
    evidence_hash: str


class WorkflowOut(BaseModel):
    slug: str
    name: str
    rung: int
    rung_label: str
    max_rung: int
    risk_class: str
    action_types: list[ActionTypeOut]
    policy: dict[str, Any] | None
    draft_policy: dict[str, Any] | None
    review_deadline_seconds: int
    deadline_action: str
    gate_snapshot: dict[str, Any] | None
    rung_history: list[dict[str, Any]]
    certificate: CertificateOut | None
    drift: dict[str, Any] | None
    stopped: WorkflowStoppedOut | None


@api.get("/workflows/{slug}", response={200: WorkflowOut, **ERRORS}, tags=["workflows"])
def get_workflow(request, slug: str):
    """Rung, action types, the policy in force (`policy`, L4/L5) or the draft evaluated in
    shadow (`draft_policy`, L2/L3), the review deadline, latest gate snapshot, and the
    autonomy certificate the workflow stands on (`certificate`, or null), the latest
    drift check (`drift`, or null; docs/drift.md), and whether it is stopped
    (`stopped`: `{at, reason}`, or null; docs/stop.md)."""
    workflow = _workflow_for(request.auth, slug)
    latest = policy_latest(workflow)
    snapshot = gate_snapshot_latest(workflow=workflow)
    drift = drift_check_latest(workflow=workflow)
    in_force = workflow.rung >= Rung.L4
    return {
        "slug": workflow.slug,
        "name": workflow.name,
        "rung": workflow.rung,
        "rung_label": workflow.rung_label,
        "max_rung": workflow.max_rung,
        "risk_class": workflow.risk_class,
        "action_types": [
            {
                "name": a.name,
                "reversible": a.reversible,
                "executor": a.executor,
                "value_param": a.value_param or None,
                "param_schema": a.param_schema,
            }
            for a in workflow.action_types.all()
        ],
        "policy": policy_out(latest, author=False) if in_force else None,
        "draft_policy": None if in_force else policy_out(latest, author=False),
        "review_deadline_seconds": workflow.review_deadline_seconds,
        "deadline_action": workflow.deadline_action,
        "gate_snapshot": snapshot.as_json() if snapshot else None,
        "rung_history": rung_history(workflow=workflow, people=False),
        "certificate": _certificate_out(certificate_current(workflow=workflow)),
        "drift": drift.as_json() if drift else None,
        # Agents learn when and why, not who (as in rung_history).
        "stopped": stop_out(at=workflow.stopped_at, reason=workflow.stop_reason),
    }


class EvalCasesQuery(BaseModel):
    after: int = Field(0, ge=0)
    limit: int = Field(100, ge=1, le=500)


class EvalCaseOut(BaseModel):
    id: int
    input: Any
    action_types: list[str]


class EvalCasesOut(BaseModel):
    cases: list[EvalCaseOut]
    next: str | None


@api.get("/workflows/{slug}/eval-cases", response={200: EvalCasesOut, **ERRORS}, tags=["evals"])
def get_eval_cases(request, slug: str, query: Query[EvalCasesQuery]):
    """The workflow's active eval cases, oldest first: `{cases: [{id, input,
    action_types}], next}`; pass `?after=<next>` for the following page (`next` is null
    on the last). The expected answers are not sent (docs/evals.md)."""
    workflow = _workflow_for(request.auth, slug)
    cases, after = eval_cases_for_agent(workflow=workflow, after=query.after, limit=query.limit)
    return {"cases": cases, "next": str(after) if after is not None else None}


def _certificate_out(certificate: Certificate | None) -> dict | None:
    """The certificate the workflow stands on, for agents: no people named."""
    if certificate is None:
        return None
    return {
        "id": str(certificate.id),
        "rung": certificate.rung,
        "policy_version": certificate.policy_version,
        "issued_at": certificate.issued_at.isoformat(),
        "valid_until": certificate.valid_until.isoformat() if certificate.valid_until else None,
        "valid": certificate.valid_at(timezone.now()),
        "key_id": certificate.key_id,
        "evidence_hash": certificate.evidence_hash,
    }


@api.get(
    "/certificates/public-key",
    auth=None,
    tags=["certificates"],
    openapi_extra={
        "responses": {
            200: {
                "description": "OK",
                "content": {"text/plain": {"schema": {"type": "string"}}},
            }
        }
    },
)
def certificate_public_key(request):
    """The Ed25519 public key (PEM) autonomy certificates are verified with; no token
    needed (docs/certificates.md)."""
    return HttpResponse(certificate_public_key_pem(), content_type="text/plain; charset=utf-8")


def _storable_time(at: datetime) -> datetime:
    """`at` in UTC, if PostgreSQL can store it and Python can read it back: an offset
    past ±15:59 was a 500, and 0001-01-01T00:00+14:00 (a year before 1 in UTC) stored a
    point no query could read."""
    try:
        utc = at.astimezone(UTC) if at.tzinfo else at.replace(tzinfo=UTC)
    except (OverflowError, ValueError):
        utc = None
    if utc is None or not 1 < utc.year < 9999:
        raise ValueError("must fall between the years 2 and 9998 in UTC")
    return utc


class MetricPointIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    metric: str = Field(..., min_length=1, max_length=100)
    value: float = Field(..., allow_inf_nan=False)
    at: Annotated[datetime, AfterValidator(_storable_time)]


class MetricsIn(BaseModel):
    points: list[MetricPointIn] = Field(..., min_length=1, max_length=1000)


class StoredOut(BaseModel):
    stored: int


@api.post("/workflows/{slug}/metrics", response={201: StoredOut, **ERRORS}, tags=["workflows"])
def post_metrics(request, slug: str, payload: MetricPointIn | MetricsIn):
    """Business outcome points: one `{metric, value, at}` or `{"points": [...]}`."""
    workflow = _workflow_for(request.auth, slug)
    points = payload.points if isinstance(payload, MetricsIn) else [payload]
    stored = agent.metric_record(workflow=workflow, points=[p.model_dump() for p in points])
    return Status(201, {"stored": len(stored)})


@csrf_exempt  # agents send no CSRF token: a POST to a wrong path must still get JSON
def api_not_found(request, path=""):
    return error_response(404, "not_found", f"no API endpoint at /{request.path.lstrip('/')}")
