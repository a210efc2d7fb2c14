"""The policy editor's reads and its one write: preview a document, save it as the next
version (through traces.services.policy.policy_set, the one way a version is saved)."""

import json
from dataclasses import dataclass, field
from typing import Any

from django.contrib.auth.models import User
from django.db import transaction

from approvals.roles import access_for
from ladder.errors import Conflict, Forbidden, Unprocessable
from ladder.models import PolicyVersion, Workflow
from ladder.policies import policy_latest, policy_read_json, policy_validate
from ladder.policy import Policy, audit_text, rule_text
from traces.services.policy import policy_set

# Far above a 1,000-rule document (~250 kB), far below what would tie up a worker.
MAX_DOCUMENT_CHARS = 1_000_000


def rule_rows(policy: Policy) -> list[dict[str, str]]:
    """Each rule as the pages show it: its id, kind, control, note and one sentence."""
    return [
        {
            "id": rule.id,
            "kind": rule.kind,
            "control": rule.control,
            "note": rule.note,
            "sentence": rule_text(rule),
        }
        for rule in policy.rules
    ]


def starter_document(workflow: Workflow) -> dict[str, Any]:
    """What the editor offers when the workflow has no policy yet: a valid document that
    allows the workflow's actions and says nothing else, to be narrowed by the owner."""
    names = list(workflow.action_types.order_by("name").values_list("name", flat=True))
    return {
        "audit_sample_rate": 0.05,
        "rules": [
            {
                "id": "actions",
                "kind": "allow_actions",
                "actions": names,
                "control": "allowed_tools",
            }
        ],
    }


def document_text(document: Any) -> str:
    return json.dumps(document, indent=2, ensure_ascii=False)


@dataclass(frozen=True)
class Preview:
    """A document as the editor shows it before saving: its rules in plain language, or
    every problem that keeps it from being saved ({rule, field, problem})."""

    rules: list[dict[str, str]] = field(default_factory=list)
    audit: str = ""
    problems: list[dict[str, str]] = field(default_factory=list)

    @property
    def valid(self) -> bool:
        return not self.problems


def policy_problems(exc: Unprocessable) -> list[dict[str, str]]:
    """Every problem a refused document (or note) names, as {rule, field, problem}."""
    details = exc.details if isinstance(exc.details, list) else []
    where = "note" if exc.code == "invalid_note" else ""
    return details or [{"rule": "", "field": where, "problem": exc.message}]


def _read(text: str) -> Any:
    if len(text) > MAX_DOCUMENT_CHARS:
        raise Unprocessable(
            "the policy document is too long",
            code="invalid_policy",
            details=[  # type: ignore[arg-type]
                {
                    "rule": "",
                    "field": "",
                    "problem": f"at most {MAX_DOCUMENT_CHARS:,} characters",
                }
            ],
        )
    return policy_read_json(text)


def policy_preview(*, workflow: Workflow, text: str) -> Preview:
    """Validate the editor's text against the workflow's action types; saves nothing."""
    try:
        policy = policy_validate(workflow, _read(text))
    except Unprocessable as exc:
        return Preview(problems=policy_problems(exc))
    return Preview(rules=rule_rows(policy), audit=audit_text(policy.audit_sample_rate))


@transaction.atomic
def policy_edit_save(
    *, workflow: Workflow, text: str, note: str, based_on: int, by: User
) -> PolicyVersion:
    """Save the editor's text as the workflow's next policy version, on behalf of `by`.

    Only an owner (or admin) may. `based_on` is the version the editor was opened on: if
    someone saved another since, nothing is saved (409 `policy_changed`), so nobody
    replaces a change they have not seen. An invalid document is a 422 naming every
    problem, and nothing is saved.
    """
    if workflow.pk not in access_for(by).own:
        raise Forbidden("only an owner of the workflow can change its policy", code="not_owner")
    document = _read(text)
    # Serialises saves of one workflow until commit, so the check below cannot race.
    # NO KEY UPDATE does not block the gateway's run inserts (roles._lock says why).
    list(Workflow.objects.select_for_update(no_key=True).filter(pk=workflow.pk).values("pk"))
    latest = policy_latest(workflow)
    current = latest.number if latest else 0
    if current != based_on:
        who = latest.created_by.get_username() if latest and latest.created_by else "the system"
        raise Conflict(
            f"version {current} was saved by {who} after you opened the editor; "
            "your text is kept in the editor: compare it with the current version, then save again",
            code="policy_changed",
        )
    return policy_set(workflow=workflow, document=document, by=by, note=note)
