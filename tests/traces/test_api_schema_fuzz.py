"""schemathesis against the gateway's own OpenAPI document (/api/v1/openapi.json).

Every operation is called in-process through Django's WSGI application with generated
requests, valid (positive) and invalid (negative), mostly with a real agent token, some
without one or with a bad one. Path parameters and a few body fields are steered towards
the workflows, runs and eval cases made here, so that requests get past "unknown run" and
reach the code behind it. Then a stateful run follows the schema's OpenAPI links (POST
/runs → GET /runs/{id}, events, claim, result, outcome, replay, the workflow).

Every answer must be something the document declares: no 5xx, a declared status code,
the declared content type, a body matching the declared schema. Failures are collected
rather than raised (no shrinking, one report of all of them); the number of requests sent
is counted so the campaign cannot pass by generating nothing. The draws are
derandomized (hypothesis, and a Random seeded by each generated case for the steering),
and each scenario starts from the same database (a savepoint rolled back after it); the
stateful part still varies a little from run to run, since the ids the answers carry are
new each time and links pass them on.
"""

import collections
import json
import random

import hypothesis
import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections, transaction
from hypothesis import HealthCheck, given
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from ladder.services import certificate_issue
from tests.factories import ActionTypeFactory, WorkflowFactory
from tests.traces.test_policy_gateway import envelope
from traces.models import Run
from traces.services.decisions import DecisionInput, run_decide
from traces.services.evals import eval_cases_import
from traces.services.policy import policy_set
from traces.services.tokens import token_create

pytestmark = pytest.mark.django_db

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
SEED = 15
EXAMPLES_PER_OPERATION_AND_MODE = 55  # 10 operations x 2 modes + the public key
STATEFUL_SCENARIOS = 200
BAD_TOKEN = "lat_" + "0" * 40

REPLY_SCHEMA = {"to": {"type": "string"}, "subject": {"type": "string"}, "body": {"type": "string"}}


@pytest.fixture
def wsgi_app():
    """Django's WSGI application, called in this thread inside the test's transaction.
    As Django's test client does, the request signals must not close the connection."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        yield get_wsgi_application()
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


class World:
    """Workflows at L1, L3 and L4 (certified) in the token's scope, one outside it; runs
    waiting, approved, rejected; eval cases; an agent token."""

    def __init__(self, app):
        self.app = app
        fuzz = WorkflowFactory(slug="fuzz", rung=3)
        ActionTypeFactory(workflow=fuzz, name="refund.issue")
        ActionTypeFactory(workflow=fuzz, name="ticket.close", param_schema={}, value_param="")
        l1 = WorkflowFactory(slug="fuzz-l1", rung=1)
        ActionTypeFactory(workflow=l1, name="reply.send", param_schema=REPLY_SCHEMA, value_param="")
        # L4 under a real envelope (refunds up to 200 EUR allowed), on its certificate: the
        # policy approves most steered refunds, so claim and result are reached too.
        l4 = WorkflowFactory(slug="fuzz-l4", rung=4, certified=False)
        ActionTypeFactory(workflow=l4, name="refund.issue")
        policy_set(workflow=l4, document=envelope(), by=None)
        certificate_issue(
            workflow=l4,
            rung=4,
            policy_version=1,
            evidence_hash="0" * 64,
            approved_by=None,
            promotion_ref="tests.traces.test_api_schema_fuzz",
        )
        other = WorkflowFactory(slug="not-mine", rung=3)
        ActionTypeFactory(workflow=other, name="refund.issue")
        self.actions = {
            "fuzz": ["refund.issue", "ticket.close"],
            "fuzz-l1": ["reply.send"],
            "fuzz-l4": ["refund.issue"],
            "not-mine": ["refund.issue"],
        }
        _t, self.token = token_create(name="schemathesis", workflows=[fuzz, l1, l4])
        _t, other_token = token_create(name="other", workflows=[other])
        cases = eval_cases_import(
            workflow=fuzz,
            text="\n".join(
                json.dumps(line)
                for line in (
                    {
                        "input": {"ticket": "Refund A-1"},
                        "expected": {
                            "action": "refund.issue",
                            "params": {"order_id": "A-1", "amount": 30},
                        },
                    },
                    {"input": {"ticket": "Where is it?"}, "expected": {"action": "ticket.close"}},
                )
            ),
            by=None,
        )
        self.eval_case_ids = [c.pk for c in cases]
        runs = [self.submit(self.token, "fuzz", f"seed-{n}") for n in range(3)]
        runs.append(self.submit(self.token, "fuzz-l4", "seed-l4"))
        runs.append(self.submit(other_token, "not-mine", "seed-other"))
        for run_id, verdict in ((runs[1], "approved"), (runs[2], "rejected")):
            stored = Run.objects.get(pk=run_id)
            run_decide(
                run_id=stored.pk,
                user_id=None,
                actor_name="seed",
                seen_version=stored.version,
                seen_hash="x",
                decision=DecisionInput(
                    verdict=verdict,
                    action="refund.issue",
                    params=stored.proposal["params"],
                    extra={},
                ),
            )
        self.run_ids = runs
        self.slugs = list(self.actions)

    def submit(self, token: str, slug: str, key: str) -> str:
        from werkzeug.test import Client

        resp = Client(self.app).post(
            "/api/v1/runs",
            json={
                "workflow": slug,
                "idempotency_key": key,
                "input": {"m": "Refund my order, ana@example.com"},
                "proposal": {
                    "action": "refund.issue",
                    "params": {"order_id": "A-1", "amount": 12.5, "currency": "EUR"},
                },
            },
            headers={"Authorization": f"Bearer {token}"},
        )
        assert resp.status_code == 201, resp.get_data(as_text=True)
        return resp.json["id"]

    def steer(self, case, pick: random.Random, *, paths: bool = True) -> None:
        """Point a generated request at things that exist, most of the time (the rest
        keeps the generated values: unknown runs, workflows and cases)."""
        if paths and pick.random() < 0.75:
            if "run_id" in (case.path_parameters or {}):
                case.path_parameters["run_id"] = pick.choice(self.run_ids)
            if "slug" in (case.path_parameters or {}):
                case.path_parameters["slug"] = pick.choice(self.slugs)
        body = case.body
        if case.operation.path == "/api/v1/runs" and isinstance(body, dict):
            if pick.random() < 0.75:
                # In scenarios, mostly the L4 workflow, whose runs the policy approves
                # (then claim and result have something to act on).
                slug = pick.choice(self.slugs if paths else ["fuzz-l4", "fuzz-l4", *self.slugs])
                body["workflow"] = slug
                proposal = body.get("proposal")
                if isinstance(proposal, dict) and pick.random() < 0.8:
                    proposal["action"] = pick.choice(self.actions[slug])
                    if isinstance(proposal.get("params"), dict) and pick.random() < 0.7:
                        proposal["params"].update(
                            {"order_id": "A-7", "amount": 9.5, "currency": "EUR"}
                        )
            if body.get("eval_case") is not None and pick.random() < 0.7:
                body["eval_case"] = pick.choice(self.eval_case_ids)
                body["workflow"] = "fuzz"

    def headers(self, case, pick: random.Random) -> dict:
        """Mostly the agent's token; now and then none, or one that does not exist.
        (schemathesis also sends some requests without the header on its own.)"""
        roll = pick.random()
        if roll < 0.08:
            for name in list(case.headers or {}):
                if name.lower() == "authorization":
                    del case.headers[name]
            return {}
        if roll < 0.15:
            return {"Authorization": f"Bearer {BAD_TOKEN}"}
        return {"Authorization": f"Bearer {self.token}"}


@pytest.fixture
def world(wsgi_app, settings):
    # Every request counts, not the token's rate (limits have tests of their own), and a
    # generated ?wait= must not hold the test for up to 30 s.
    settings.LADDER_RATE_LIMIT_PER_SECOND = 0
    settings.LADDER_MAX_WAIT_SECONDS = 0
    return World(wsgi_app)


@pytest.fixture
def schema(wsgi_app):
    return schemathesis.openapi.from_wsgi("/api/v1/openapi.json", wsgi_app)


def _pick(case, *, step: int | None = None) -> random.Random:
    """The steering draws for one request, seeded by what was generated for it, so the
    same case is always steered the same way. In a scenario, path parameters come from
    earlier answers (new ids each time): its place in the scenario is used instead."""
    body = case.body if isinstance(case.body, (dict, list, str, bytes, int, float)) else None
    where = case.path_parameters if step is None else step
    return random.Random(f"{SEED}|{case.operation.label}|{where!r}|{body!r}|{case.query!r}")


class Report:
    """What was sent and answered, and every distinct check failure with one example."""

    def __init__(self):
        self.sent = collections.Counter()
        self.answers = collections.Counter()
        self.failures: dict[tuple, str] = {}

    def check(self, case, response, label: str) -> None:
        self.sent[label] += 1
        self.answers[case.operation.label, response.status_code] += 1
        try:
            case.validate_response(response, checks=CHECKS)
        except BaseException as exc:  # a FailureGroup of one or more failed checks
            for failure in getattr(exc, "exceptions", [exc]):
                key = (case.operation.label, type(failure).__name__, str(failure)[:300])
                self.failures.setdefault(
                    key,
                    f"{case.as_curl_command()}\n  → {response.status_code} {response.text[:300]}",
                )

    def problems(self) -> str:
        return "\n\n".join(
            f"{label}: {kind}: {message}\n  {example}"
            for (label, kind, message), example in self.failures.items()
        )

    def summary(self) -> str:
        return f"{sum(self.sent.values())} requests; answers: {sorted(self.answers.items())}"


def _settings(max_examples: int) -> hypothesis.settings:
    return hypothesis.settings(
        max_examples=max_examples,
        deadline=None,
        derandomize=True,
        database=None,
        phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate],
        suppress_health_check=list(HealthCheck),
    )


def _campaign(operation, mode, world: World, report: Report) -> None:
    """One operation, one generation mode: generated requests, steered, sent, checked."""
    label = f"{operation.label} {mode.value}"

    @given(case=operation.as_strategy(generation_mode=mode))
    @_settings(EXAMPLES_PER_OPERATION_AND_MODE)
    def one(case):
        pick = _pick(case)
        world.steer(case, pick)
        response = case.call(headers=world.headers(case, pick))
        report.check(case, response, label)

    try:
        one()
    except hypothesis.errors.Unsatisfiable:
        # Nothing to make invalid: the public key takes no parameters at all.
        assert mode is schemathesis.GenerationMode.NEGATIVE
        assert operation.label == "GET /api/v1/certificates/public-key"


def test_every_operation_answers_as_its_schema_declares(world, schema):
    report = Report()
    for result in schema.get_all_operations():
        for mode in (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE):
            _campaign(result.ok(), mode, world, report)
    print(report.summary())
    assert not report.failures, report.problems()
    # Every operation, in both modes but the public key's (it takes nothing to get wrong).
    assert len(report.sent) == 2 * len(list(schema.get_all_operations())) - 1
    assert sum(report.sent.values()) >= 1000
    # The steering works: requests get past "unknown" to the operations' real answers.
    for label, status in (
        ("POST /api/v1/runs", 201),
        ("POST /api/v1/runs/{run_id}/events", 201),
        ("POST /api/v1/runs/{run_id}/claim", 200),
        ("POST /api/v1/runs/{run_id}/result", 200),
        ("POST /api/v1/runs/{run_id}/outcome", 200),
        ("GET /api/v1/runs/{run_id}/replay", 200),
        ("GET /api/v1/workflows/{slug}/eval-cases", 200),
        ("POST /api/v1/workflows/{slug}/metrics", 201),
    ):
        assert report.answers[label, status] > 0, (label, status, report.summary())


def test_following_the_schemas_links_answers_as_declared(world, schema):
    """Stateful: scenarios of up to 8 calls, where a call may take its run id (or workflow
    slug) from an earlier answer through the document's OpenAPI links."""
    report = Report()

    class Scenarios(schema.as_state_machine()):
        # Each scenario starts from the same database, so that the same draws meet the
        # same answers (hypothesis refuses a generation that depends on outside state).
        def setup(self):
            self.savepoint = transaction.savepoint_create()
            self.steps = 0

        def teardown(self):
            transaction.savepoint_rollback(self.savepoint)

        def before_call(self, case):
            self.steps += 1
            self.pick = _pick(case, step=self.steps)
            world.steer(case, self.pick, paths=False)

        def get_call_kwargs(self, case):
            return {"headers": world.headers(case, self.pick)}

        def validate_response(self, response, case, additional_checks=None, **kwargs):
            report.check(case, response, case.operation.label)

    Scenarios.run(
        settings=hypothesis.settings(
            max_examples=STATEFUL_SCENARIOS,
            stateful_step_count=8,
            deadline=None,
            derandomize=True,
            database=None,
            phases=[hypothesis.Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
    )
    print(report.summary())
    assert not report.failures, report.problems()
    assert sum(report.sent.values()) >= 1000
    # Links were followed: ids from earlier answers reached the run's other operations
    # (answers only a real run or workflow gets). Which of them, and how often, depends
    # on the ids the answers carried (new on every run), so the sum is what is asserted.
    reached = sum(
        report.answers[label, status]
        for label, status in (
            ("GET /api/v1/runs/{run_id}", 200),
            ("POST /api/v1/runs/{run_id}/events", 201),
            ("POST /api/v1/runs/{run_id}/claim", 409),
            ("POST /api/v1/runs/{run_id}/result", 409),
            ("POST /api/v1/runs/{run_id}/outcome", 200),
            ("GET /api/v1/runs/{run_id}/replay", 200),
            ("GET /api/v1/workflows/{slug}", 200),
        )
    )
    assert reached > 0, report.summary()
