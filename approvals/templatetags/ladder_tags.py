import json

from django import template

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
