"""The redactors the gateway and the agent endpoints redact with, one per workflow's
personal fields and linkage domain (cached), and the budget of one agent request."""

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from typing import Any

from django.conf import settings

from ladder.errors import Unprocessable
from ladder.models import Workflow
from traces import redaction


@lru_cache(maxsize=256)
def redactor_of(personal_fields: tuple[str, ...], linkage: str) -> redaction.Redactor:
    # One key per linkage domain (Workflow.linkage_group), derived from the master key:
    # a person's pseudonyms link inside the domain and nowhere else.
    return redaction.make_redactor(
        key=redaction.linkage_key(settings.LADDER_PSEUDONYM_KEY, linkage),
        personal_fields=personal_fields,
        phone_regions=tuple(settings.LADDER_PHONE_REGIONS),
    )


def redactor_for(workflow: Workflow) -> redaction.Redactor:
    return redactor_of(tuple(sorted(workflow.personal_fields or ())), workflow.linkage_domain)


@contextmanager
def agent_redaction_budget() -> Iterator[redaction.Budget]:
    """The redaction budget of one agent request (every value it sends counts against
    one budget); a body over it is refused with a 422 and nothing of it is stored."""
    try:
        yield redaction.Budget(
            max_values=settings.LADDER_MAX_PERSONAL_VALUES,
            max_work=settings.LADDER_REDACTION_BUDGET,
        )
    except redaction.RedactionRefused as exc:
        raise Unprocessable(str(exc), code=exc.code) from None


def proposal_pseudonyms(found: dict[str, Any], proposal: dict | None) -> dict[str, Any]:
    """The part of `found` (pseudonym → value sent) that a decision can hand back: the
    pseudonyms in the proposal's params, alternatives and artifact. The rest of the body
    (input, tool calls, output) never comes back in a decision, so its values are not
    echoed: the answer is not an oracle for whatever an agent cares to send."""
    if not found or not proposal:
        return {}
    tokens: set[str] = set()
    _collect_tokens(
        [proposal.get("params"), proposal.get("alternatives"), proposal.get("artifact")],
        tokens,
    )
    return {token: found[token] for token in tokens if token in found}


def _collect_tokens(value: Any, into: set[str]) -> None:
    if isinstance(value, str):
        if "<" in value:
            into.update(m.group(0) for m in redaction.PSEUDONYM_RE.finditer(value))
    elif isinstance(value, dict):
        for k, v in value.items():
            _collect_tokens(k, into)
            _collect_tokens(v, into)
    elif isinstance(value, list):
        for v in value:
            _collect_tokens(v, into)


def fit(text: str, limit: int) -> str:
    """`text`, or when longer than `limit`, its start and the sha256 of all of it."""
    if len(text) <= limit:
        return text
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    return f"{text[: limit - len(digest) - 1]}~{digest}"
