"""Writes of the ladder itself: a workflow's rung moves, and every move is kept."""

from django.db import transaction

from ladder.errors import Conflict, Unprocessable
from ladder.models import RungChange, Workflow
from ladder.rungs import Rung


@transaction.atomic
def rung_change(
    *,
    workflow: Workflow,
    from_rung: int,
    to_rung: int,
    kind: str,
    reason: str,
    evidence: dict | None = None,
    actor=None,
) -> RungChange:
    """Move `workflow` from `from_rung` to `to_rung` and record the change, forever.

    A guarded UPDATE: it moves the workflow only while it still stands on `from_rung`, so
    of a promotion and a demotion racing, or a double click, exactly one lands and the
    other is told the rung moved under it. The workflow's rules_version is bumped by the
    database trigger, so the gateway's very next run is handled at the new rung.
    """
    if to_rung not in Rung.values:
        raise Unprocessable(f"L{to_rung} is not a rung", code="invalid_rung")
    if kind == RungChange.Kind.PROMOTION and to_rung != from_rung + 1:
        raise Unprocessable("a promotion climbs exactly one rung", code="rung_skip")
    if kind == RungChange.Kind.PROMOTION and to_rung > workflow.max_rung:
        raise Unprocessable(
            f"L{to_rung} is past the workflow's max rung (L{workflow.max_rung})",
            code="past_max_rung",
        )
    if kind == RungChange.Kind.DEMOTION and to_rung >= from_rung:
        raise Unprocessable("a demotion goes down", code="invalid_rung")
    if not reason.strip():
        raise Unprocessable("a rung change needs a reason", code="reason_required")
    moved = Workflow.objects.filter(pk=workflow.pk, rung=from_rung).update(rung=to_rung)
    if moved != 1:
        current = Workflow.objects.values_list("rung", flat=True).get(pk=workflow.pk)
        raise Conflict(f"the workflow is at L{current} now, not L{from_rung}", code="rung_moved")
    workflow.rung = to_rung
    return RungChange.objects.create(
        workflow=workflow,
        kind=kind,
        from_rung=from_rung,
        to_rung=to_rung,
        reason=reason.strip(),
        evidence=evidence or {},
        actor=actor,
    )


def rung_since(*, workflow: Workflow):
    """When the workflow stepped onto its current rung: its newest rung change to that
    rung, or its creation when none is recorded."""
    change = (
        RungChange.objects.filter(workflow=workflow, to_rung=workflow.rung)
        .order_by("-created_at", "-id")
        .values_list("created_at", flat=True)
        .first()
    )
    return change or workflow.created_at


def rung_history(*, workflow: Workflow, people: bool = True) -> list[dict]:
    """Every rung change, newest first (the API's `rung_history`). `people=False` for
    agents: they are told what changed and why, not who decided it."""
    history = [
        {
            "at": change.created_at.isoformat(),
            "kind": change.kind,
            "from_rung": change.from_rung,
            "to_rung": change.to_rung,
            "reason": change.reason,
            "by": change.actor.get_username() if change.actor else None,
        }
        for change in RungChange.objects.filter(workflow=workflow)
        .select_related("actor")
        .order_by("-created_at", "-id")
    ]
    if not people:
        for entry in history:
            del entry["by"]
    return history
