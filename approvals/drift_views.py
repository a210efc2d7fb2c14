"""Drift checks on demand from a workflow's page (docs/drift.md): owners and compliance
of an L4/L5 workflow; other roles are refused (403), people without a role on it do not
learn it exists (404)."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from approvals.drift_display import drift_panel
from approvals.workflow_views import _workflow_or_404
from ladder.models import DriftCheck, Workflow
from traces.services.drift import drift_check


@login_required
@require_POST
def workflow_drift_check(request: HttpRequest, slug: str) -> HttpResponse:
    """ "Check drift now": a drift check of this workflow, and at L5 its evals."""
    workflow, access = _workflow_or_404(request, slug)
    if workflow.pk not in access.own | access.comply:
        raise PermissionDenied("only owners and compliance check drift")
    rung = workflow.rung
    check = drift_check(workflow=workflow, trigger=DriftCheck.Trigger.ON_DEMAND, by=request.user)
    workflow = Workflow.objects.get(pk=workflow.pk)
    if request.htmx:
        context = {"workflow": workflow, **drift_panel(workflow=workflow, access=access)}
        return render(request, "approvals/_drift.html", context)
    if check is None:
        messages.error(request, f"Drift is checked at L4 and L5; this workflow is at L{rung}.")
    elif workflow.rung != rung:
        messages.warning(
            request,
            f"Drift checked: the workflow dropped from L{rung} to L{workflow.rung} (see the "
            "rung history).",
        )
    elif check.breached:
        labels = ", ".join(c["label"].lower() for c in check.breached_checks)
        messages.warning(request, f"Drift checked: {labels} drifted. The owners are told.")
    else:
        messages.success(request, "Drift checked: no drift.")
    return redirect(reverse("workflow", args=[workflow.slug]) + "#drift")
