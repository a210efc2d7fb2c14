"""The reviewer's pages. Function views: fetch with a permission check, validate, call one
service, respond; htmx requests get the page's partial, plain requests the page."""

import json
import math
import uuid
from decimal import Decimal, InvalidOperation
from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST
from django_htmx.http import HttpResponseClientRedirect

from approvals import replay_page, selectors, services
from approvals import review as rules
from approvals.roles import (
    Role,
    access_for,
    people_with_roles,
    role_changes,
    role_grant,
    role_revoke,
)
from ladder.decide import validate_params
from ladder.durations import time_left_text
from ladder.errors import LadderError, NotFound
from ladder.models import ActionType, Workflow
from ladder.rungs import Queue
from traces.models import Decider, EvalCase, RunStatus
from traces.selectors import replay_for_agent, run_replay, run_trace_export
from traces.services.deadlines import deadline_next, run_after_deadline
from traces.services.evals import eval_case_kind
from traces.status import WAITING_STATUSES


def _template(request: HttpRequest, page: str, partial: str) -> str:
    return f"{page}#{partial}" if request.htmx and not request.htmx.boosted else page


# -- queue --------------------------------------------------------------------------------


@login_required
@require_GET
def home(request: HttpRequest) -> HttpResponse:
    """Home is where one's work waits: reviewers keep their queue; compliance lands on
    the promotions when one waits for a decision it may take, else on the history;
    owners on their workflows (the queue, with the failed executions owners see there,
    stays at /queue/)."""
    access = access_for(request.user)
    if not access.review and access.comply:
        waiting = selectors.promotions_open_by_workflow(workflow_ids=access.comply)
        if any(r.requested_by_id != request.user.pk for r in waiting.values()):
            return redirect("promotions")
        return redirect("history")
    if not access.review and access.own:
        return redirect("workflows")
    return queue(request)


def _filters(request: HttpRequest) -> "selectors.QueueFilters":
    return selectors.QueueFilters(
        workflow=request.GET.get("workflow", "")[:80],
        queue=request.GET.get("queue", "")[:12],
        action=request.GET.get("action", "")[:100],
    )


def _filter_params(filters: "selectors.QueueFilters") -> dict:
    return {
        k: v
        for k, v in (
            ("workflow", filters.workflow),
            ("queue", filters.queue),
            ("action", filters.action),
        )
        if v
    }


def _filter_qs(filters: "selectors.QueueFilters") -> str:
    """ "?queue=l2" (or ""): carried from the queue to its runs and back, so "next" stays
    in the filter the reviewer was working in."""
    params = _filter_params(filters)
    return "?" + urlencode(params) if params else ""


@login_required
@require_GET
def queue(request: HttpRequest) -> HttpResponse:
    now = timezone.now()
    workflow_ids = selectors.reviewable_workflow_ids(user=request.user)
    filters = _filters(request)
    runs = selectors.runs_waiting_for(workflow_ids=workflow_ids, filters=filters)
    page, has_more = selectors.page_after(
        runs, after=selectors.parse_after(request.GET.get("after", ""))
    )
    counts = selectors.facet_counts(workflow_ids=workflow_ids, filters=filters)
    reserved, held = services.reservations([r.id for r in page])
    base = _filter_params(filters)
    next_url = None
    if has_more and page:
        last = page[-1]
        next_url = "?" + urlencode({**base, "after": f"{last.created_at.isoformat()}_{last.id}"})
    owned = selectors.owned_workflow_ids(user=request.user)
    context = {
        "runs": [
            {
                "run": r,
                "held_by": held.get(str(r.id))
                if held.get(str(r.id)) != request.user.get_username()
                else None,
                "time_left": _time_left(r, now),
            }
            for r in page
        ],
        "reservations_down": not reserved,
        "filters": filters,
        "filter_qs": _filter_qs(filters),
        "counts": counts,
        "facets": _facets(counts, base, request.path),
        "next_url": next_url,
        "first_page": "after" not in request.GET,
        "failed": selectors.failed_runs_for_owner(workflow_ids=owned),
        # The page's own path: "/" for reviewers, "/queue/" for owners reading theirs.
        "clear_url": request.path,
        "waiting_total": counts["total"],
        "new_runs": _new_runs_poll(request, filters, since=now, count=0),
    }
    return render(request, _template(request, "approvals/queue.html", "queue-list"), context)


def _new_runs_poll(request: HttpRequest, filters, *, since, count: int) -> dict:
    """The queue's "N new runs" line: where to poll, and where the refresh goes."""
    params = _filter_params(filters)
    return {
        "count": count,
        "poll_url": reverse("queue-new") + "?" + urlencode({**params, "since": since.isoformat()}),
        "page_url": reverse("queue") + _filter_qs(filters),
    }


@login_required
@require_GET
def queue_new(request: HttpRequest) -> HttpResponse:
    """How many runs (under the page's filters) arrived since the page was drawn: the
    queue polls this every few seconds and shows "N new runs" with a link to refresh.
    Without JavaScript nothing polls and the page is as it was."""
    filters = _filters(request)
    since = selectors.parse_after(request.GET.get("since", "") + "_" + str(uuid.UUID(int=0)))
    count = 0
    if since is not None:
        count = selectors.waiting_since(
            workflow_ids=selectors.reviewable_workflow_ids(user=request.user),
            filters=filters,
            since=since[0],
        )
    context = {
        "new_runs": _new_runs_poll(
            request, filters, since=since[0] if since else timezone.now(), count=count
        )
    }
    return render(request, "approvals/queue.html#queue-new", context)


def _time_left(run, now) -> str:
    """Until the run's deadline decides it ("overdue" in the moments before the sweep)."""
    if run.deadline_at is None:
        return ""
    return time_left_text((run.deadline_at - now).total_seconds())


def _facets(counts: dict, base: dict, path: str) -> list[dict]:
    groups = []
    labels = dict(Queue.choices)
    for key, title in (("workflow", "Workflow"), ("queue", "Rung"), ("action", "Action")):
        items = []
        for value, n in sorted(counts[key].items()):
            if value in (None, ""):
                continue
            params = {**base, key: value}
            active = base.get(key) == value
            if active:
                params.pop(key)
            items.append(
                {
                    "value": value,
                    "label": labels.get(value, value) if key == "queue" else value,
                    "count": n,
                    "active": active,
                    "url": "?" + urlencode(params) if params else path,
                }
            )
        groups.append({"key": key, "title": title, "items": items})
    return groups


# -- one run ------------------------------------------------------------------------------


def _run_or_404(request: HttpRequest, run_id) -> "selectors.Run":
    try:
        return selectors.run_for_person(user=request.user, run_id=run_id)
    except NotFound:
        raise Http404("no such run") from None


def _run_context(request: HttpRequest, run, *, error: str = "", own: dict | None = None) -> dict:
    opened = services.review_open(run=run, user=request.user)
    reviewable = selectors.reviewable_workflow_ids(user=request.user)
    can_review = run.workflow_id in reviewable
    filters = _filters(request)
    prev_run, next_run = selectors.neighbours(run=run, workflow_ids=reviewable, filters=filters)
    position = selectors.queue_position(run=run, workflow_ids=reviewable, filters=filters)
    proposal = run.proposal or {}
    review = run.reviews.select_related("reviewer").first()
    left, capped = selectors.count_waiting(workflow_ids=reviewable)
    params = proposal.get("params") or {}
    action_types = {a.name: a for a in run.workflow.action_types.all()}
    action_names = list(action_types)
    decision = run.decision or {}
    params_json = json.dumps(params, indent=2, ensure_ascii=False, sort_keys=True)
    return {
        "run": run,
        "context": opened.snapshot["context"],
        "proposal": proposal,
        "params": params,
        "params_json": params_json,
        "draft_fields": _draft_fields(params),
        "artifact": proposal.get("artifact"),
        "artifact_is_text": isinstance(proposal.get("artifact"), str),
        "options": [
            {
                **o,
                "index": i,
                "params_json": json.dumps(
                    o["params"], indent=2, ensure_ascii=False, sort_keys=True
                ),
                "known": o["action"] in action_names,
                "action_type": action_types.get(o["action"]),
            }
            for i, o in enumerate(rules.options(proposal))
        ]
        if proposal
        else [],
        "action_names": action_names,
        "action_schemas": [
            {"name": name, "keys": _schema_keys(a.param_schema)} for name, a in action_types.items()
        ],
        "own": own
        or {"action": proposal.get("action", ""), "text": params_json, "error": "", "open": False},
        "time_left": _time_left(run, timezone.now()),
        "deadline_then": deadline_next(run) if run.status == RunStatus.PENDING_REVIEW else "",
        "seen_hash": opened.hash,
        "held_by": opened.held_by,
        "reservations_down": not opened.reserved,
        "can_decide": can_review and run.status == RunStatus.PENDING_REVIEW,
        "review": review,
        "decision_words": _decision_words(run, review),
        "prev_run": prev_run,
        "next_run": next_run,
        "position": position,
        "filters": filters,
        "filter_qs": _filter_qs(filters),
        "left": f"{left}+" if capped else left,
        "error": error,
        "decided_action_type": action_types.get(decision.get("action", "")),
        "decided_params": decision.get("params"),
        "decided_artifact": decision.get("artifact"),
        "result_json": json.dumps(run.result, indent=2, ensure_ascii=False, sort_keys=True)
        if run.result is not None
        else "",
        "probe": _probe_told(run),
        "eval_save": _eval_save(request, run, action_names),
    }


def _schema_keys(schema: dict) -> list[str]:
    """ "amount (number, required)" for the own-action form's hint."""
    keys = []
    for name, spec in (schema or {}).items():
        spec = spec if isinstance(spec, dict) else {}
        bits = [spec["type"]] if spec.get("type") else []
        if spec.get("required"):
            bits.append("required")
        keys.append(f"{name} ({', '.join(bits)})" if bits else name)
    return keys


def _decision_words(run, review) -> str:
    """What happened to the run, in words: the person's decision when there is one
    (approvals.review.decision_words), else the run's status (the policy, a deadline)."""
    if review is None:
        return run.get_status_display()
    return rules.decision_words(
        kind=review.kind,
        verdict=review.verdict,
        edit_distance=review.edit_distance,
        chosen_option=review.chosen_option,
        executor=run.action_type.executor if run.action_type else "",
    )


def _probe_told(run) -> dict | None:
    """What a probe's page says once it is decided (before, it looks like any run)."""
    if not run.probe or run.status == RunStatus.PENDING_REVIEW:
        return None
    case = EvalCase.objects.filter(probes__run=run).first()
    return {
        "caught": run.status == RunStatus.REJECTED,
        "by_person": run.decider == Decider.PERSON,
        "why": case.wrong_why if case else "",
    }


def _eval_save(request: HttpRequest, run, action_names: list[str]) -> dict | None:
    """ "Save as eval case" for an owner of the run's workflow on a decided run."""
    kind = eval_case_kind(run)
    if not kind or run.workflow_id not in access_for(request.user).own:
        return None
    saved = EvalCase.objects.filter(workflow_id=run.workflow_id, source_run=run.id).first()
    return {"kind": kind, "saved": saved, "action_names": action_names}


def _probe_message(run) -> str:
    if not run.probe:
        return ""
    if run.status == RunStatus.REJECTED:
        return (
            "That run was an attention probe: a known-wrong case from the eval set. "
            "You rejected it: caught. Nothing was executed."
        )
    return (
        "That run was an attention probe: a known-wrong case from the eval set. "
        "You approved it: missed. Nothing was executed."
    )


def _draft_fields(params: dict) -> list[dict]:
    """One form field per param, keeping its JSON type; one-line fields first (the
    stored JSON does not keep the agent's key order, so order by what reads best)."""
    fields = []
    for key, value in params.items():
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            kind, shown = "json", json.dumps(value, ensure_ascii=False)
        elif isinstance(value, str):
            kind = "textarea" if len(value) > 60 or "\n" in value else "text"
            shown = value
        else:
            kind, shown = "number", value
        fields.append({"name": key, "kind": kind, "value": shown})
    order = {"text": 0, "number": 0, "json": 1, "textarea": 2}
    return sorted(fields, key=lambda f: (order[f["kind"]], f["name"]))


@login_required
@require_GET
def run_detail(request: HttpRequest, run_id) -> HttpResponse:
    # A run past its deadline is shown as the deadline decided it, never as decidable.
    run = run_after_deadline(_run_or_404(request, run_id))
    return render(
        request, _template(request, "approvals/run.html", "run-panel"), _run_context(request, run)
    )


def _form_params(request: HttpRequest, original: dict) -> dict:
    """Rebuild the edited params with each field's original JSON type."""
    params = {}
    for key, value in original.items():
        raw = request.POST.get(f"param__{key}")
        if raw is None:
            params[key] = value
        elif isinstance(value, bool) or not isinstance(value, (str, int, float)):
            try:
                params[key] = json.loads(raw)
            except ValueError:
                raise LadderError(f"'{key}' is not valid JSON", code="invalid_params") from None
        elif isinstance(value, str):
            params[key] = raw.replace("\r\n", "\n")
        else:
            try:
                number = Decimal(raw)
            except InvalidOperation:
                raise LadderError(f"'{key}' must be a number", code="invalid_params") from None
            if not number.is_finite() or math.isinf(float(number)):  # "1e400" too
                raise LadderError(f"'{key}' must be a finite number", code="invalid_params")
            params[key] = (
                int(number) if isinstance(value, int) and number == int(number) else float(number)
            )
    return params


def _own_params(run, action: str, raw: str) -> dict:
    """The reviewer's own params, checked before anything is decided: valid JSON (or
    where it is not: line and column), an object, the action's schema, and no keys the
    action does not take (the gateway lets agents send extra keys; a person typing one
    has most likely misspelt a real one)."""
    try:
        params = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise LadderError(
            f"your params are not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}",
            code="invalid_params",
        ) from None
    if not isinstance(params, dict):
        raise LadderError("params must be a JSON object ({...})", code="invalid_params")
    action_type = run.workflow.action_types.filter(name=action).first()
    if action_type is None:
        raise LadderError(f"'{action}' is not an action of this workflow", code="unknown_action")
    schema = action_type.param_schema or {}
    unknown = sorted(set(params) - set(schema)) if schema else []
    if unknown:
        raise LadderError(
            f"{action} takes no "
            + ", ".join(f"'{k}'" for k in unknown)
            + " (it takes "
            + ", ".join(schema)
            + ")",
            code="unknown_params",
        )
    validate_params(schema, params)
    return params


def _decision_from_form(request: HttpRequest, run) -> object:
    post = request.POST
    proposal = run.proposal or {}
    reason = post.get("reason", "")[:2000]
    if run.queue == Queue.L1:
        artifact = proposal.get("artifact")
        if isinstance(artifact, str) and "artifact" in post:
            artifact = post["artifact"].replace("\r\n", "\n")
        return services.DraftSubmission(
            params=_form_params(request, proposal.get("params") or {}),
            artifact=artifact,
            discard=post.get("verdict") == "discard",
            reason=reason,
        )
    if run.queue == Queue.L2:
        verdict = post.get("verdict", "")
        if verdict == "reject":
            return services.Pick(option=None, reject=True, reason=reason)
        if verdict == "own":
            own_action = post.get("own_action", "")
            return services.Pick(
                option=None,
                own_action=own_action,
                own_params=_own_params(run, own_action, post.get("own_params") or "{}"),
            )
        try:
            option = int(post.get("option", ""))
        except ValueError:
            raise LadderError("pick one of the options", code="invalid_option") from None
        return services.Pick(option=option)
    verdict = post.get("verdict", "")
    if verdict not in ("approve", "reject"):
        raise LadderError("choose approve or reject", code="invalid_verdict")
    return services.Approval(approve=verdict == "approve", reason=reason)


@login_required
@require_POST
def run_decide(request: HttpRequest, run_id) -> HttpResponse:
    run = _run_or_404(request, run_id)
    if run.workflow_id not in access_for(request.user).review:
        # They may read this workflow's runs (owner, compliance) but not decide them.
        raise PermissionDenied("you do not review this workflow")
    try:
        seen_version = int(request.POST.get("seen_version", ""))
        decision = _decision_from_form(request, run)
        review = services.review_decide(
            run=run,
            reviewer=request.user,
            seen_hash=request.POST.get("seen_hash", ""),
            seen_version=seen_version,
            decision=decision,
        )
    except (LadderError, ValueError) as exc:
        message = exc.message if isinstance(exc, LadderError) else "the form was incomplete"
        run.refresh_from_db()
        own = None
        if request.POST.get("verdict") == "own":
            # What was typed stays, with what is wrong said next to it.
            own = {
                "action": request.POST.get("own_action", ""),
                "text": request.POST.get("own_params", ""),
                "error": message,
                "open": True,
            }
        if own is not None and not request.htmx:
            response = render(
                request, "approvals/run.html", _run_context(request, run, error=message, own=own)
            )
            response.status_code = 422
            return response
        if request.htmx:
            response = render(
                request,
                "approvals/run.html#run-panel",
                _run_context(request, run, error=message, own=own),
            )
            response.status_code = 409 if getattr(exc, "status", 400) == 409 else 422
            # htmx does not swap error responses by default; tell it to.
            response["HX-Reswap"] = "outerHTML"
            return response
        messages.error(request, message)
        return redirect(reverse("run", args=[run.id]) + _filter_qs(_filters(request)))
    label = _decision_words(run, review).lower()
    run.refresh_from_db(fields=["status"])
    probe_note = _probe_message(run)
    reviewable = selectors.reviewable_workflow_ids(user=request.user)
    filters = _filters(request)
    filter_qs = _filter_qs(filters)
    upcoming = selectors.next_waiting(workflow_ids=reviewable, exclude=run.id, filters=filters)
    if request.htmx:
        if upcoming is None:
            if probe_note:  # shown on the queue the client is sent to
                messages.info(request, probe_note)
            return HttpResponseClientRedirect(
                reverse("queue") + "?" + urlencode({**_filter_params(filters), "done": 1})
            )
        nxt = selectors.run_for_person(user=request.user, run_id=upcoming.id)
        response = render(
            request,
            "approvals/run.html#run-panel",
            {
                **_run_context(request, nxt),
                "flash": label,
                "flash_run": run,
                "flash_probe": probe_note,
            },
        )
        response["HX-Push-Url"] = reverse("run", args=[nxt.id]) + filter_qs
        return response
    what = run.action_type.name if run.action_type else "Run"
    messages.success(request, f"{what} on {run.workflow.slug} {label}.")
    if probe_note:
        messages.info(request, probe_note)
    if upcoming is None:
        return redirect(reverse("queue") + filter_qs)
    return redirect(reverse("run", args=[upcoming.id]) + filter_qs)


@login_required
@require_GET
def run_replay_view(request: HttpRequest, run_id) -> HttpResponse:
    run = _run_or_404(request, run_id)
    replay = run_replay(run=run)
    # Who wrote each step is shown once the run is decided: until then an attention
    # probe's author ("system:probe") would tell a reviewer what it is. People's names
    # in the steps' own JSON go too, as in the agent's replay.
    hidden = run.status in WAITING_STATUSES
    if hidden:
        replay = replay_for_agent(replay)
    action_types = {t.name: t for t in ActionType.objects.filter(workflow=run.workflow)}
    money = {name: (t.value_param, t.currency_param) for name, t in action_types.items()}
    versions = {
        step["payload"].get("policy_version")
        for step in replay["steps"]
        if step["type"] in ("policy_decision", "policy_shadow")
        and isinstance(step["payload"], dict)
        and isinstance(step["payload"].get("policy_version"), int)
    }
    steps = replay_page.steps_view(
        replay,
        names={} if hidden else selectors.people_names(user_ids=replay_page.person_ids(replay)),
        money=money,
        sentences=selectors.policy_sentences(
            workflow=run.workflow, numbers=versions, actions=money
        ),
        now=timezone.now(),
        actors_hidden=hidden,
    )
    first, last = (replay["steps"][0]["at"], replay["steps"][-1]["at"]) if steps else (None, None)
    return render(
        request,
        "approvals/replay.html",
        {
            "run": run,
            "replay": replay,
            "steps": steps,
            "action_types": action_types,
            "actors_hidden": hidden,
            "received": replay_page.time_of(run.created_at, now=timezone.now()),
            "span": replay_page.duration_between(first, last),
        },
    )


@login_required
@require_GET
def run_replay_json(request: HttpRequest, run_id) -> HttpResponse:
    """The stored trace as a file an examiner re-verifies (traces.chain.verify_chain)."""
    run = _run_or_404(request, run_id)
    if run.status in WAITING_STATUSES:
        # Every stored document names its author; the page hides them while the run
        # waits, so the file waits too.
        return JsonResponse(
            {
                "error": {
                    "code": "run_waiting",
                    "message": "the trace can be downloaded once the run is decided",
                }
            },
            status=409,
        )
    response = JsonResponse(
        run_trace_export(run=run), json_dumps_params={"ensure_ascii": False, "indent": 1}
    )
    response["Content-Disposition"] = f'attachment; filename="run-{run.id}-trace.json"'
    return response


# -- my decisions --------------------------------------------------------------------------


MY_DECISIONS_PAGE = 50


def _parse_review_after(raw: str):
    """A My decisions cursor ("<created_at>_<review id>"); None when absent or bad."""
    at, _, review_id = raw.rpartition("_")
    if not at or not review_id.isdigit():
        return None
    parsed = selectors.parse_after(f"{at}_{uuid.UUID(int=0)}")
    return (parsed[0], int(review_id)) if parsed else None


@login_required
@require_GET
def my_decisions(request: HttpRequest) -> HttpResponse:
    """The runs the signed-in person decided, newest first, for their own memory ("what
    did I do with that refund?"). Deliberately no totals, rates or scores: nothing here
    measures the person (docs/DESIGN.md, privacy)."""
    reviews, has_more = selectors.decided_by(
        user=request.user,
        after=_parse_review_after(request.GET.get("after", "")),
        size=MY_DECISIONS_PAGE,
    )
    next_url = None
    if has_more and reviews:
        last = reviews[-1]
        next_url = "?" + urlencode({"after": f"{last.created_at.isoformat()}_{last.pk}"})
    rows = [
        {
            "review": r,
            "run": r.run,
            "words": _decision_words(r.run, r),
            "value": r.run.value,
        }
        for r in reviews
    ]
    return render(
        request,
        "approvals/my_decisions.html",
        {"rows": rows, "next_url": next_url, "first_page": "after" not in request.GET},
    )


# -- roles --------------------------------------------------------------------------------


@login_required
def workflow_roles(request: HttpRequest, slug: str) -> HttpResponse:
    workflow = Workflow.objects.filter(slug=slug).first()
    if workflow is None or workflow.pk not in access_for(request.user).own:
        raise Http404("no such workflow")
    if request.method == "POST":
        username = request.POST.get("username", "").strip()
        role = request.POST.get("role", "")
        revoke = request.POST.get("action") == "revoke"
        user = User.objects.filter(username=username).first()
        if user is None or role not in Role.values:
            messages.error(request, "Choose an existing person and a role.")
            return redirect("workflow-roles", slug=slug)
        change = role_revoke if revoke else role_grant
        try:
            changed = change(workflow=workflow, user=user, role=role, by=request.user)
        except LadderError as exc:
            messages.error(request, exc.message)
        else:
            if revoke:
                done = "is no longer" if changed else "was not"
            else:
                done = "is now" if changed else "already was"
            messages.success(request, f"{username} {done} {role} of {workflow.slug}.")
        return redirect("workflow-roles", slug=slug)
    holders = people_with_roles(workflow=workflow)
    return render(
        request,
        "approvals/roles.html",
        {
            "workflow": workflow,
            "people": [
                {"user": u, "roles": sorted(r)}
                for u, r in sorted(holders.items(), key=lambda item: item[0].username)
            ],
            "roles": Role.choices,
            "changes": role_changes(workflow=workflow),
            "usernames": list(
                User.objects.filter(is_active=True)
                .order_by("username")
                .values_list("username", flat=True)
            ),
        },
    )
