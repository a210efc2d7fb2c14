import json
from datetime import UTC, datetime

from django import template
from django.urls import NoReverseMatch, reverse
from django.utils import timezone
from django.utils.html import format_html

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


def ago_text(seconds: float) -> str:
    """ "just now", "4 min ago", "3 h ago", "2 days ago" (and "in 4 min" ahead)."""
    ahead = seconds < 0
    seconds = abs(seconds)
    if seconds < 60:
        return "just now"
    if seconds < 3600:
        n, unit = int(seconds // 60), "min"
    elif seconds < 86400:
        n, unit = int(seconds // 3600), "h"
    else:
        n = int(seconds // 86400)
        unit = "day" if n == 1 else "days"
    return f"in {n} {unit}" if ahead else f"{n} {unit} ago"


@register.filter
def ago(value: datetime | None) -> str:
    """A time as "4 min ago", with the exact UTC time on hover (and for machines)."""
    if not isinstance(value, datetime):
        return ""
    if timezone.is_naive(value):
        value = value.replace(tzinfo=UTC)
    exact = value.astimezone(UTC)
    return format_html(
        '<time datetime="{}" title="{}">{}</time>',
        exact.isoformat(timespec="seconds"),
        exact.strftime("%Y-%m-%d %H:%M:%S UTC"),
        ago_text((timezone.now() - exact).total_seconds()),
    )


def _url_or_none(name: str) -> str | None:
    try:
        return reverse(name)
    except NoReverseMatch:
        return None


@register.simple_tag(takes_context=True)
def menu_for(context) -> dict:
    """What the menu offers the signed-in person: only what their roles reach.

    Reviewers: queue, their decisions, audit. Owners: workflows, roles (through the
    workflow they own), promotions, history. Compliance: workflows, promotions, history.
    Anyone with a role: workflows. Read once per request (access_for is memoised).
    """
    request = context.get("request")
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}
    access = access_for(user)
    # Roles are per workflow: the workflow list links each owned one's roles page.
    roles_url = reverse("workflows") if access.own else None
    return {
        # People with no role yet get the queue too: its empty state says what it means.
        "queue": reverse("queue") if (access.review or not access.view) else None,
        # Owners read the failed executions of their workflows on /queue/.
        "owner_queue": reverse("queue-page") if (access.own and not access.review) else None,
        "my_decisions": bool(access.review),
        "workflows": bool(access.view),
        "promotions": bool(access.own or access.comply),
        "history": _url_or_none("history") if (access.own or access.comply) else None,
        "roles": roles_url,
    }
