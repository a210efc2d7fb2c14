"""An eval pass through the SDK against a live gateway (docs/evals.md)."""

import json

import pytest

from ladder_client import Conflict, EvalCase, NotFound
from traces.evals import eval_tallies
from traces.models import EvalResult, Run
from traces.services.evals import eval_cases_import

pytestmark = pytest.mark.django_db(transaction=True)


def case_line(amount):
    return json.dumps(
        {
            "input": {"ticket": f"refund {amount}"},
            "expected": {
                "action": "refund.issue",
                "params": {"order_id": "A-1", "amount": amount},
            },
        }
    )


def test_an_agent_runs_the_whole_eval_set_through_the_sdk(make_workflow, connect):
    wf = make_workflow(rung=2)
    eval_cases_import(workflow=wf, text="\n".join(case_line(n) for n in range(1, 8)), by=None)
    client = connect(wf)

    cases = list(client.eval_cases(wf.slug, page_size=3))  # three pages, the cursor followed
    assert [c.input["ticket"] for c in cases] == [f"refund {n}" for n in range(1, 8)]
    assert all(isinstance(c, EvalCase) and c.action_types == ("refund.issue",) for c in cases)

    scores = []
    for case in cases:
        amount = int(case.input["ticket"].split()[1])
        # The agent gets the last one wrong.
        proposed = amount if amount < 7 else amount + 1
        scores.append(
            case.submit(
                client, "refund.issue", {"order_id": "A-1", "amount": proposed}, eval_pass="v2"
            )
        )
    assert [s.matched for s in scores] == [True] * 6 + [False]
    assert {s.eval_pass for s in scores} == {"v2"}
    assert Run.objects.count() == 0  # scored, never queued nor executed

    _cases, latest = eval_tallies(workflow=wf)
    assert latest.label == "v2" and (
        latest.by_type["refund.issue"].k,
        latest.by_type["refund.issue"].n,
    ) == (6, 7)


def test_a_repeat_returns_the_stored_score_and_a_changed_answer_is_refused(make_workflow, connect):
    wf = make_workflow(rung=2)
    eval_cases_import(workflow=wf, text=case_line(5), by=None)
    client = connect(wf)
    (case,) = client.eval_cases(wf.slug)
    first = client.submit_eval(
        wf.slug, case.id, action="refund.issue", params={"order_id": "A-1", "amount": 5}
    )
    again = client.submit_eval(
        wf.slug, case, action="refund.issue", params={"order_id": "A-1", "amount": 5}
    )
    assert first.created and not again.created and again.matched
    assert first.eval_pass == again.eval_pass == client.eval_pass  # the client's own label
    with pytest.raises(Conflict) as refused:
        client.submit_eval(wf.slug, case, action="refund.issue", params={"amount": 6})
    assert refused.value.code == "eval_already_answered"
    assert EvalResult.objects.count() == 1


def test_a_case_of_a_workflow_outside_the_token_is_not_found(make_workflow, connect):
    mine, theirs = make_workflow(rung=2), make_workflow(rung=2)
    (case,) = eval_cases_import(workflow=theirs, text=case_line(5), by=None)
    with pytest.raises(NotFound):
        connect(mine).submit_eval(mine.slug, case.pk, action="refund.issue", params={})
