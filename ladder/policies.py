"""A workflow's policy versions: validate, save (a new number each time), read, compare.

The rules themselves and their evaluation are `ladder.policy` (pure); this module is the
part with a database. The newest version of a workflow is its policy: in force at L4/L5,
a draft evaluated in shadow at L2/L3 (docs/policy.md, "Versions").
"""

import difflib
import json
from dataclasses import dataclass
from typing import Any

from django.db import transaction

from ladder.errors import LadderError, Unprocessable
from ladder.models import PolicyVersion, Workflow
from ladder.policy import (
    CompiledPolicy,
    Policy,
    compile_policy,
    parse_policy,
    policy_document,
    policy_text,
)


def workflow_actions(workflow: Workflow) -> dict[str, tuple[str, str]]:
    """The workflow's action types as the policy validator takes them:
    name → (value_param, currency_param)."""
    return {
        a.name: (a.value_param, a.currency_param)
        for a in workflow.action_types.only("name", "value_param", "currency_param")
    }


def policy_validate(workflow: Workflow, document: Any) -> Policy:
    """Parse `document` against the workflow's action types; `Unprocessable`
    (`invalid_policy`, every problem in `details`) when it does not hold."""
    return parse_policy(document, actions=workflow_actions(workflow))


def policy_read_json(text: str | bytes) -> Any:
    """A policy document from JSON text, or a 422 saying where the JSON breaks."""
    try:
        return json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        problem = f"not valid JSON: {exc}"
        raise Unprocessable(
            f"invalid policy: {problem}",
            code="invalid_policy",
            details=[{"rule": "", "field": "", "problem": problem}],  # type: ignore[arg-type]
        ) from exc


def problem_lines(exc: LadderError) -> list[str]:
    """Every problem a refused document names, one line each ("cap.max: must be …"), or
    the error's one message."""
    details = exc.details if isinstance(exc.details, list) else []
    lines = []
    for item in details:
        where = ".".join(part for part in (item.get("rule"), item.get("field")) if part)
        lines.append(f"{where}: {item['problem']}" if where else item["problem"])
    return lines or [exc.message]


def policy_save(*, workflow: Workflow, document: Any, by, note: str = "") -> PolicyVersion:
    """Validate and store a new version of the workflow's policy; nothing is stored when
    any problem is found. Numbers count up per workflow without gaps (the workflow row
    is locked while the number is taken). `by` is the person (None: a system action,
    such as `manage.py policy_set`)."""
    note = " ".join(str(note or "").split())
    if len(note) > 300:
        raise Unprocessable("the note may have at most 300 characters", code="invalid_note")
    policy = policy_validate(workflow, document)
    with transaction.atomic():
        Workflow.objects.select_for_update().filter(pk=workflow.pk).first()
        last = (
            PolicyVersion.objects.filter(workflow=workflow)
            .order_by("-number")
            .values_list("number", flat=True)
            .first()
        )
        return PolicyVersion.objects.create(
            workflow=workflow,
            number=(last or 0) + 1,
            document=policy_document(policy),
            note=note,
            created_by=by,
        )


def policy_latest(workflow: Workflow) -> PolicyVersion | None:
    return PolicyVersion.objects.filter(workflow=workflow).order_by("-number").first()


def version_policy(version: PolicyVersion) -> Policy | None:
    """The version's rules, or None when they no longer fit the workflow (an action
    type they name was removed or lost its value parameter)."""
    try:
        return parse_policy(version.document, actions=workflow_actions(version.workflow))
    except Unprocessable:
        return None


def policy_out(version: PolicyVersion | None, *, author: bool = True) -> dict | None:
    """The API's `policy`: {version, audit_sample_rate, rules, text, ...}. `author=False`
    leaves out who saved it (`created_by`: None), for agents, who are told what was
    decided, never by whom."""
    if version is None:
        return None
    policy = version_policy(version)
    document = version.document
    return {
        "version": version.number,
        "audit_sample_rate": document.get("audit_sample_rate"),
        "rules": document.get("rules", []),
        "text": policy_text(policy) if policy is not None else [],
        "valid": policy is not None,
        "note": version.note,
        "created_at": version.created_at,
        "created_by": version.created_by.get_username() if author and version.created_by else None,
    }


def policy_compile(workflow: Workflow, document: dict) -> CompiledPolicy | None:
    """A stored policy document compiled against the workflow's action types as they are
    now, or None when it no longer fits them (an action type it names is gone)."""
    actions = workflow_actions(workflow)
    try:
        return compile_policy(parse_policy(document, actions=actions), actions=actions)
    except Unprocessable:
        return None


@dataclass(frozen=True)
class PolicyDiff:
    """What changed from one version to another: the plain-language sentences, each
    marked "+" (added), "-" (removed) or " " (kept), and the JSON documents as a unified
    diff ("+", "-", " ", and "@" for the line that starts each hunk)."""

    sentences: list[tuple[str, str]]
    json: list[tuple[str, str]]

    @property
    def added(self) -> int:
        return sum(mark == "+" for mark, _ in self.sentences)

    @property
    def removed(self) -> int:
        return sum(mark == "-" for mark, _ in self.sentences)


def version_sentences(version: PolicyVersion | None) -> list[str]:
    """The version's plain-language sentences ([] when it no longer fits the workflow)."""
    policy = version_policy(version) if version is not None else None
    return policy_text(policy) if policy is not None else []


def version_json(version: PolicyVersion | None) -> str:
    """The document as the pages show and edit it: indented, each rule's keys in reading
    order (id, kind, what it tests, then, control, note). PostgreSQL's jsonb keeps keys in
    an order of its own, so the order is rebuilt from the rules, not read back."""
    if version is None:
        return ""
    policy = version_policy(version)
    if policy is None:
        return json.dumps(version.document, indent=2, ensure_ascii=False, sort_keys=True)
    return json.dumps(policy_document(policy), indent=2, ensure_ascii=False)


def policy_diff(old: PolicyVersion | None, new: PolicyVersion) -> PolicyDiff:
    """Compare two versions (old None: everything in `new` is added). Lines are matched
    exactly (no fuzzy pairing of similar lines), so a 1,000-rule document still diffs in
    linear-ish time."""
    before, after = version_sentences(old), version_sentences(new)
    sentences: list[tuple[str, str]] = []
    matcher = difflib.SequenceMatcher(None, before, after, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            sentences += [(" ", line) for line in before[i1:i2]]
            continue
        sentences += [("-", line) for line in before[i1:i2]]
        sentences += [("+", line) for line in after[j1:j2]]
    old_json = version_json(old).splitlines()
    new_json = version_json(new).splitlines()
    # autojunk off: in a long document, lines such as "    }," are frequent, and
    # treating them as junk pairs the wrong rules with each other.
    matcher = difflib.SequenceMatcher(None, old_json, new_json, autojunk=False)
    lines: list[tuple[str, str]] = []
    for group in matcher.get_grouped_opcodes(3):
        lines.append(("@", f"at line {group[0][3] + 1} of the newer document"))
        for tag, i1, i2, j1, j2 in group:
            if tag == "equal":
                lines += [(" ", line) for line in old_json[i1:i2]]
                continue
            lines += [("-", line) for line in old_json[i1:i2]]
            lines += [("+", line) for line in new_json[j1:j2]]
    return PolicyDiff(sentences=sentences, json=lines)
