"""Roles per workflow, held as django-guardian object permissions on the Workflow."""

from django.contrib.auth.models import User
from django.db import models
from guardian.shortcuts import assign_perm, get_objects_for_user, get_perms, remove_perm

from ladder.models import Workflow


class Role(models.TextChoices):
    REVIEWER = "reviewer", "Reviewer"
    OWNER = "owner", "Owner"
    COMPLIANCE = "compliance", "Compliance"
    ADMIN = "admin", "Admin"


REVIEW = "ladder.review_workflow"
OWN = "ladder.own_workflow"
COMPLY = "ladder.comply_workflow"

PERMS_BY_ROLE: dict[str, tuple[str, ...]] = {
    Role.REVIEWER: (REVIEW,),
    Role.OWNER: (OWN,),
    Role.COMPLIANCE: (COMPLY,),
    Role.ADMIN: (REVIEW, OWN, COMPLY),
}
# Any of these lets a person see a workflow's runs at all.
VIEW_PERMS = [REVIEW, OWN, COMPLY]


def role_grant(*, workflow: Workflow, user: User, role: str) -> None:
    for perm in PERMS_BY_ROLE[role]:
        assign_perm(perm, user, workflow)


def role_revoke(*, workflow: Workflow, user: User, role: str) -> None:
    for perm in PERMS_BY_ROLE[role]:
        remove_perm(perm, user, workflow)


def roles_of(*, user: User, workflow: Workflow) -> set[str]:
    perms = {f"ladder.{p}" for p in get_perms(user, workflow)}
    roles = {role for role, needed in PERMS_BY_ROLE.items() if set(needed) <= perms}
    if Role.ADMIN in roles and not user.is_superuser:
        # Admin is the union of the other three; report it only when granted as such.
        pass
    return roles


def workflows_for(*, user: User, perm: str | list[str]) -> models.QuerySet[Workflow]:
    perms = [perm] if isinstance(perm, str) else perm
    return get_objects_for_user(user, perms, klass=Workflow, any_perm=True, with_superuser=True)
