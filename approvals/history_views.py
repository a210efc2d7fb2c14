"""The compliance history (/history/) and its exports (/history/export)."""

from datetime import UTC, datetime
from urllib.parse import urlencode

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from approvals import exports, history
from ladder.models import ActionType, Workflow
from ladder.rungs import Rung
from traces.models import RunStatus


def _template(request: HttpRequest, page: str, partial: str) -> str:
    return f"{page}#{partial}" if request.htmx and not request.htmx.boosted else page


@login_required
@require_GET
def history_page(request: HttpRequest) -> HttpResponse:
    scope = history.scope_for(request.user)
    parsed = history.without_errors(history.parse_filters(request.GET))
    runs = history.history_runs(scope=scope, parsed=parsed)
    page = history.history_page(
        runs,
        before=request.GET.get("before", "")[:100],
        after=request.GET.get("after", "")[:100],
    )
    base = parsed.filters.query()
    workflows = list(
        Workflow.objects.filter(pk__in=sorted(scope.readable_workflow_ids))
        .order_by("slug")
        .values_list("slug", flat=True)
    )
    actions = sorted(
        set(
            ActionType.objects.filter(
                workflow_id__in=sorted(scope.readable_workflow_ids)
            ).values_list("name", flat=True)
        )
    )
    context = {
        "runs": page.runs,
        "filters": parsed.filters,
        "errors": parsed.errors,
        "filtered": bool(base),
        "older_url": "?" + urlencode({**base, "before": page.older}) if page.older else None,
        "newer_url": "?" + urlencode({**base, "after": page.newer}) if page.newer else None,
        "first_url": "?" + urlencode(base) if base else request.path,
        "paged": bool(request.GET.get("before") or request.GET.get("after")),
        "exports": [
            (kind, fmt, "export?" + urlencode({**base, "kind": kind, "format": fmt}))
            for kind in exports.KINDS
            for fmt in exports.FORMATS
        ],
        "nothing_to_see": scope.empty,
        "reviewer_only": not scope.workflow_ids and bool(scope.decided_in),
        "workflow_choices": workflows,
        "action_choices": actions,
        "rung_choices": [(str(r.value), r.short) for r in Rung],
        "status_choices": RunStatus.choices,
        "decider_choices": [
            ("person", "a person"),
            ("policy", "the policy"),
            ("deadline", "the deadline"),
            ("nobody", "nobody yet"),
        ],
        "outcome_choices": [("correct", "correct"), ("wrong", "wrong"), ("none", "no label")],
    }
    return render(request, _template(request, "approvals/history.html", "history-results"), context)


@login_required
@require_GET
def history_export(request: HttpRequest) -> HttpResponse:
    kind = request.GET.get("kind", "runs")
    fmt = request.GET.get("format", "csv")
    if kind not in exports.KINDS or fmt not in exports.FORMATS:
        return HttpResponse(
            "kind must be runs, events or reviews; format csv or jsonl.\n",
            status=400,
            content_type="text/plain; charset=utf-8",
        )
    parsed = history.parse_filters(request.GET)
    if parsed.errors:
        # An export must be exactly what was asked for: a filter it cannot read is refused,
        # not dropped as the page does.
        return HttpResponse(
            "\n".join(parsed.errors.values()) + "\n",
            status=400,
            content_type="text/plain; charset=utf-8",
        )
    runs = history.history_runs(scope=history.scope_for(request.user), parsed=parsed)
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    response = StreamingHttpResponse(
        exports.export_lines(kind=kind, fmt=fmt, runs=runs),
        content_type=exports.CONTENT_TYPES[fmt],
    )
    response["Content-Disposition"] = f'attachment; filename="{kind}-{stamp}.{fmt}"'
    return response
