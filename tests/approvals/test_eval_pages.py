"""The owner's eval page (/workflows/<slug>/evals/) and "save as eval case" on a run."""

import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from approvals.roles import role_grant
from tests.factories import WorkflowFactory
from traces.models import EvalCase

pytestmark = pytest.mark.django_db

CASE = {
    "input": {"m": "refund please"},
    "expected": {"action": "refund.issue", "params": {"amount": 5}},
}


def test_an_owner_imports_pasted_json_lines(flows, login, people):
    owner = login(people["owner"])
    text = "\n".join([json.dumps(CASE)] * 3)
    answer = owner.post("/workflows/approvals/evals/", {"text": text}, follow=True)
    assert "3 eval case(s) stored" in answer.content.decode()
    assert EvalCase.objects.filter(workflow=flows["l3"]).count() == 3
    page = owner.get("/workflows/approvals/evals/").content.decode()
    assert "3 active cases, covering 1 of 1 action type" in page
    assert "thin: under 5" in page


def test_an_owner_imports_an_uploaded_file(flows, login, people):
    upload = SimpleUploadedFile("cases.jsonl", (json.dumps(CASE) + "\n").encode())
    answer = login(people["owner"]).post("/workflows/approvals/evals/", {"file": upload})
    assert answer.status_code == 302
    assert EvalCase.objects.count() == 1


def test_a_bad_file_stores_nothing_and_the_page_lists_every_bad_line(flows, login, people):
    text = "\n".join([json.dumps(CASE), "{oops", json.dumps({"input": 1})])
    answer = login(people["owner"]).post("/workflows/approvals/evals/", {"text": text})
    assert answer.status_code == 422
    page = answer.content.decode()
    assert "Line 2: not valid JSON" in page and "Line 3: &#x27;expected&#x27; is missing" in page
    assert EvalCase.objects.count() == 0


def test_the_page_is_for_owners_only(flows, login, people, client):
    assert client.get("/workflows/approvals/evals/").status_code == 302  # anonymous
    assert login(people["rev"]).get("/workflows/approvals/evals/").status_code == 403
    refused = login(people["rev"]).post("/workflows/approvals/evals/", {"text": json.dumps(CASE)})
    assert refused.status_code == 403 and EvalCase.objects.count() == 0
    assert login(people["compliance"]).get("/workflows/approvals/evals/").status_code == 403
    # An owner of another workflow is told nothing about this one.
    other = WorkflowFactory(slug="elsewhere")
    role_grant(workflow=other, user=people["stranger"], role="owner", by=None)
    assert login(people["stranger"]).get("/workflows/approvals/evals/").status_code == 404
    assert login(people["owner"]).get("/workflows/approvals/evals/").status_code == 200


def test_the_page_shows_passes_newest_first_with_per_type_counts(flows, login, people, agent):
    owner = login(people["owner"])
    owner.post("/workflows/approvals/evals/", {"text": json.dumps(CASE)})
    case = EvalCase.objects.get()
    bot = agent(flows["l3"])
    for label, amount in (("v1", 5), ("v2", 6)):
        bot.post(
            "/runs",
            {
                "workflow": "approvals",
                "idempotency_key": label,
                "proposal": {"action": "refund.issue", "params": {"amount": amount}},
                "eval_case": case.pk,
                "eval_pass": label,
            },
        )
    page = owner.get("/workflows/approvals/evals/").content.decode()
    passes = page.split('id="eval-passes"')[1]
    assert passes.index("v2") < passes.index("v1")
    assert "<code>refund.issue</code> 0/1" in passes and "<code>refund.issue</code> 1/1" in passes


def decide(login, people, seen, run, verdict, reason=""):
    login(people["rev"]).post(
        f"/runs/{run.pk}/decide", {**seen(run), "verdict": verdict, "reason": reason}
    )


def test_one_click_saves_an_approved_run_as_an_expected_case(flows, login, people, seen, submit):
    run = submit("l3")
    decide(login, people, seen, run, "approve")
    owner = login(people["owner"])
    assert "Save as eval case" in owner.get(f"/runs/{run.pk}/").content.decode()
    answer = owner.post(f"/runs/{run.pk}/eval-case", follow=True)
    assert "Saved as eval case" in answer.content.decode()
    case = EvalCase.objects.get()
    assert case.source == "run" and case.source_run == run.pk
    assert case.expected_action == "refund.issue"
    assert case.expected_params == {"amount": 42.0, "currency": "EUR"}
    assert case.input == {"message": "where is my parcel?"}
    again = owner.post(f"/runs/{run.pk}/eval-case", follow=True)
    assert "already an eval case" in again.content.decode()
    assert EvalCase.objects.count() == 1


def test_a_rejected_run_becomes_a_known_wrong_case_once_the_expected_action_is_named(
    flows, login, people, seen, submit
):
    run = submit("l3")
    decide(login, people, seen, run, "reject", reason="the order was never paid")
    owner = login(people["owner"])
    assert "Save as known-wrong eval case" in owner.get(f"/runs/{run.pk}/").content.decode()
    missing = owner.post(f"/runs/{run.pk}/eval-case", follow=True)
    assert "name the action that should have been proposed" in missing.content.decode()
    owner.post(
        f"/runs/{run.pk}/eval-case",
        {"expected_action": "refund.issue", "expected_params": '{"amount": 0}'},
    )
    case = EvalCase.objects.get()
    assert case.expected_params == {"amount": 0}
    assert case.wrong_action == "refund.issue"
    assert case.wrong_params == {"amount": 42.0, "currency": "EUR"}
    assert case.wrong_why == "the order was never paid"


def test_reviewers_cannot_save_runs_as_eval_cases(flows, login, people, seen, submit):
    run = submit("l3")
    decide(login, people, seen, run, "approve")
    reviewer = login(people["rev"])
    assert "Save as eval case" not in reviewer.get(f"/runs/{run.pk}/").content.decode()
    assert reviewer.post(f"/runs/{run.pk}/eval-case").status_code == 403
    assert login(people["stranger"]).post(f"/runs/{run.pk}/eval-case").status_code == 404
    assert EvalCase.objects.count() == 0


def test_a_waiting_run_cannot_be_saved(flows, login, people, submit):
    run = submit("l3")
    answer = login(people["owner"]).post(f"/runs/{run.pk}/eval-case", follow=True)
    assert "only a decided run" in answer.content.decode()
    assert EvalCase.objects.count() == 0
