"""Telling a workflow's people what happened to it: every demotion, stop and resume,
drift alert and failed rollback drill becomes an Alert (shown on the workflow page) and
an email through Django's email backend (console by default, SMTP by setting; README
"Configuration").

Owners are told everything; compliance is told of stops and resumes, and of demotions
(a demotion changes what runs unattended). The mail goes after the transaction that
caused it commits, and a mail server that is down never undoes or fails that change: the
alert stays on the page and the failure is logged.
"""

import logging

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.mail import send_mail
from django.db import transaction
from guardian.shortcuts import get_users_with_perms

from ladder.models import Alert, Workflow

log = logging.getLogger(__name__)

OWN = "own_workflow"
COMPLY = "comply_workflow"
# Kinds compliance is told of besides the owners.
_COMPLIANCE_KINDS = frozenset({Alert.Kind.STOP, Alert.Kind.RESUME, Alert.Kind.DEMOTION})


def recipients(*, workflow: Workflow, kind: str) -> list:
    """Active people to tell: the workflow's owner and owners by role; compliance too for
    the kinds above. Superusers are not mailed for every workflow they could see."""
    codenames = [OWN, COMPLY] if kind in _COMPLIANCE_KINDS else [OWN]
    people = {
        user.pk: user
        for user in get_users_with_perms(
            workflow, only_with_perms_in=codenames, with_superusers=False, with_group_users=True
        )
        if user.is_active
    }
    if workflow.owner_id and workflow.owner_id not in people:
        owner = get_user_model().objects.filter(pk=workflow.owner_id, is_active=True).first()
        if owner is not None:
            people[owner.pk] = owner
    return sorted(people.values(), key=lambda u: u.get_username())


def notify(
    *, workflow: Workflow, kind: str, subject: str, body: str, evidence: dict | None = None
) -> Alert:
    """Record an alert and mail it once the surrounding transaction commits."""
    people = recipients(workflow=workflow, kind=kind)
    alert = Alert.objects.create(
        workflow=workflow,
        kind=kind,
        subject=subject[:200],
        body=body,
        evidence=evidence or {},
        recipients=[{"username": p.get_username(), "email": p.email} for p in people],
    )
    addresses = [p.email for p in people if p.email]
    if addresses:
        transaction.on_commit(lambda: _mail(workflow.slug, subject, body, addresses))
    return alert


def _mail(slug: str, subject: str, body: str, addresses: list[str]) -> None:
    link = f"{settings.LADDER_BASE_URL.rstrip('/')}/workflows/{slug}/"
    try:
        send_mail(
            subject=f"[{slug}] {subject}",
            message=f"{body}\n\n{link}\n",
            from_email=settings.DEFAULT_FROM_EMAIL,
            recipient_list=addresses,
        )
    except Exception:  # the change stands; the alert is on the page
        log.exception("could not mail the alert %r about %s", subject, slug)
