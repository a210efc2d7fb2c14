"""The evidence dossier pages (docs/dossier.md): a promotion request's, for anyone who
may see the request, and a workflow's as of now, for its owners and compliance; each as
a printable page and as a PDF.

A request or workflow you have no role on is a 404, as on their own pages; a reviewer of
the workflow asking for its dossier is a 403.
"""

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_GET

from approvals import selectors
from approvals.dossier import dossier_for_promotion, dossier_for_workflow
from approvals.dossier_pdf import dossier_pdf
from approvals.models import PromotionRequest
from approvals.roles import access_for
from ladder.errors import NotFound
from ladder.models import Workflow


def _promotion(request: HttpRequest, request_id: int) -> PromotionRequest:
    try:
        return selectors.promotion_for_person(user=request.user, request_id=request_id)
    except NotFound:
        raise Http404("no such promotion request") from None


def _workflow(request: HttpRequest, slug: str) -> Workflow:
    access = access_for(request.user)
    workflow = Workflow.objects.filter(slug=slug).first()
    if workflow is None or workflow.pk not in access.view:
        raise Http404("no such workflow")
    if workflow.pk not in access.own | access.comply:
        raise PermissionDenied("only owners and compliance read a workflow's dossier")
    return workflow


def _pdf(dossier: dict) -> HttpResponse:
    response = HttpResponse(dossier_pdf(dossier), content_type="application/pdf")
    response["Content-Disposition"] = f'attachment; filename="{dossier["filename"]}"'
    return response


def _page(request: HttpRequest, dossier: dict, pdf_url: str, back_url: str) -> HttpResponse:
    context = {"dossier": dossier, "pdf_url": pdf_url, "back_url": back_url}
    return render(request, "approvals/dossier.html", context)


@login_required
@require_GET
def promotion_dossier(request: HttpRequest, request_id: int) -> HttpResponse:
    promotion = _promotion(request, request_id)
    return _page(
        request,
        dossier_for_promotion(promotion),
        pdf_url=reverse("promotion-dossier-pdf", args=[promotion.pk]),
        back_url=reverse("promotion", args=[promotion.pk]),
    )


@login_required
@require_GET
def promotion_dossier_pdf(request: HttpRequest, request_id: int) -> HttpResponse:
    return _pdf(dossier_for_promotion(_promotion(request, request_id)))


@login_required
@require_GET
def workflow_dossier(request: HttpRequest, slug: str) -> HttpResponse:
    workflow = _workflow(request, slug)
    return _page(
        request,
        dossier_for_workflow(workflow),
        pdf_url=reverse("workflow-dossier-pdf", args=[workflow.slug]),
        back_url=reverse("workflow", args=[workflow.slug]),
    )


@login_required
@require_GET
def workflow_dossier_pdf(request: HttpRequest, slug: str) -> HttpResponse:
    return _pdf(dossier_for_workflow(_workflow(request, slug)))
