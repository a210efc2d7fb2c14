"""Promotion requests: the list (open ones first, where compliance decides) and one
request with its evidence exactly as frozen.

A request of a workflow you have no role on is a 404. Deciding takes compliance on the
workflow and not being the requester; the service says why not, shown on the page.
"""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from approvals import selectors
from approvals.gate_display import gate_rows
from approvals.models import PromotionRequest
from approvals.roles import access_for
from approvals.services import evidence_hash, promotion_decide, promotion_withdraw
from ladder.errors import LadderError, NotFound


def _may_decide(request: HttpRequest, promotion: PromotionRequest) -> bool:
    return (
        promotion.state == PromotionRequest.State.OPEN
        and promotion.workflow_id in access_for(request.user).comply
        and promotion.requested_by_id != request.user.pk
    )


def _row(request: HttpRequest, promotion: PromotionRequest) -> dict:
    return {
        "promotion": promotion,
        "may_decide": _may_decide(request, promotion),
        "mine": promotion.requested_by_id == request.user.pk,
    }


@login_required
@require_GET
def promotion_list(request: HttpRequest) -> HttpResponse:
    ids = selectors.visible_workflow_ids(user=request.user)
    open_rows = selectors.promotions_for(workflow_ids=ids, decided=False)
    past = selectors.promotions_for(workflow_ids=ids, decided=True)
    context = {
        "open_rows": [_row(request, p) for p in open_rows],
        "past": past,
    }
    return render(request, "approvals/promotions.html", context)


def _promotion_or_404(request: HttpRequest, request_id: int) -> PromotionRequest:
    try:
        return selectors.promotion_for_person(user=request.user, request_id=request_id)
    except NotFound:
        raise Http404("no such promotion request") from None


def _detail_context(request: HttpRequest, promotion: PromotionRequest) -> dict:
    evidence = promotion.evidence
    return {
        "promotion": promotion,
        "evidence": evidence,
        "computed_at": str(evidence.get("computed_at", ""))[:16].replace("T", " "),
        "gate_rows": gate_rows(evidence.get("gates", [])),
        # Recomputed from the stored copy each time the page is shown: a mismatch would
        # mean the frozen evidence was altered after the request was made.
        "hash_ok": evidence_hash(promotion.evidence_canonical) == promotion.evidence_hash,
        "may_decide": _may_decide(request, promotion),
        "mine": promotion.requested_by_id == request.user.pk,
        "reason": "",
        "error": "",
    }


@login_required
@require_GET
def promotion_detail(request: HttpRequest, request_id: int) -> HttpResponse:
    promotion = _promotion_or_404(request, request_id)
    return render(request, "approvals/promotion.html", _detail_context(request, promotion))


@login_required
@require_POST
def promotion_decide_view(request: HttpRequest, request_id: int) -> HttpResponse:
    promotion = _promotion_or_404(request, request_id)
    verdict = request.POST.get("verdict", "")
    reason = request.POST.get("reason", "")[:4000]
    try:
        if verdict not in ("approve", "decline"):
            raise LadderError("Choose approve or decline.", code="invalid_verdict")
        promotion_decide(
            request=promotion, by=request.user, approve=verdict == "approve", reason=reason
        )
    except LadderError as exc:
        promotion.refresh_from_db()
        context = _detail_context(request, promotion) | {"reason": reason, "error": exc.message}
        return render(request, "approvals/promotion.html", context, status=exc.status)
    if verdict == "approve":
        messages.success(
            request,
            f"Approved: {promotion.workflow.slug} is now at L{promotion.to_rung}, "
            "from its very next run.",
        )
    else:
        messages.success(
            request, f"Declined: {promotion.workflow.slug} stays at L{promotion.from_rung}."
        )
    return redirect("promotion", request_id=promotion.pk)


@login_required
@require_POST
def promotion_withdraw_view(request: HttpRequest, request_id: int) -> HttpResponse:
    promotion = _promotion_or_404(request, request_id)
    try:
        promotion_withdraw(request=promotion, by=request.user)
    except LadderError as exc:
        promotion.refresh_from_db()
        context = _detail_context(request, promotion) | {"error": exc.message}
        return render(request, "approvals/promotion.html", context, status=exc.status)
    messages.success(request, "Request withdrawn.")
    return redirect("promotion", request_id=promotion.pk)
