"""Rollback drills on the workflow pages (docs/drills.md): the recent drills and the
owner's "Run a drill" form (a partial of the workflow page), and each drill's page.

Owners start drills; everyone with a role on the workflow reads them (compliance
included); anyone else gets a 404, so a guessed URL says nothing about other workflows.
"""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods

from approvals.roles import Access, access_for
from ladder.errors import LadderError
from ladder.models import Workflow
from traces.models import RollbackDrill
from traces.services.drills import drill_start

DEFAULT_BATCH = 50
MAX_BATCH = 1000
RECENT = 10


def _workflow_or_404(request: HttpRequest, slug: str) -> tuple[Workflow, Access]:
    access = access_for(request.user)
    workflow = Workflow.objects.filter(slug=slug).first()
    if workflow is None or workflow.pk not in access.view:
        raise Http404("no such workflow")
    return workflow, access


def drills_context(*, workflow: Workflow, access: Access) -> dict:
    """What the `_drills.html` partial needs (the workflow page includes it)."""
    return {
        "drills": RollbackDrill.objects.filter(workflow=workflow)
        .select_related("started_by")
        .order_by("-started_at", "-pk")[:RECENT],
        "may_drill": workflow.pk in access.own,
        "drill_batch": DEFAULT_BATCH,
        "drill_problem": "",
    }


def _batch(raw: str | None) -> int | None:
    try:
        value = int((raw or "").strip())
    except ValueError:
        return None
    return value if 1 <= value <= MAX_BATCH else None


@login_required
@require_http_methods(["GET", "POST"])
def drills(request: HttpRequest, slug: str) -> HttpResponse:
    """GET: the workflow's recent drills. POST (owners): start one, then its page."""
    workflow, access = _workflow_or_404(request, slug)
    context = {"workflow": workflow, **drills_context(workflow=workflow, access=access)}
    if request.method == "GET":
        return render(request, "approvals/drills.html", context)
    if workflow.pk not in access.own:
        raise PermissionDenied("only an owner of the workflow runs rollback drills")
    raw = request.POST.get("batch", "")
    batch = _batch(raw)
    if batch is None:
        context |= {
            "drill_problem": f"The batch must be a whole number from 1 to {MAX_BATCH}.",
            "drill_batch": raw[:20],
        }
        return render(request, "approvals/drills.html", context, status=422)
    try:
        drill = drill_start(
            workflow=workflow, batch=batch, actor=request.user, trigger=RollbackDrill.Trigger.PAGE
        )
    except LadderError as exc:
        context |= {"drill_problem": exc.message, "drill_batch": batch}
        return render(request, "approvals/drills.html", context, status=exc.status)
    messages.success(request, f"Drill {drill.pk} started: reverting {drill.picked} run(s).")
    return redirect("drill", slug=workflow.slug, drill_id=drill.pk)


@login_required
@require_GET
def drill_detail(request: HttpRequest, slug: str, drill_id: int) -> HttpResponse:
    workflow, _ = _workflow_or_404(request, slug)
    drill = (
        RollbackDrill.objects.select_related("started_by")
        .filter(pk=drill_id, workflow=workflow)
        .first()
    )
    if drill is None:
        raise Http404("no such drill")
    items = drill.items.select_related("run").only(
        "id",
        "drill_id",
        "status",
        "compensating_action",
        "error",
        "started_at",
        "finished_at",
        "run__id",
        "run__status",
        "run__summary",
    )
    return render(
        request, "approvals/drill.html", {"workflow": workflow, "drill": drill, "items": items}
    )
