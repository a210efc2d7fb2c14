"""The audit queue (/audit/) and the audit screen: sampled actions the policy allowed and
that were carried out, marked correct or wrong by a reviewer of their workflow."""

import json
from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods

from approvals import audit, selectors
from ladder.errors import LadderError, NotFound


@login_required
@require_GET
def audit_queue(request: HttpRequest) -> HttpResponse:
    workflow_ids = selectors.reviewable_workflow_ids(user=request.user)
    runs = audit.audits_due(workflow_ids=workflow_ids)
    page, has_more = selectors.page_after(
        runs, after=selectors.parse_after(request.GET.get("after", ""))
    )
    next_url = None
    if has_more and page:
        last = page[-1]
        next_url = "?" + urlencode({"after": f"{last.created_at.isoformat()}_{last.id}"})
    due, capped = audit.audits_due_count(workflow_ids=workflow_ids)
    return render(
        request,
        "approvals/audit_queue.html",
        {
            "runs": page,
            "next_url": next_url,
            "first_page": "after" not in request.GET,
            "due": f"{due}+" if capped else due,
        },
    )


def _pretty(value) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True)


@login_required
@require_http_methods(["GET", "POST"])
def audit_run(request: HttpRequest, run_id) -> HttpResponse:
    try:
        run = audit.audit_run_for(user=request.user, run_id=run_id)
    except NotFound:
        raise Http404("no such audit") from None
    error, status = "", 200
    if request.method == "POST":
        label = request.POST.get("label", "")
        try:
            audit.audit_mark(
                run=run, auditor=request.user, label=label, note=request.POST.get("note", "")[:2000]
            )
        except LadderError as exc:
            error, status = exc.message, exc.status
            run.refresh_from_db()
        else:
            messages.success(request, f"Marked {label}.")
            return redirect("audit")
    shown = audit.audit_view(run)
    response = render(
        request,
        "approvals/audit_run.html",
        {
            "run": run,
            "shown": shown,
            "params_json": _pretty(shown.params),
            "result_json": _pretty(run.result) if run.result is not None else "",
            "error": error,
            "note": request.POST.get("note", "") if error else "",
        },
    )
    response.status_code = status
    return response
