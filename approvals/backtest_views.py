"""Backtest pages: "what would this policy have done?" over a workflow's past L3 runs.

Owners and compliance start backtests; everyone with a role on the workflow reads them;
anyone else gets a 404, so a guessed URL says nothing about other workflows. A running
backtest's page polls its progress bar with htmx (and offers a plain reload link).
"""

from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db.models.fields.json import KT
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods

from approvals.roles import access_for
from ladder.errors import LadderError, Unprocessable
from ladder.models import PolicyVersion, Workflow
from ladder.policies import policy_read_json, problem_lines, workflow_actions
from ladder.policy import parse_policy, policy_text
from ladder.rungs import Rung
from traces.models import Backtest, Run
from traces.services.backtests import backtest_start

DRAFT = "draft"
MISTAKES_PER_PAGE = 100


def _workflow_or_404(request: HttpRequest, slug: str) -> Workflow:
    workflow = Workflow.objects.filter(slug=slug).first()
    if workflow is None or workflow.pk not in access_for(request.user).view:
        raise Http404("no such workflow")
    return workflow


def _may_start(request: HttpRequest, workflow: Workflow) -> bool:
    access = access_for(request.user)
    return workflow.pk in access.own or workflow.pk in access.comply


def _day(raw: str, label: str) -> date | None:
    if not raw.strip():
        return None
    try:
        return date.fromisoformat(raw.strip())
    except ValueError:
        raise Unprocessable(f"{label}: not a date (YYYY-MM-DD)", code="invalid_window") from None


def _window(post) -> tuple[datetime | None, datetime | None]:
    """From the first day's start to the end of the last day, in UTC (both optional)."""
    first = _day(post.get("since", ""), "From")
    last = _day(post.get("until", ""), "To")
    since = datetime.combine(first, time(), tzinfo=UTC) if first else None
    until = datetime.combine(last, time(), tzinfo=UTC) + timedelta(days=1) if last else None
    return since, until


def _start(request: HttpRequest, workflow: Workflow) -> Backtest:
    post = request.POST
    choice = post.get("policy", "").strip() or (DRAFT if post.get("document") else "")
    since, until = _window(post)
    if choice == DRAFT:
        document = policy_read_json(post.get("document", ""))
        return backtest_start(
            workflow=workflow, by=request.user, document=document, since=since, until=until
        )
    if post.get("document", "").strip():
        # Never test one thing while the person looks at another.
        raise Unprocessable(
            "a document was pasted: choose “the document below” to test it, "
            "or empty it to test the saved version"
        )
    version = None
    if choice.isdigit():
        version = PolicyVersion.objects.filter(workflow=workflow, number=int(choice)).first()
    if version is None:
        raise Unprocessable("choose a saved version or paste a policy document")
    return backtest_start(
        workflow=workflow, by=request.user, version=version, since=since, until=until
    )


def _recent(workflow: Workflow):
    """The latest backtests with their two headline figures, read out of the result in
    the database: a result lists every would-be mistake's id, too much to load 50 times."""
    return (
        Backtest.objects.filter(workflow=workflow)
        .select_related("version")
        .defer("document", "result", "version__document")
        .annotate(allowed=KT("result__allowed"), mistakes=KT("result__mistakes__count"))
        .order_by("-created_at")[:50]
    )


@login_required
@require_http_methods(["GET", "POST"])
def backtests(request: HttpRequest, slug: str) -> HttpResponse:
    workflow = _workflow_or_404(request, slug)
    may_start = _may_start(request, workflow)
    problems: list[str] = []
    status = 200
    if request.method == "POST":
        if not may_start:
            raise PermissionDenied("only owners and compliance start backtests")
        try:
            backtest = _start(request, workflow)
        except LadderError as exc:
            problems, status = problem_lines(exc), exc.status
        else:
            messages.success(request, "Backtest started.")
            return redirect("backtest", slug=slug, backtest_id=backtest.pk)
    versions = list(
        PolicyVersion.objects.filter(workflow=workflow)
        .order_by("-number")
        .values_list("number", flat=True)
    )
    response = render(
        request,
        "approvals/backtests.html",
        {
            "workflow": workflow,
            "may_start": may_start,
            "versions": versions,
            # The newest version decides at L4/L5 and is the draft below (docs/policy.md).
            "newest": "in force" if workflow.rung >= Rung.L4 else "the draft",
            "backtests": _recent(workflow),
            "problems": problems,
            "form": request.POST if problems else {},
        },
    )
    response.status_code = status  # 422 a refused document, 409 too many running
    return response


def _policy_sentences(backtest: Backtest) -> list[str]:
    try:
        policy = parse_policy(backtest.document, actions=workflow_actions(backtest.workflow))
    except Unprocessable:
        return []
    return policy_text(policy)


def _amount(value: Decimal | str) -> str:
    """A money amount as people write it: 20.00, 12.5 -> 12.50, 0.0001 kept exact."""
    exact = Decimal(value).normalize()
    if exact.as_tuple().exponent > -2:
        exact = exact.quantize(Decimal("0.01"))
    return f"{exact:f}"


def _totals(result: dict | None) -> list[str]:
    values = (result or {}).get("mistakes", {}).get("value", {})
    return [f"{_amount(total)} {currency}".strip() for currency, total in values.items()]


def _mistake_page(request: HttpRequest, backtest: Backtest):
    ids = (backtest.result or {}).get("mistakes", {}).get("runs", [])
    page = Paginator(ids, MISTAKES_PER_PAGE).get_page(request.GET.get("page"))
    rows = Run.objects.filter(workflow_id=backtest.workflow_id, pk__in=list(page)).only(
        "id", "created_at", "summary", "value", "currency", "status"
    )
    by_id = {str(run.pk): run for run in rows}
    listed = [by_id[i] for i in page if i in by_id]
    for run in listed:
        run.amount = _amount(run.value) if run.value is not None else ""
    return page, listed


@login_required
@require_GET
def backtest_detail(request: HttpRequest, slug: str, backtest_id: int) -> HttpResponse:
    workflow = _workflow_or_404(request, slug)
    backtest = (
        Backtest.objects.select_related("workflow", "version")
        .filter(pk=backtest_id, workflow=workflow)
        .first()
    )
    if backtest is None:
        raise Http404("no such backtest")
    if request.htmx and not request.htmx.boosted:
        response = render(request, "approvals/backtest.html#progress", {"backtest": backtest})
        if backtest.finished:
            # The results are a whole page: have htmx load it.
            response["HX-Refresh"] = "true"
        return response
    page, mistakes = _mistake_page(request, backtest)
    return render(
        request,
        "approvals/backtest.html",
        {
            "workflow": workflow,
            "backtest": backtest,
            "result": backtest.result,
            "totals": _totals(backtest.result),
            "sentences": _policy_sentences(backtest),
            "page": page,
            "mistakes": mistakes,
        },
    )
