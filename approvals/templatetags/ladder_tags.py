import json

from django import template

from approvals.audit import audits_due_count
from approvals.roles import access_for

register = template.Library()


@register.filter
def pretty_json(value) -> str:
    """Agent data as readable text. Returns a plain str: autoescaping still applies."""
    if value is None:
        return "(none)"
    if isinstance(value, str):
        return value
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True)


@register.filter
def one_line_json(value) -> str:
    if value is None:
        return ""
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


@register.filter
def has_workflow_role(user) -> bool:
    """Whether the menu offers Workflows: any role on any workflow (one memoised lookup
    per request, shared with the views)."""
    return bool(user.is_authenticated and access_for(user).view)


@register.filter
def reviews_or_new(user) -> bool:
    """Whether the menu offers the Queue: reviewers, and people with no role yet (whose
    empty queue says what it means); owners and compliance land elsewhere."""
    if not user.is_authenticated:
        return False
    access = access_for(user)
    return bool(access.review) or not access.view


@register.filter
def decides_promotions(user) -> bool:
    """Whether the menu offers Promotions: owners ask, compliance decides."""
    if not user.is_authenticated:
        return False
    access = access_for(user)
    return bool(access.own or access.comply)


@register.simple_tag(takes_context=True)
def audits_due(context) -> str | None:
    """The menu's count of audit samples waiting for the signed-in person: None for
    someone who reviews no workflow (no menu entry), "1000+" past the count's cap."""
    request = context.get("request")
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return None
    workflow_ids = access_for(user).review
    if not workflow_ids:
        return None
    due, capped = audits_due_count(workflow_ids=workflow_ids)
    return f"{due}+" if capped else str(due)


@register.filter
def may_stop(user, workflow) -> bool:
    """Whether the stop button (and resume) is offered: owners and compliance of the
    workflow, admins (approvals.stop_views checks it again on POST)."""
    if not user.is_authenticated:
        return False
    access = access_for(user)
    return workflow.pk in access.own | access.comply
