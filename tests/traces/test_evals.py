"""Eval sets (docs/evals.md): import from JSON Lines, the agent's API, scoring, passes and
what the L2 -> L3 gate reads (traces.evals.eval_tallies)."""

import json
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from ladder.gates import Count
from tests.factories import WorkflowFactory
from traces.evals import eval_tallies
from traces.models import EvalCase, EvalResult, Run
from traces.services.evals import EvalImportRefused, eval_cases_import

pytestmark = pytest.mark.django_db

GOOD = [
    {
        "input": {"ticket": "Refund my order A-1, mail ana@example.com"},
        "expected": {"action": "refund.issue", "params": {"order_id": "A-1", "amount": 30}},
        "wrong": {
            "action": "refund.issue",
            "params": {"order_id": "A-1", "amount": 300},
            "why": "ten times the order total",
        },
        "note": "the usual case",
    },
    {
        "input": {"ticket": "Where is my parcel?"},
        "expected": {"action": "ticket.close", "params": {}},
    },
]


def jsonl(*lines) -> str:
    return "\n".join(json.dumps(line) for line in lines) + "\n"


@pytest.fixture
def wf(make_workflow):
    workflow = make_workflow(rung=2, actions=("refund.issue", "ticket.close"))
    workflow.action_types.filter(name="ticket.close").update(param_schema={})
    return workflow


@pytest.fixture
def cases(wf):
    return eval_cases_import(workflow=wf, text=jsonl(*GOOD), by=None)


# -- import -------------------------------------------------------------------------------


def test_a_good_file_is_stored_with_its_input_redacted_like_a_run(wf, cases):
    assert len(cases) == 2
    first = EvalCase.objects.get(pk=cases[0].pk)
    assert "ana@example.com" not in json.dumps(first.input)
    assert "<EMAIL:" in first.input["ticket"]
    assert first.expected_action == "refund.issue"
    assert first.expected_params == {"order_id": "A-1", "amount": 30}
    assert first.wrong_action == "refund.issue" and first.wrong_params["amount"] == 300
    assert first.wrong_why == "ten times the order total"
    assert first.source == "import" and first.source_run is None


def test_one_bad_line_stores_nothing_and_every_problem_is_named_with_its_line(wf):
    bad = [
        GOOD[0],
        {"input": 1, "expected": {"action": "refund.nope", "params": {}}},
        "not an object",
        {"expected": {"action": "refund.issue", "params": {"order_id": 5, "amount": 1}}},
        {
            "input": None,
            "expected": {"action": "ticket.close"},
            "wrong": {"action": "ticket.close", "params": {}, "why": "same"},
        },
        {"input": None, "expected": {"action": "ticket.close"}, "surprise": True},
    ]
    text = jsonl(*bad) + "{not json\n"
    with pytest.raises(EvalImportRefused) as refused:
        eval_cases_import(workflow=wf, text=text, by=None)
    lines = {n for n, _ in refused.value.problems}
    assert lines == {2, 3, 4, 5, 6, 7}
    said = " | ".join(p for _, p in refused.value.problems)
    assert "'refund.nope' is not an action type" in said
    assert "'order_id' must be of type string" in said
    assert "'input' is missing" in said
    assert "it is not wrong" in said
    assert "'surprise': unknown key" in said
    assert "not valid JSON" in said
    assert EvalCase.objects.count() == 0


def test_the_command_imports_a_file_and_prints_how_many(wf, tmp_path):
    path = tmp_path / "cases.jsonl"
    path.write_text(jsonl(*GOOD), encoding="utf-8")
    out = StringIO()
    call_command("eval_import", wf.slug, str(path), stdout=out)
    assert "2 eval case(s) stored" in out.getvalue()
    assert EvalCase.objects.filter(workflow=wf).count() == 2


def test_the_command_refuses_a_bad_file_naming_each_line_and_stores_nothing(wf, tmp_path):
    path = tmp_path / "cases.jsonl"
    path.write_text(jsonl(GOOD[0], {"input": 1}), encoding="utf-8")
    err = StringIO()
    with pytest.raises(CommandError, match="nothing was imported"):
        call_command("eval_import", wf.slug, str(path), stderr=err)
    assert "line 2: 'expected' is missing" in err.getvalue()
    assert EvalCase.objects.count() == 0


def test_the_command_reads_standard_input(wf, monkeypatch):
    monkeypatch.setattr("sys.stdin", StringIO(jsonl(GOOD[1])))
    out = StringIO()
    call_command("eval_import", wf.slug, "-", stdout=out)
    assert "1 eval case(s) stored" in out.getvalue()


# -- the agent's API ------------------------------------------------------------------------


def eval_body(wf, case, action, params, label=None, key="k"):
    body = {
        "workflow": wf.slug,
        "idempotency_key": key,
        "input": case.input,
        "proposal": {"action": action, "params": params},
        "eval_case": case.pk,
    }
    if label is not None:
        body["eval_pass"] = label
    return body


def test_agents_list_cases_page_by_page_without_the_expected_answer(wf, agent):
    eval_cases_import(workflow=wf, text=jsonl(*(GOOD * 3)), by=None)
    bot = agent(wf)
    first = bot.get(f"/workflows/{wf.slug}/eval-cases?limit=4").json()
    assert len(first["cases"]) == 4 and first["next"] is not None
    second = bot.get(f"/workflows/{wf.slug}/eval-cases?limit=4&after={first['next']}").json()
    assert len(second["cases"]) == 2 and second["next"] is None
    ids = [c["id"] for c in first["cases"] + second["cases"]]
    assert ids == sorted(ids) and len(set(ids)) == 6
    case = first["cases"][0]
    assert set(case) == {"id", "input", "action_types"}
    assert case["action_types"] == ["refund.issue", "ticket.close"]
    assert "expected" not in json.dumps(first) and 'refund.issue", "params' not in json.dumps(first)


def test_a_retired_case_is_not_listed(wf, cases, agent):
    EvalCase.objects.filter(pk=cases[0].pk).update(retired_at=timezone.now())
    listed = agent(wf).get(f"/workflows/{wf.slug}/eval-cases").json()["cases"]
    assert [c["id"] for c in listed] == [cases[1].pk]


def test_an_equal_proposal_matches_and_no_run_is_made(wf, cases, agent):
    bot = agent(wf)
    case = cases[0]
    answer = bot.post(
        "/runs", eval_body(wf, case, "refund.issue", {"amount": 30, "order_id": "A-1"}, "v1")
    )
    assert answer.status_code == 201, answer.content
    data = answer.json()
    assert data["status"] == "evaluated"
    assert data["eval"]["case"] == case.pk and data["eval"]["pass"] == "v1"
    assert data["eval"]["matched"] is True
    assert "expected" not in json.dumps(data)
    assert Run.objects.count() == 0
    stored = EvalResult.objects.get()
    assert stored.matched and stored.agent.startswith("agent:")


def test_different_params_do_not_match(wf, cases, agent):
    answer = agent(wf).post(
        "/runs", eval_body(wf, cases[0], "refund.issue", {"order_id": "A-1", "amount": 31}, "v1")
    )
    assert answer.status_code == 201 and answer.json()["eval"]["matched"] is False


def test_a_float_for_an_integer_does_not_match_as_canonical_json_differs(wf, cases, agent):
    # 30 and 30.0 are different canonical JSON: the trace's own encoding decides, as
    # for the match rate of runs (ladder.gates.matches_first).
    answer = agent(wf).post(
        "/runs", eval_body(wf, cases[0], "refund.issue", {"order_id": "A-1", "amount": 30.0}, "v1")
    )
    assert answer.json()["eval"]["matched"] is False


def test_personal_values_are_compared_after_redaction(wf, agent):
    line = {
        "input": {},
        "expected": {"action": "ticket.close", "params": {"to": "ana@example.com"}},
    }
    (case,) = eval_cases_import(workflow=wf, text=jsonl(line), by=None)
    answer = agent(wf).post(
        "/runs", eval_body(wf, case, "ticket.close", {"to": "ana@example.com"}, "v")
    )
    assert answer.json()["eval"]["matched"] is True
    stored = EvalResult.objects.get()
    assert "ana@example.com" not in json.dumps(stored.proposed_params)


def test_resubmitting_the_same_answer_returns_the_stored_result(wf, cases, agent):
    bot = agent(wf)
    body = eval_body(wf, cases[1], "ticket.close", {}, "v1")
    assert bot.post("/runs", body).status_code == 201
    again = bot.post("/runs", {**body, "idempotency_key": "another"})
    assert again.status_code == 200 and again.json()["eval"]["matched"] is True
    assert EvalResult.objects.count() == 1


def test_a_different_answer_in_the_same_pass_is_a_conflict(wf, cases, agent):
    bot = agent(wf)
    bot.post("/runs", eval_body(wf, cases[1], "ticket.close", {}, "v1"))
    conflict = bot.post("/runs", eval_body(wf, cases[1], "refund.issue", {}, "v1"))
    assert conflict.status_code == 409
    assert conflict.json()["error"]["code"] == "eval_already_answered"
    assert bot.post("/runs", eval_body(wf, cases[1], "refund.issue", {}, "v2")).status_code == 201


def test_without_a_label_the_server_keeps_one_pass_per_agent_while_it_submits(wf, cases, agent):
    bot = agent(wf)
    a = bot.post("/runs", eval_body(wf, cases[0], "ticket.close", {})).json()["eval"]["pass"]
    b = bot.post("/runs", eval_body(wf, cases[1], "ticket.close", {})).json()["eval"]["pass"]
    assert a == b and a.startswith("auto-")


def test_an_unknown_case_is_404_and_a_case_of_another_workflow_403_or_404(
    wf, cases, agent, make_workflow
):
    other = make_workflow(rung=2, actions=("ticket.close",))
    other.action_types.update(param_schema={})
    (theirs,) = eval_cases_import(workflow=other, text=jsonl(GOOD[1]), by=None)
    body = eval_body(wf, cases[1], "ticket.close", {}, "v1")
    only_mine = agent(wf)
    unknown = only_mine.post("/runs", {**body, "eval_case": 999_999})
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "unknown_eval_case"
    # Not in the token's scope: not told it exists.
    assert only_mine.post("/runs", {**body, "eval_case": theirs.pk}).status_code == 404
    both = agent(wf, other)
    wrong = both.post("/runs", {**body, "eval_case": theirs.pk})
    assert wrong.status_code == 403 and wrong.json()["error"]["code"] == "eval_case_other_workflow"
    outside = agent(other).post("/runs", body)
    assert outside.status_code == 403
    assert agent(other).get(f"/workflows/{wf.slug}/eval-cases").status_code == 403
    assert EvalResult.objects.count() == 0


def test_an_eval_submission_without_a_proposal_is_refused(wf, cases, agent):
    body = eval_body(wf, cases[1], "ticket.close", {}, "v1")
    del body["proposal"]
    answer = agent(wf).post("/runs", body)
    assert answer.status_code == 422 and answer.json()["error"]["code"] == "proposal_missing"


# -- what the gate reads ------------------------------------------------------------------


def test_eval_tallies_count_active_cases_and_the_newest_pass_per_expected_type(wf, agent, clock):
    lines = [GOOD[0]] * 3 + [GOOD[1]] * 2
    cases = eval_cases_import(workflow=wf, text=jsonl(*lines), by=None)
    refunds, closes = cases[:3], cases[3:]
    retired = eval_cases_import(workflow=wf, text=jsonl(GOOD[1]), by=None)[0]
    bot = agent(wf)
    right = {"order_id": "A-1", "amount": 30}
    # An old pass: everything right.
    for case in refunds:
        bot.post("/runs", eval_body(wf, case, "refund.issue", right, "old"))
    clock.advance(60)
    # The newest pass: 2 of 3 refunds, 1 of 2 closes; plus a case retired afterwards.
    bot.post("/runs", eval_body(wf, refunds[0], "refund.issue", right, "new"))
    bot.post("/runs", eval_body(wf, refunds[1], "refund.issue", right, "new"))
    bot.post("/runs", eval_body(wf, refunds[2], "ticket.close", {}, "new"))
    bot.post("/runs", eval_body(wf, closes[0], "ticket.close", {}, "new"))
    bot.post("/runs", eval_body(wf, closes[1], "refund.issue", right, "new"))
    bot.post("/runs", eval_body(wf, retired, "ticket.close", {}, "new"))
    EvalCase.objects.filter(pk=retired.pk).update(retired_at=timezone.now())

    by_type, latest = eval_tallies(workflow=wf)

    assert by_type == {"refund.issue": 3, "ticket.close": 2}
    assert latest.label == "new"
    assert latest.by_type == {"refund.issue": Count(2, 3), "ticket.close": Count(1, 2)}
    newest = EvalResult.objects.filter(pass_label="new").latest("submitted_at").submitted_at
    assert latest.at == newest
    assert newest > timezone.now() - timedelta(minutes=5)


def test_eval_tallies_without_any_pass(wf, cases):
    assert eval_tallies(workflow=wf) == ({"refund.issue": 1, "ticket.close": 1}, None)


def test_eval_tallies_take_four_queries_for_any_number_of_workflows(
    wf, cases, agent, django_assert_num_queries
):
    from traces.evals import eval_tallies_many

    agent(wf).post("/runs", eval_body(wf, cases[1], "ticket.close", {}, "v1"))
    others = [WorkflowFactory(slug=f"other-{i}").pk for i in range(5)]
    with django_assert_num_queries(4):
        many = eval_tallies_many(workflow_ids=[wf.pk, *others])
    assert many[wf.pk] == eval_tallies(workflow=wf)
    assert many[others[0]] == ({}, None)


def test_the_gate_snapshot_judges_the_eval_set_and_the_latest_pass(wf, cases, agent):
    from traces.services.gates import gates_recompute

    bot = agent(wf)
    bot.post(
        "/runs", eval_body(wf, cases[0], "refund.issue", {"order_id": "A-1", "amount": 30}, "v1")
    )
    bot.post("/runs", eval_body(wf, cases[1], "refund.issue", {}, "v1"))
    gates = {g["name"]: g for g in gates_recompute(workflow=wf, trigger="command").gates}
    assert gates["eval_coverage"]["verdict"] == "pass"
    assert gates["eval_match_rate"]["verdict"] == "fail"
    assert "ticket.close" in gates["eval_match_rate"]["sentence"]
