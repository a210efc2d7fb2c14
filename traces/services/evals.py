"""Eval sets (docs/evals.md): cases imported from JSON Lines or saved from a decided run,
and agents' proposals for them scored into eval results. A scored proposal is never a
run: nothing is queued, decided or executed."""

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.contrib.auth.models import User
from django.db import IntegrityError, transaction
from django.utils import timezone

from ladder import gates
from ladder.decide import validate_params
from ladder.errors import Conflict, Forbidden, NotFound, Unprocessable
from ladder.models import Workflow
from traces.auth import AgentAuth
from traces.chain import canonical_json
from traces.models import EvalCase, EvalResult, Run, TraceEvent
from traces.services.redactors import agent_redaction_budget, redactor_for

# An import is one transaction: bounded so that one upload cannot hold it for long.
MAX_IMPORT_LINES = 10_000
MAX_IMPORT_BYTES = 8 * 1024 * 1024
LINE_KEYS = {"input", "expected", "wrong", "note"}
# A pass the server labels (the agent sent no `eval_pass`) stays open for the same
# agent while it keeps submitting; after this long without a submission a new one begins.
AUTO_PASS_IDLE = timedelta(hours=1)
PASS_LABEL_MAX = 100
TEXT_MAX = 1000


class EvalImportRefused(Unprocessable):
    """Nothing was stored: `problems` lists every bad line as (line number, problem)."""

    code = "eval_import_refused"

    def __init__(self, problems: list[tuple[int, str]]):
        self.problems = problems
        head = "; ".join(f"line {n}: {p}" for n, p in problems[:5])
        more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
        super().__init__(
            f"nothing was imported: {len(problems)} bad line(s): {head}{more}",
            details={"problems": [{"line": n, "problem": p} for n, p in problems]},
        )


def _schemas(workflow: Workflow) -> dict[str, dict]:
    return {a.name: a.param_schema or {} for a in workflow.action_types.all()}


def _proposal_problems(
    what: str, value: Any, schemas: dict[str, dict], *, need_why: bool = False
) -> list[str]:
    if not isinstance(value, dict):
        return [f"'{what}' must be an object with action and params"]
    allowed = {"action", "params", "why"} if need_why else {"action", "params"}
    problems = [f"'{what}.{k}': unknown key" for k in sorted(set(value) - allowed)]
    action, params = value.get("action"), value.get("params", {})
    if not isinstance(action, str) or not action:
        return [*problems, f"'{what}.action' must be a non-empty string"]
    if action not in schemas:
        known = ", ".join(sorted(schemas)) or "none"
        return [*problems, f"'{what}.action': {action!r} is not an action type (known: {known})"]
    if not isinstance(params, dict):
        return [*problems, f"'{what}.params' must be an object"]
    try:
        validate_params(schemas[action], params)
    except Unprocessable as exc:
        problems.append(f"'{what}.params': {exc.message.removeprefix('invalid params: ')}")
    if need_why:
        why = value.get("why")
        if not isinstance(why, str) or not why.strip():
            problems.append(f"'{what}.why' must say why the proposal is wrong")
        elif len(why) > TEXT_MAX:
            problems.append(f"'{what}.why' is over {TEXT_MAX} characters")
    return problems


def eval_line_problems(line: Any, schemas: dict[str, dict]) -> list[str]:
    """What is wrong with one parsed JSON Lines case ([] when it is good). `schemas` maps
    the workflow's action types to their param schemas."""
    if not isinstance(line, dict):
        return ["must be a JSON object"]
    problems = [f"'{k}': unknown key" for k in sorted(set(line) - LINE_KEYS)]
    if "input" not in line:
        problems.append("'input' is missing")
    if "expected" not in line:
        problems.append("'expected' is missing")
    else:
        problems += _proposal_problems("expected", line["expected"], schemas)
    wrong = line.get("wrong")
    if wrong is not None:
        problems += _proposal_problems("wrong", wrong, schemas, need_why=True)
        expected = line.get("expected")
        if not problems and _same(expected, wrong):
            problems.append("'wrong' is the expected action and params: it is not wrong")
    note = line.get("note", "")
    if not isinstance(note, str) or len(note) > TEXT_MAX:
        problems.append(f"'note' must be a string of at most {TEXT_MAX} characters")
    return problems


def _same(a: dict, b: dict) -> bool:
    return gates.matches_first(
        {"action": a["action"], "params": a.get("params") or {}},
        b["action"],
        b.get("params") or {},
        canonical=canonical_json,
    )


@dataclass(frozen=True)
class _Parsed:
    number: int
    line: dict


def eval_lines_parse(*, workflow: Workflow, text: str) -> list[_Parsed]:
    """Every case of a JSON Lines document, checked; EvalImportRefused naming every bad
    line when any is bad (blank lines are skipped)."""
    if len(text.encode("utf-8")) > MAX_IMPORT_BYTES:
        raise EvalImportRefused([(0, f"the file is over {MAX_IMPORT_BYTES} bytes")])
    schemas = _schemas(workflow)
    problems: list[tuple[int, str]] = []
    parsed: list[_Parsed] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        if len(parsed) + len(problems) >= MAX_IMPORT_LINES:
            problems.append((number, f"more than {MAX_IMPORT_LINES} cases in one import"))
            break
        try:
            line = json.loads(raw)
        except ValueError as exc:
            problems.append((number, f"not valid JSON ({exc.msg})"))
            continue
        found = eval_line_problems(line, schemas)
        if found:
            problems.extend((number, p) for p in found)
        else:
            parsed.append(_Parsed(number, line))
    if not parsed and not problems:
        problems.append((0, "no cases: the file is empty"))
    if problems:
        raise EvalImportRefused(problems)
    return parsed


def _redacted_case(workflow: Workflow, number: int, line: dict) -> dict:
    """The case's fields, redacted as a run's would be (input and params through the
    workflow's redactor, the people's texts through its identifier-only one)."""
    redactor = redactor_for(workflow)
    people = redactor.without_people()
    try:
        with agent_redaction_budget() as budget:
            input_ = redactor.redact(line["input"], None, budget)
            expected = redactor.redact(line["expected"].get("params") or {}, None, budget)
            wrong = line.get("wrong")
            wrong_params = (
                redactor.redact(wrong.get("params") or {}, None, budget) if wrong else None
            )
    except Unprocessable as exc:
        raise EvalImportRefused([(number, exc.message)]) from None
    return {
        "input": input_,
        "expected_action": line["expected"]["action"],
        "expected_params": expected,
        "wrong_action": wrong["action"] if wrong else "",
        "wrong_params": wrong_params,
        "wrong_why": people.redact_text(wrong["why"]) if wrong else "",
        "note": people.redact_text(line.get("note") or "")[:TEXT_MAX],
    }


@transaction.atomic
def eval_cases_import(*, workflow: Workflow, text: str, by: User | None) -> list[EvalCase]:
    """Store every case of a JSON Lines document, or none: one bad line refuses the
    whole import (EvalImportRefused lists every problem with its line number)."""
    parsed = eval_lines_parse(workflow=workflow, text=text)
    rows = [
        EvalCase(
            workflow=workflow,
            source=EvalCase.Source.IMPORT,
            created_by=by,
            **_redacted_case(workflow, p.number, p.line),
        )
        for p in parsed
    ]
    return EvalCase.objects.bulk_create(rows)


# -- a case from a decided run ------------------------------------------------------------


def _run_input(run: Run) -> Any:
    """The run's input as its trace holds it (already redacted by the gateway)."""
    event = (
        TraceEvent.objects.filter(run_id=run.id, type=TraceEvent.Type.INPUT).order_by("seq").first()
    )
    return event.payload.get("input") if event is not None else None


def eval_case_kind(run: Run) -> str:
    """What a decided run can give the eval set: "expected" (an approved, picked or
    submitted action is the expected answer), "wrong" (a rejected proposal is a known-wrong
    one; the owner names the expected action) or "" (nothing)."""
    decision = run.decision or {}
    if run.probe or not run.proposal:
        return ""
    if decision.get("verdict") == "approved" and decision.get("action"):
        return "expected"
    if decision.get("verdict") == "rejected" and run.decided_by_id is not None:
        return "wrong"
    return ""


@transaction.atomic
def eval_case_from_run(
    *,
    run: Run,
    by: User,
    expected_action: str = "",
    expected_params: dict | None = None,
    note: str = "",
) -> EvalCase:
    """One click on a decided run: a case with the run's input and, for an approved run,
    the decided action and params as expected; for a run a person rejected, the agent's
    proposal as the known-wrong one and `expected_action`/`expected_params` (which the
    owner must give) as expected. A run gives at most one case (409 otherwise).
    The caller checks that `by` owns the run's workflow."""
    kind = eval_case_kind(run)
    workflow = run.workflow
    schemas = _schemas(workflow)
    proposal = run.proposal or {}
    if kind == "expected":
        decision = run.decision or {}
        expected = {"action": decision["action"], "params": decision.get("params") or {}}
        wrong = None
    elif kind == "wrong":
        if not expected_action:
            raise Unprocessable(
                "name the action that should have been proposed", code="expected_missing"
            )
        expected = {"action": expected_action, "params": expected_params or {}}
        wrong = {
            "action": proposal["action"],
            "params": proposal.get("params") or {},
            "why": (run.decision or {}).get("reason") or "rejected by a reviewer",
        }
    else:
        raise Conflict(
            "only a decided run (approved, or rejected by a person) can become an eval case",
            code="not_decided",
        )
    if kind == "wrong":
        # Only what the owner typed is checked here: the run's own params were checked
        # when it was submitted and decided, and redaction may since have turned a
        # personal number into a pseudonym.
        problems = _proposal_problems("expected", expected, schemas)
        if not problems and _same(expected, wrong):
            problems.append("the expected action is the rejected proposal itself")
        if problems:
            raise Unprocessable("; ".join(problems), code="invalid_eval_case")
    elif expected["action"] not in schemas:
        raise Unprocessable(
            f"{expected['action']!r} is no longer an action type of this workflow",
            code="invalid_eval_case",
        )
    people = redactor_for(workflow).without_people()
    typed = redactor_for(workflow).redact
    try:
        with transaction.atomic():
            return EvalCase.objects.create(
                workflow=workflow,
                # Input, decided params and proposal were redacted when the run was stored;
                # params a person typed here are redacted now.
                input=_run_input(run),
                expected_action=expected["action"],
                expected_params=(
                    expected["params"] if kind == "expected" else typed(expected["params"])
                ),
                wrong_action=wrong["action"] if wrong else "",
                wrong_params=wrong["params"] if wrong else None,
                wrong_why=people.redact_text(wrong["why"])[:TEXT_MAX] if wrong else "",
                note=people.redact_text(note)[:TEXT_MAX],
                source=EvalCase.Source.RUN,
                source_run=run.id,
                created_by=by,
            )
    except IntegrityError:
        raise Conflict("this run is already an eval case", code="already_saved") from None


def eval_case_retire(*, case: EvalCase) -> EvalCase:
    """Take a case out of the set (kept, with its results, for history)."""
    EvalCase.objects.filter(pk=case.pk, retired_at=None).update(retired_at=timezone.now())
    case.refresh_from_db(fields=["retired_at"])
    return case


# -- scoring an agent's proposal ------------------------------------------------------------


def _case_for(auth: AgentAuth, workflow: Workflow, case_id: int) -> EvalCase:
    # A case of a workflow this token may not see is not found: its existence is not told.
    case = EvalCase.objects.filter(pk=case_id, workflow_id__in=auth.workflow_ids).first()
    if case is None:
        raise NotFound(f"no eval case {case_id}", code="unknown_eval_case")
    if case.workflow_id != workflow.pk:
        raise Forbidden(
            f"eval case {case_id} belongs to another workflow than '{workflow.slug}'",
            code="eval_case_other_workflow",
        )
    if case.retired_at is not None:
        raise Conflict(f"eval case {case_id} was retired", code="eval_case_retired")
    return case


def _auto_label(*, workflow: Workflow, agent: str, now: datetime) -> str:
    latest = (
        EvalResult.objects.filter(workflow=workflow, agent=agent, pass_auto=True)
        .order_by("-submitted_at")
        .values_list("pass_label", "submitted_at")
        .first()
    )
    if latest is not None and latest[1] > now - AUTO_PASS_IDLE:
        return latest[0]
    return f"auto-{now:%Y-%m-%dT%H:%M:%SZ}"


def eval_result_submit(
    *, auth: AgentAuth, workflow: Workflow, case_id: int, pass_label: str | None, proposal: Any
) -> tuple[EvalResult, bool]:
    """Score an agent's proposal for one eval case and store it as the case's result in
    the pass `pass_label` (made by the server when None, see AUTO_PASS_IDLE).

    Matched = the proposed action and params equal the expected ones as canonical JSON
    (ladder.gates.matches_first), params redacted first like a run's. Returns (result,
    created): the same proposal for a case already answered in the pass returns the
    stored result; a different one is a 409 `eval_already_answered`."""
    if workflow.pk not in auth.workflow_ids:
        raise Forbidden(
            f"this token is not scoped to workflow '{workflow.slug}'", code="workflow_not_allowed"
        )
    case = _case_for(auth, workflow, case_id)
    if not isinstance(proposal, dict) or not proposal.get("action"):
        raise Unprocessable(
            "an eval submission needs a proposal {action, params}", code="proposal_missing"
        )
    with agent_redaction_budget() as budget:
        params = redactor_for(workflow).redact(proposal.get("params") or {}, None, budget)
    action = str(proposal["action"])
    matched = gates.matches_first(
        {"action": case.expected_action, "params": case.expected_params},
        action,
        params,
        canonical=canonical_json,
    )
    now = timezone.now()
    auto = pass_label is None
    label = _auto_label(workflow=workflow, agent=auth.actor, now=now) if auto else pass_label
    try:
        with transaction.atomic():
            return (
                EvalResult.objects.create(
                    case=case,
                    workflow=workflow,
                    pass_label=label,
                    pass_auto=auto,
                    proposed_action=action,
                    proposed_params=params,
                    matched=matched,
                    agent=auth.actor,
                    submitted_at=now,
                ),
                True,
            )
    except IntegrityError:
        pass
    stored = EvalResult.objects.get(case=case, pass_label=label)
    if stored.proposed_action != action or canonical_json(stored.proposed_params) != canonical_json(
        params
    ):
        raise Conflict(
            f"eval case {case.pk} already has a different answer in pass '{label}'; "
            "send another eval_pass to run the set again",
            code="eval_already_answered",
        )
    return stored, False


def pass_label_check(label: Any) -> str | None:
    if label is None:
        return None
    if not isinstance(label, str) or not label.strip() or len(label) > PASS_LABEL_MAX:
        raise Unprocessable(
            f"eval_pass must be a label of 1 to {PASS_LABEL_MAX} characters", code="invalid_pass"
        )
    return label.strip()
