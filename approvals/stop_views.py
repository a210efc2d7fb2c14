"""The stop button (EU AI Act Art. 14(4)(e); docs/stop.md): one click stops a workflow,
so that none of its proposals executes, whatever its rung, until someone resumes it.

Owners and compliance of the workflow (and admins) may stop and resume it; reviewers
may not (403). A reason is required both ways; a refusal shows the workflow page again
with the reason as typed."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from approvals.roles import Access
from approvals.workflow_views import _detail_context, _workflow_or_404
from ladder.errors import Conflict, LadderError
from ladder.models import Workflow
from ladder.services import workflow_stop
from traces.services.stop import workflow_resume_release


def may_stop(*, workflow: Workflow, access: Access) -> bool:
    """Owners and compliance of the workflow; admins hold both."""
    return workflow.pk in access.own | access.comply


@login_required
@require_POST
def workflow_stop_view(request: HttpRequest, slug: str) -> HttpResponse:
    return _act(request, slug, stop=True)


@login_required
@require_POST
def workflow_resume_view(request: HttpRequest, slug: str) -> HttpResponse:
    return _act(request, slug, stop=False)


def _act(request: HttpRequest, slug: str, *, stop: bool) -> HttpResponse:
    workflow, access = _workflow_or_404(request, slug)
    if not may_stop(workflow=workflow, access=access):
        raise PermissionDenied("only the workflow's owners and compliance stop or resume it")
    reason = request.POST.get("reason", "")[:1000]
    try:
        if stop:
            workflow_stop(workflow=workflow, actor=request.user, reason=reason)
        else:
            workflow_resume_release(workflow=workflow, actor=request.user, reason=reason)
    except Conflict as exc:
        # A double click, or someone else was quicker: the page shows the state now.
        messages.info(request, exc.message)
        return redirect(reverse("workflow", args=[workflow.slug]) + "#stop")
    except LadderError as exc:
        workflow.refresh_from_db()
        context = _detail_context(request, workflow, access)
        context.update(stop_error=exc.message, stop_reason_typed=reason)
        return render(request, "approvals/workflow.html", context, status=422)
    if stop:
        messages.success(request, "Stopped: nothing of this workflow executes until resumed.")
    else:
        messages.success(request, "Resumed: what waited is handled now.")
    return redirect(reverse("workflow", args=[workflow.slug]) + "#stop")
