"""Roles per workflow, held as django-guardian object permissions on the Workflow.

Every change goes through `role_grant` / `role_revoke`, which record it (RoleChange) and
refuse a grant to oneself: whoever decides runs of a workflow was put there by someone else.
"""

from dataclasses import dataclass

from django.contrib.auth.models import User
from django.contrib.contenttypes.models import ContentType
from django.db import transaction
from django.db.models import QuerySet
from guardian.models import GroupObjectPermission, UserObjectPermission
from guardian.shortcuts import assign_perm, get_perms, remove_perm

from approvals.models import Role, RoleChange
from ladder.errors import BadRequest, Forbidden
from ladder.models import Workflow

REVIEW = "ladder.review_workflow"
OWN = "ladder.own_workflow"
COMPLY = "ladder.comply_workflow"

PERMS_BY_ROLE: dict[str, tuple[str, ...]] = {
    Role.REVIEWER: (REVIEW,),
    Role.OWNER: (OWN,),
    Role.COMPLIANCE: (COMPLY,),
    Role.ADMIN: (REVIEW, OWN, COMPLY),
}


def _authorise(*, workflow: Workflow, user: User, role: str, by: User | None, grant: bool):
    if role not in PERMS_BY_ROLE:
        raise BadRequest(f"{role!r} is not a role", code="unknown_role")
    if by is None:  # the system: seed_demo, management commands
        return
    if grant and by.pk == user.pk:
        raise Forbidden("Nobody may grant a role to themselves.", code="self_grant")
    if role == Role.ADMIN and not by.is_superuser:
        raise Forbidden("Only an admin can grant or revoke the admin role.", code="admin_only")
    if workflow.pk not in access_for(by).own:
        raise Forbidden("Only an owner of the workflow can change its roles.", code="not_owner")


def _held(*, workflow: Workflow, user: User) -> set[str]:
    """The permissions granted to the person directly (not via a group or superuser status):
    exactly the rows a grant adds and a revoke removes."""
    ct = ContentType.objects.get_for_model(Workflow)
    codenames = UserObjectPermission.objects.filter(
        user=user, content_type=ct, object_pk=str(workflow.pk)
    ).values_list("permission__codename", flat=True)
    return {f"ladder.{codename}" for codename in codenames}


def _lock(workflow: Workflow) -> None:
    # Serialises role changes per workflow so the record and the permissions agree when two
    # owners act at once. NO KEY UPDATE does not block the gateway's run inserts, whose
    # foreign key takes KEY SHARE on the same row.
    list(Workflow.objects.select_for_update(no_key=True).filter(pk=workflow.pk).values("pk"))


@transaction.atomic
def role_grant(*, workflow: Workflow, user: User, role: str, by: User | None) -> bool:
    """Give `user` the role; `by` is who grants it (None: the system). Recorded.

    Refuses a grant to oneself, the admin role from anyone but a superuser, and anyone who
    does not own the workflow. Returns False (and records nothing) if the role was held.
    """
    _authorise(workflow=workflow, user=user, role=role, by=by, grant=True)
    _lock(workflow)
    held = _held(workflow=workflow, user=user)
    missing = [perm for perm in PERMS_BY_ROLE[role] if perm not in held]
    for perm in missing:
        assign_perm(perm, user, workflow)
    forget_access(user)
    if not missing:
        return False
    RoleChange.objects.create(
        workflow=workflow, person=user, role=role, change=RoleChange.Change.GRANT, by=by
    )
    return True


@transaction.atomic
def role_revoke(*, workflow: Workflow, user: User, role: str, by: User | None) -> bool:
    """Take the role from `user`; `by` is who revokes it (None: the system). Recorded.

    Anyone may give up their own role. Returns False (and records nothing) if `user` held
    none of the role's permissions.
    """
    _authorise(workflow=workflow, user=user, role=role, by=by, grant=False)
    _lock(workflow)
    held = _held(workflow=workflow, user=user)
    present = [perm for perm in PERMS_BY_ROLE[role] if perm in held]
    for perm in present:
        remove_perm(perm, user, workflow)
    forget_access(user)
    if not present:
        return False
    RoleChange.objects.create(
        workflow=workflow, person=user, role=role, change=RoleChange.Change.REVOKE, by=by
    )
    return True


def role_changes(*, workflow: Workflow, limit: int = 50) -> QuerySet[RoleChange]:
    """The workflow's latest role changes, newest first, with both people in one query."""
    return RoleChange.objects.filter(workflow=workflow).select_related("person", "by")[:limit]


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
