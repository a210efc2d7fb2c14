"""Roles per workflow, held as django-guardian object permissions on the Workflow."""

from dataclasses import dataclass

from django.contrib.auth.models import User
from django.contrib.contenttypes.models import ContentType
from django.db import models
from guardian.models import GroupObjectPermission, UserObjectPermission
from guardian.shortcuts import assign_perm, get_perms, remove_perm

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


def role_grant(*, workflow: Workflow, user: User, role: str) -> None:
    for perm in PERMS_BY_ROLE[role]:
        assign_perm(perm, user, workflow)
    forget_access(user)


def role_revoke(*, workflow: Workflow, user: User, role: str) -> None:
    for perm in PERMS_BY_ROLE[role]:
        remove_perm(perm, user, workflow)
    forget_access(user)


def _roles(perms: set[str]) -> set[str]:
    return {role for role, needed in PERMS_BY_ROLE.items() if set(needed) <= perms}


def roles_of(*, user: User, workflow: Workflow) -> set[str]:
    return _roles({f"ladder.{p}" for p in get_perms(user, workflow)})


def people_with_roles(*, workflow: Workflow) -> dict[User, set[str]]:
    """Everyone holding a role on the workflow, from one query (no query per person)."""
    ct = ContentType.objects.get_for_model(Workflow)
    perms: dict[User, set[str]] = {}
    rows = UserObjectPermission.objects.filter(
        content_type=ct, object_pk=str(workflow.pk)
    ).select_related("user", "permission")
    for row in rows:
        perms.setdefault(row.user, set()).add(f"ladder.{row.permission.codename}")
    held = {user: _roles(p) for user, p in perms.items()}
    return {user: roles for user, roles in held.items() if roles}


@dataclass(frozen=True)
class Access:
    """Which workflows a person holds each permission on: one lookup per request."""

    review: frozenset[int]
    own: frozenset[int]
    comply: frozenset[int]

    @property
    def view(self) -> frozenset[int]:
        return self.review | self.own | self.comply


_CODENAMES = {"review_workflow": "review", "own_workflow": "own", "comply_workflow": "comply"}


def access_for(user) -> Access:
    """Memoised on the user object, which lives for one request (or one test step)."""
    cached = getattr(user, "_ladder_access", None)
    if cached is not None:
        return cached
    found: dict[str, set[int]] = {"review": set(), "own": set(), "comply": set()}
    if user.is_authenticated and user.is_active:
        if user.is_superuser:
            every = set(Workflow.objects.values_list("id", flat=True))
            found = {"review": every, "own": every, "comply": every}
        else:
            ct = ContentType.objects.get_for_model(Workflow)
            rows = list(
                UserObjectPermission.objects.filter(user=user, content_type=ct).values_list(
                    "object_pk", "permission__codename"
                )
            ) + list(
                GroupObjectPermission.objects.filter(group__user=user, content_type=ct).values_list(
                    "object_pk", "permission__codename"
                )
            )
            for object_pk, codename in rows:
                if codename in _CODENAMES:
                    found[_CODENAMES[codename]].add(int(object_pk))
    access = Access(**{k: frozenset(v) for k, v in found.items()})
    user._ladder_access = access
    return access


def forget_access(user) -> None:
    user.__dict__.pop("_ladder_access", None)
