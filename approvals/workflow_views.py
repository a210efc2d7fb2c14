"""Workflow pages: the list, one workflow (rung, gates, rung history, promotion request,
certificate, policy, shadow agreement), its policy (read-only, versions, diff, JSON), the
owner's policy editor and the download of its autonomy certificates.

Anyone with a role on a workflow may read these; a workflow you have no role on is a 404
(its existence is not told). Only owners and admins edit its policy (403 for the others).
"""

import json

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.db.models import Max
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from approvals import selectors
from approvals.drift_display import drift_panel
from approvals.drill_views import drills_context
from approvals.gate_charts import gate_charts_context
from approvals.gate_display import change_figures, gate_rows, ladder_rungs, verdict_counts
from approvals.policies import (
    document_text,
    policy_edit_save,
    policy_preview,
    policy_problems,
    rule_rows,
    starter_document,
)
from approvals.roles import Access, access_for
from approvals.services import promotion_request
from approvals.views import _template
from ladder.errors import Conflict, Forbidden, LadderError, Unprocessable
from ladder.models import Alert, Certificate, GateSnapshot, PolicyVersion, Workflow
from ladder.policies import (
    policy_diff,
    policy_latest,
    policy_out,
    version_json,
    version_policy,
)
from ladder.policy import audit_text
from ladder.rungs import Rung
from ladder.services import CAUSE_WORDS, certificate_current, rung_demote, rung_history
from traces.evals import probe_catch
from traces.selectors import (
    SHADOW_OUTCOMES,
    ShadowAgreement,
    gate_snapshot_latest,
    shadow_agreement,
)
from traces.services.gates import gates_recompute


def _workflow_or_404(request: HttpRequest, slug: str) -> tuple[Workflow, Access]:
    access = access_for(request.user)
    workflow = Workflow.objects.filter(slug=slug).first()
    if workflow is None or workflow.pk not in access.view:
        raise Http404("no such workflow")
    return workflow, access


def _int(raw: str | None) -> int | None:
    try:
        return int(raw) if raw is not None else None
    except ValueError:
        return None


def _duration(seconds: int) -> str:
    for unit, name in ((86400, "day"), (3600, "hour"), (60, "minute")):
        if seconds >= unit and seconds % unit == 0:
            n = seconds // unit
            return f"{n:,} {name}{'' if n == 1 else 's'}"
    return f"{seconds:,} second{'' if seconds == 1 else 's'}"


def _policy_view(version: PolicyVersion | None) -> dict | None:
    """A version as the pages show it: rules with their sentences, or a warning when the
    stored rules no longer fit the workflow (an action type they name was removed)."""
    if version is None:
        return None
    policy = version_policy(version)
    return {
        "version": version,
        "valid": policy is not None,
        "rules": rule_rows(policy) if policy is not None else [],
        "audit": audit_text(policy.audit_sample_rate) if policy is not None else "",
    }


# -- the list -----------------------------------------------------------------------------


def _glance(snapshot: GateSnapshot | None, workflow: Workflow) -> dict | None:
    """The latest snapshot at a glance: verdict counts for the next rung, eligible or
    not, and whether it still speaks of the rung the workflow stands on."""
    if snapshot is None:
        return None
    return {
        "snapshot": snapshot,
        "counts": verdict_counts(snapshot.gates),
        "stale": snapshot.rung != workflow.rung,
    }


@login_required
@require_GET
def workflow_list(request: HttpRequest) -> HttpResponse:
    access = access_for(request.user)
    workflows = list(
        Workflow.objects.filter(pk__in=access.view)
        .annotate(latest_policy=Max("policy_versions__number"))
        .order_by("slug")
    )
    ids = [wf.pk for wf in workflows]
    snapshots = selectors.gate_snapshots_latest(workflow_ids=ids)
    waiting = selectors.waiting_counts(workflow_ids=ids)
    open_requests = selectors.promotions_open_by_workflow(workflow_ids=ids)
    rows = [
        {
            "workflow": wf,
            "in_force": wf.rung >= Rung.L4,
            "reviewer": wf.pk in access.review,
            "owner": wf.pk in access.own,
            "ladder": ladder_rungs(rung=wf.rung, max_rung=wf.max_rung),
            "glance": _glance(snapshots.get(wf.pk), wf),
            "waiting": waiting.get(wf.pk, 0),
            "open_request": open_requests.get(wf.pk),
        }
        for wf in workflows
    ]
    return render(request, "approvals/workflows.html", {"rows": rows})


# -- one workflow -------------------------------------------------------------------------


_OUTCOME_WORDS = {
    "allow": ("allowed", "Allowed it"),
    "escalate": ("escalated", "Sent it to a person"),
    "deny": ("denied", "Denied it"),
}


def _shadow_rows(shadow: ShadowAgreement) -> list[dict]:
    return [
        {
            "outcome": outcome,
            "verb": _OUTCOME_WORDS[outcome][0],
            "label": _OUTCOME_WORDS[outcome][1],
            "total": shadow.outcome_total(outcome),
            **shadow.table[outcome],
        }
        for outcome in SHADOW_OUTCOMES
    ]


def _certificate_row(certificate: Certificate, now) -> dict:
    if certificate.valid_until is None:
        state, words = "ok", "valid, no expiry"
    elif certificate.valid_at(now):
        state, words = "ok", "valid"
    else:
        state, words = "denied", "expired"
    return {"certificate": certificate, "state": state, "words": words}


def _certificates(workflow: Workflow) -> dict:
    """The certificate the workflow stands on and the others, newest first. At L4/L5
    without a valid one the gateway handles its runs at L3: the page says so."""
    now = timezone.now()
    current = certificate_current(workflow=workflow, at=now)
    valid = current is not None and current.valid_at(now)
    others = (
        Certificate.objects.filter(workflow=workflow)
        .select_related("approved_by")
        .order_by("-issued_at", "-id")
    )
    return {
        "certificate": _certificate_row(current, now) if current else None,
        "certificate_capped": workflow.rung >= Rung.L4 and not valid,
        "past_certificates": [
            _certificate_row(c, now) for c in others if current is None or c.pk != current.pk
        ],
    }


def _request_blockers(workflow: Workflow, snapshot: GateSnapshot | None, open_request) -> list[str]:
    """Why "Request promotion" is disabled, from what the page shows. The service
    recomputes and checks again on submit: this only saves a pointless click."""
    if workflow.rung >= Rung.L5:
        return ["L5 is the top of the ladder."]
    if workflow.rung + 1 > workflow.max_rung:
        return [
            f"L{workflow.rung + 1} is past this workflow's max rung (L{workflow.max_rung}); "
            "only an admin can raise it."
        ]
    if open_request is not None:
        return [f"Request #{open_request.pk} is open: it is decided or withdrawn first."]
    if snapshot is None:
        return ["No gates have been computed yet: recompute them first."]
    if snapshot.rung != workflow.rung:
        return [f"The latest gates were computed at L{snapshot.rung}: recompute them first."]
    return list(snapshot.reasons)


def _detail_context(request: HttpRequest, workflow: Workflow, access: Access) -> dict:
    latest = policy_latest(workflow)
    in_force = workflow.rung >= Rung.L4
    shadow = None
    if latest is not None and workflow.rung in (Rung.L2, Rung.L3):
        shadow = shadow_agreement(workflow, _int(request.GET.get("version")))
    snapshot = gate_snapshot_latest(workflow=workflow)
    open_request = selectors.promotions_open_by_workflow(workflow_ids=[workflow.pk]).get(
        workflow.pk
    )
    owner = workflow.pk in access.own
    blockers = _request_blockers(workflow, snapshot, open_request)
    return {
        "workflow": workflow,
        "rungs": ladder_rungs(rung=workflow.rung, max_rung=workflow.max_rung),
        "actions": workflow.action_types.order_by("name"),
        "policy": _policy_view(latest),
        "in_force": in_force,
        "deadline": _duration(workflow.review_deadline_seconds),
        "owner": owner,
        "reviewer": workflow.pk in access.review,
        "shadow": shadow,
        "shadow_rows": _shadow_rows(shadow) if shadow is not None else [],
        "snapshot": snapshot,
        "glance": _glance(snapshot, workflow),
        "gate_rows": gate_rows(snapshot.gates) if snapshot is not None else [],
        "can_recompute": owner or workflow.pk in access.comply,
        "history": [
            {
                **change,
                "when": change["at"][:16].replace("T", " "),
                "what": CAUSE_WORDS.get(change["cause"], change["kind"]),
                "figures": change_figures(change["evidence"]),
            }
            for change in rung_history(workflow=workflow, people=True)
        ],
        "alerts": list(Alert.objects.filter(workflow=workflow).order_by("-created_at", "-id")[:10]),
        "can_demote": workflow.rung > Rung.L0 and workflow.pk in access.own | access.comply,
        "lower_rungs": [(r, f"L{r}") for r in range(workflow.rung - 1, -1, -1)],
        "demote_reason": "",
        "demote_error": None,
        "open_request": open_request,
        "next_rung": workflow.rung + 1,
        "can_request": owner and not blockers,
        "request_blockers": blockers,
        "note": "",
        "request_error": None,
        "probes": _probes_view(workflow),
        **_certificates(workflow),
        **drift_panel(workflow=workflow, access=access),
        **drills_context(workflow=workflow, access=access),
        **gate_charts_context(workflow=workflow, access=access),
    }


@login_required
@require_GET
def workflow_detail(request: HttpRequest, slug: str) -> HttpResponse:
    workflow, access = _workflow_or_404(request, slug)
    context = _detail_context(request, workflow, access)
    return render(request, _template(request, "approvals/workflow.html", "shadow-panel"), context)


def _probes_view(workflow: Workflow) -> dict:
    """The attention probes' catch rate for the workflow as a whole (never per person)."""
    catch = probe_catch(workflow=workflow)
    return {
        "rate": f"{workflow.probe_rate * 100:g}",
        "k": catch.k,
        "n": catch.n,
        "percent": f"{catch.k / catch.n * 100:.1f}" if catch.n else "",
        "window_days": workflow.gate_window_days,
    }


@login_required
@require_POST
def workflow_gates_recompute(request: HttpRequest, slug: str) -> HttpResponse:
    """ "Recompute now": a fresh snapshot on demand (owners and compliance)."""
    workflow, access = _workflow_or_404(request, slug)
    if workflow.pk not in access.own | access.comply:
        raise PermissionDenied("only owners and compliance recompute the gates")
    snapshot = gates_recompute(
        workflow=workflow, trigger=GateSnapshot.Trigger.ON_DEMAND, by=request.user
    )
    if request.htmx:
        context = _detail_context(request, workflow, access)
        return render(request, "approvals/workflow.html#gates-panel", context)
    state = "eligible" if snapshot.eligible else "not eligible"
    target = f"L{snapshot.target_rung}" if snapshot.target_rung is not None else "a higher rung"
    messages.success(request, f"Gates recomputed: {state} for {target}.")
    return redirect(reverse("workflow", args=[workflow.slug]) + "#gates")


@login_required
@require_POST
def workflow_promotion_request(request: HttpRequest, slug: str) -> HttpResponse:
    """An owner asks for the next rung. A refusal re-renders the page with the reasons
    and the note as typed."""
    workflow, access = _workflow_or_404(request, slug)
    note = request.POST.get("note", "")[:4000]
    try:
        promotion = promotion_request(
            workflow=workflow, by=request.user, note=note, to_rung=_int(request.POST.get("to_rung"))
        )
    except LadderError as exc:
        workflow.refresh_from_db()
        context = _detail_context(request, workflow, access) | {
            "note": note,
            "request_error": {"message": exc.message, "reasons": exc.details.get("reasons", [])},
        }
        return render(request, "approvals/workflow.html", context, status=exc.status)
    messages.success(
        request,
        f"Promotion to L{promotion.to_rung} requested: a compliance user of the workflow "
        "decides it.",
    )
    return redirect("promotion", request_id=promotion.pk)


@login_required
@require_GET
def workflow_certificate_file(request: HttpRequest, slug: str, certificate_id) -> HttpResponse:
    """One certificate as a file for `manage.py verify_certificate` (docs/certificates.md):
    anyone with a role on the workflow; for anyone else it does not exist."""
    workflow, _ = _workflow_or_404(request, slug)
    certificate = Certificate.objects.filter(workflow=workflow, pk=certificate_id).first()
    if certificate is None:
        raise Http404("no such certificate")
    body = json.dumps(certificate.as_file(), indent=2, sort_keys=True, ensure_ascii=False)
    response = HttpResponse(body + "\n", content_type="application/json; charset=utf-8")
    name = f"{workflow.slug}-L{certificate.rung}-{certificate.issued_at:%Y%m%d}-{certificate.pk}"
    response["Content-Disposition"] = f'attachment; filename="{name}.json"'
    return response


# -- its policy ---------------------------------------------------------------------------


def _diff_context(versions: list[PolicyVersion], raw_from, raw_to) -> dict:
    """The diff the page shows: `?from=N&to=M`, by default the previous version against
    the newest. An unknown version is named, not guessed."""
    numbers = {v.number: v for v in versions}
    if not versions:
        return {"diff": None, "diff_error": ""}
    newest = versions[0].number
    to = _int(raw_to) if raw_to else newest
    start = _int(raw_from) if raw_from else (to - 1 if to is not None else None)
    if to not in numbers:
        return {"diff": None, "diff_error": f"There is no version {raw_to} of this policy."}
    if start not in numbers and start != 0:
        return {"diff": None, "diff_error": f"There is no version {raw_from} of this policy."}
    return {
        "diff": policy_diff(numbers.get(start), numbers[to]),
        "diff_from": start,
        "diff_to": to,
        "diff_error": "",
    }


@login_required
@require_GET
def workflow_policy(request: HttpRequest, slug: str) -> HttpResponse:
    workflow, access = _workflow_or_404(request, slug)
    versions = list(
        PolicyVersion.objects.filter(workflow=workflow)
        .select_related("workflow", "created_by")
        .order_by("-number")
    )
    latest = versions[0] if versions else None
    diff = _diff_context(versions, request.GET.get("from"), request.GET.get("to"))
    context = {
        "workflow": workflow,
        "policy": _policy_view(latest),
        "json": version_json(latest),
        "in_force": workflow.rung >= Rung.L4,
        "versions": versions,
        "owner": workflow.pk in access.own,
        **diff,
    }
    response = render(request, _template(request, "approvals/policy.html", "policy-diff"), context)
    if diff["diff_error"]:
        response.status_code = 404
    return response


@login_required
@require_GET
def workflow_policy_json(request: HttpRequest, slug: str) -> JsonResponse:
    """The same policy as `GET /api/v1/workflows/{slug}` gives agents, for people (session
    auth, same permission as the policy page), with the version history."""
    workflow, _ = _workflow_or_404(request, slug)
    versions = list(
        PolicyVersion.objects.filter(workflow=workflow)
        .select_related("workflow", "created_by")
        .order_by("-number")
    )
    latest = policy_out(versions[0]) if versions else None
    in_force = workflow.rung >= Rung.L4
    return JsonResponse(
        {
            "workflow": workflow.slug,
            "rung": workflow.rung,
            "policy": latest if in_force else None,
            "draft_policy": None if in_force else latest,
            "versions": [
                {
                    "version": v.number,
                    "created_at": v.created_at,
                    "created_by": v.created_by.get_username() if v.created_by else None,
                    "note": v.note,
                }
                for v in versions
            ],
        }
    )


# -- the editor ---------------------------------------------------------------------------


@login_required
@require_http_methods(["GET", "POST"])
def workflow_policy_edit(request: HttpRequest, slug: str) -> HttpResponse:
    workflow, access = _workflow_or_404(request, slug)
    if workflow.pk not in access.own:
        raise PermissionDenied("only an owner of the workflow can change its policy")
    latest = policy_latest(workflow)
    context = {
        "workflow": workflow,
        "latest": latest,
        "next_number": (latest.number if latest else 0) + 1,
        "in_force": workflow.rung >= Rung.L4,
        "based_on": latest.number if latest else 0,
        "text": version_json(latest) if latest else document_text(starter_document(workflow)),
        "note": "",
        "preview": None,
        "problems": [],
        "error": "",
    }
    if request.method == "GET":
        return render(request, "approvals/policy_edit.html", context)
    text = request.POST.get("document", "").replace("\r\n", "\n")
    note = request.POST.get("note", "")
    context |= {"text": text, "note": note, "based_on": _int(request.POST.get("based_on")) or 0}
    if request.POST.get("intent") == "preview":
        preview = policy_preview(workflow=workflow, text=text)
        context["preview"] = preview
        page = _template(request, "approvals/policy_edit.html", "policy-preview")
        return render(request, page, context, status=200 if preview.valid else 422)
    try:
        version = policy_edit_save(
            workflow=workflow, text=text, note=note, based_on=context["based_on"], by=request.user
        )
    except Unprocessable as exc:
        context["problems"] = policy_problems(exc)
        return render(request, "approvals/policy_edit.html", context, status=422)
    except Conflict as exc:
        # Shown once: the form now builds on the version saved meanwhile.
        latest = policy_latest(workflow)
        context |= {
            "error": exc.message,
            "latest": latest,
            "based_on": latest.number if latest else 0,
            "next_number": (latest.number if latest else 0) + 1,
        }
        return render(request, "approvals/policy_edit.html", context, status=409)
    except Forbidden as exc:
        raise PermissionDenied(exc.message) from None
    state = "in force" if workflow.rung >= Rung.L4 else "the draft, evaluated in shadow"
    messages.success(request, f"Saved version {version.number}: it is now {state}.")
    return redirect("workflow-policy", slug=workflow.slug)


@login_required
@require_POST
def workflow_demote(request: HttpRequest, slug: str) -> HttpResponse:
    """Move the workflow down by hand (owners and compliance): a reason is required, no
    evidence. A refusal re-renders the page with the reason as typed."""
    workflow, access = _workflow_or_404(request, slug)
    if workflow.pk not in access.own | access.comply:
        raise PermissionDenied("only owners and compliance move a workflow down")
    reason = request.POST.get("reason", "")[:2000]
    to_rung = _int(request.POST.get("to_rung"))
    try:
        if to_rung is None:
            raise Unprocessable("choose the rung to move down to", code="invalid_rung")
        change = rung_demote(workflow=workflow, to_rung=to_rung, reason=reason, actor=request.user)
    except LadderError as exc:
        workflow.refresh_from_db()
        context = _detail_context(request, workflow, access) | {
            "demote_reason": reason,
            "demote_error": exc.message,
        }
        return render(request, "approvals/workflow.html", context, status=exc.status)
    messages.success(
        request,
        f"{workflow.name} moved from L{change.from_rung} to L{change.to_rung}: its next run is "
        f"handled at L{change.to_rung}.",
    )
    return redirect(reverse("workflow", args=[workflow.slug]) + "#rung")
