"""A workflow's eval set, for its owners (docs/evals.md): import cases from JSON Lines,
see coverage of every action type and the latest eval passes; and "save as eval case"
on a decided run's page."""

import json

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from approvals.roles import access_for
from approvals.settings_views import _owned_workflow
from approvals.views import _run_or_404
from ladder.errors import LadderError
from traces.evals import EVAL_TAIL_MIN, eval_overview
from traces.services.evals import (
    MAX_IMPORT_BYTES,
    EvalImportRefused,
    eval_case_from_run,
    eval_cases_import,
)


class ImportForm(forms.Form):
    file = forms.FileField(label="A .jsonl file", required=False)
    text = forms.CharField(label="Or paste JSON Lines", required=False, widget=forms.Textarea)

    def clean(self):
        data = super().clean()
        upload = data.get("file")
        if upload is not None:
            if upload.size > MAX_IMPORT_BYTES:
                raise forms.ValidationError(f"The file is over {MAX_IMPORT_BYTES:,} bytes.")
            try:
                data["jsonl"] = upload.read().decode("utf-8")
            except UnicodeDecodeError:
                raise forms.ValidationError("The file is not UTF-8 text.") from None
        else:
            data["jsonl"] = data.get("text") or ""
        if not data["jsonl"].strip():
            raise forms.ValidationError("Choose a file or paste some JSON Lines.")
        return data


@login_required
@require_http_methods(["GET", "POST"])
def workflow_evals(request: HttpRequest, slug: str) -> HttpResponse:
    workflow = _owned_workflow(request, slug)
    form = ImportForm()
    problems: list[tuple[int, str]] = []
    if request.method == "POST":
        form = ImportForm(request.POST, request.FILES)
        if form.is_valid():
            try:
                stored = eval_cases_import(
                    workflow=workflow, text=form.cleaned_data["jsonl"], by=request.user
                )
            except EvalImportRefused as exc:
                problems = exc.problems
            else:
                messages.success(request, f"{len(stored)} eval case(s) stored.")
                return redirect("workflow-evals", slug=workflow.slug)
    context = {
        "workflow": workflow,
        "form": form,
        "problems": problems,
        "tail_min": EVAL_TAIL_MIN,
        **eval_overview(workflow=workflow),
    }
    response = render(request, "approvals/evals.html", context)
    if form.errors or problems:
        response.status_code = 422
    return response


@login_required
@require_POST
def run_eval_case(request: HttpRequest, run_id) -> HttpResponse:
    """ "Save as eval case" on a decided run: owners of the run's workflow only."""
    run = _run_or_404(request, run_id)
    if run.workflow_id not in access_for(request.user).own:
        raise PermissionDenied("only an owner of the workflow can add to its eval set")
    try:
        params_text = request.POST.get("expected_params", "").strip() or "{}"
        try:
            params = json.loads(params_text)
        except ValueError:
            raise LadderError(
                "the expected params are not valid JSON", code="invalid_params"
            ) from None
        if not isinstance(params, dict):
            raise LadderError("the expected params must be a JSON object", code="invalid_params")
        case = eval_case_from_run(
            run=run,
            by=request.user,
            expected_action=request.POST.get("expected_action", "")[:100],
            expected_params=params,
            note=request.POST.get("note", "")[:1000],
        )
    except LadderError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"Saved as eval case {case.pk} of {run.workflow.slug}.")
    return redirect("run", run_id=run.id)
