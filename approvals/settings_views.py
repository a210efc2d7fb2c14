"""A workflow's settings page, for its owners: how long a run may wait for a person and
what its deadline does then (docs/deadlines.md), the attention probe rate
(docs/evals.md) and the breaker's bounds (docs/breaker.md)."""

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from approvals import services
from approvals.roles import access_for
from ladder.breaker import DEFAULT_BOUNDS, bounds_for
from ladder.durations import duration_text
from ladder.errors import LadderError
from ladder.models import Workflow
from ladder.rungs import REVIEW_DEADLINE_MAX_SECONDS, REVIEW_DEADLINE_MIN_SECONDS, DeadlineAction
from traces.services.probes import PROBE_RATE_MAX

UNITS = [(86400, "days"), (3600, "hours"), (60, "minutes")]


class DeadlineForm(forms.Form):
    amount = forms.IntegerField(label="A run may wait", min_value=1, max_value=10**9)
    unit = forms.TypedChoiceField(
        label="Unit", choices=[(size, name) for size, name in UNITS], coerce=int
    )
    action = forms.ChoiceField(
        label="Then", choices=DeadlineAction.choices, widget=forms.RadioSelect
    )

    def clean(self):
        data = super().clean()
        if "amount" in data and "unit" in data:
            data["seconds"] = data["amount"] * data["unit"]
            if not REVIEW_DEADLINE_MIN_SECONDS <= data["seconds"] <= REVIEW_DEADLINE_MAX_SECONDS:
                self.add_error(
                    "amount",
                    f"From {duration_text(REVIEW_DEADLINE_MIN_SECONDS)} to "
                    f"{duration_text(REVIEW_DEADLINE_MAX_SECONDS)}; "
                    f"{duration_text(data['seconds'])} is "
                    + (
                        "too short."
                        if data["seconds"] < REVIEW_DEADLINE_MIN_SECONDS
                        else "too long."
                    ),
                )
        return data


class ProbeForm(forms.Form):
    percent = forms.DecimalField(
        label="Attention probes, as a share of the L3 review work (%)",
        min_value=0,
        max_value=PROBE_RATE_MAX * 100,
        decimal_places=1,
    )


class BreakerForm(forms.Form):
    window_runs = forms.IntegerField(
        label="Judge the last N executed runs", min_value=5, max_value=10_000
    )
    failure_percent = forms.DecimalField(
        label="Trip above this failure rate (%)",
        min_value=0,
        max_value=DEFAULT_BOUNDS["failure_rate_max"] * 100,
        decimal_places=1,
    )
    drift_trips = forms.BooleanField(label="A drift alert also trips the breaker", required=False)
    eval_max_age_days = forms.IntegerField(
        label="At L5, the latest eval pass may be at most this many days old",
        min_value=1,
        max_value=DEFAULT_BOUNDS["eval_max_age_days"],
    )


def _breaker_initial(workflow: Workflow) -> dict:
    bounds = bounds_for(workflow.breaker_bounds)
    return {
        "window_runs": bounds["window_runs"],
        "failure_percent": round(bounds["failure_rate_max"] * 100, 1),
        "drift_trips": bounds["drift_trips"],
        "eval_max_age_days": int(bounds["eval_max_age_days"]),
    }


def _initial(workflow: Workflow) -> dict:
    """The stored deadline in the largest unit that says it exactly."""
    seconds = workflow.review_deadline_seconds
    size = next((size for size, _ in UNITS if seconds % size == 0), 60)
    return {
        "amount": max(1, seconds // size),
        "unit": size,
        "action": workflow.deadline_action,
    }


def _owned_workflow(request: HttpRequest, slug: str) -> Workflow:
    """404 for a workflow the person holds no role on (nothing is revealed about it),
    403 for one they may see but do not own."""
    workflow = Workflow.objects.filter(slug=slug).first()
    access = access_for(request.user)
    if workflow is None or workflow.pk not in access.view:
        raise Http404("no such workflow")
    if workflow.pk not in access.own:
        raise PermissionDenied("only an owner of the workflow can change its settings")
    return workflow


@login_required
@require_http_methods(["GET", "POST"])
def workflow_settings(request: HttpRequest, slug: str) -> HttpResponse:
    workflow = _owned_workflow(request, slug)
    probe_form = ProbeForm(initial={"percent": round(workflow.probe_rate * 100, 1)})
    form = DeadlineForm(initial=_initial(workflow))
    breaker_form = BreakerForm(initial=_breaker_initial(workflow))
    if request.method == "POST" and request.POST.get("form") == "breaker":
        breaker_form = BreakerForm(request.POST)
        if breaker_form.is_valid():
            data = breaker_form.cleaned_data
            bounds = {
                **workflow.breaker_bounds,
                "window_runs": data["window_runs"],
                "failure_rate_max": float(data["failure_percent"]) / 100,
                "drift_trips": data["drift_trips"],
                "eval_max_age_days": data["eval_max_age_days"],
            }
            try:
                services.workflow_breaker_set(workflow=workflow, bounds=bounds, by=request.user)
            except LadderError as exc:
                breaker_form.add_error(None, exc.message)
            else:
                messages.success(request, f"Breaker bounds of {workflow.slug} saved.")
                return redirect("workflow-settings", slug=workflow.slug)
    elif request.method == "POST" and request.POST.get("form") == "probes":
        probe_form = ProbeForm(request.POST)
        if probe_form.is_valid():
            try:
                services.workflow_probe_rate_set(
                    workflow=workflow,
                    rate=float(probe_form.cleaned_data["percent"]) / 100,
                    by=request.user,
                )
            except LadderError as exc:
                probe_form.add_error(None, exc.message)
            else:
                messages.success(request, f"Attention probes of {workflow.slug} saved.")
                return redirect("workflow-settings", slug=workflow.slug)
    elif request.method == "POST":
        form = DeadlineForm(request.POST)
        if form.is_valid():
            try:
                services.workflow_deadline_set(
                    workflow=workflow,
                    seconds=form.cleaned_data["seconds"],
                    action=form.cleaned_data["action"],
                    by=request.user,
                )
            except LadderError as exc:
                form.add_error(None, exc.message)
            else:
                messages.success(request, f"Settings of {workflow.slug} saved.")
                return redirect("workflow-settings", slug=workflow.slug)
    response = render(
        request,
        "approvals/settings.html",
        {
            "workflow": workflow,
            "form": form,
            "deadline_text": duration_text(workflow.review_deadline_seconds),
            "deadline_then": DeadlineAction(workflow.deadline_action).label.lower(),
            "probe_form": probe_form,
            "probe_percent": f"{workflow.probe_rate * 100:g}",
            "probe_max": f"{PROBE_RATE_MAX * 100:g}",
            "breaker_form": breaker_form,
            "failure_max": f"{DEFAULT_BOUNDS['failure_rate_max'] * 100:g}",
        },
    )
    if form.errors or probe_form.errors or breaker_form.errors:
        response.status_code = 422
    return response
