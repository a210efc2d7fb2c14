"""Agent tokens: created here, shown once, stored as their sha256 (traces.auth)."""

from django.db import transaction
from django.utils import timezone

from ladder.errors import Unprocessable
from ladder.models import Workflow
from traces.auth import hash_token, new_token
from traces.models import AgentToken


def token_create(*, name: str, workflows: list[Workflow]) -> tuple[AgentToken, str]:
    """Create an agent token scoped to `workflows`; the raw token is returned once."""
    if not workflows:
        raise Unprocessable("a token needs at least one workflow", code="no_workflows")
    raw = new_token()
    with transaction.atomic():
        token = AgentToken.objects.create(name=name, prefix=raw[:12], token_hash=hash_token(raw))
        token.workflows.set(workflows)
    return token, raw


def token_revoke(*, prefix: str) -> AgentToken:
    """Revoke the token that starts with `prefix` (at least the 12 characters every listing
    shows). Every gateway process refuses it from its very next request: the statement
    that stores a run re-checks `revoked_at` (traces/fastpath.py), and every other request
    reads the token's row (traces.auth). Revoking twice is refused, not repeated."""
    prefix = prefix.strip()
    if len(prefix) < 12:
        raise Unprocessable(
            "give at least the first 12 characters of the token (its listed prefix)",
            code="prefix_too_short",
        )
    with transaction.atomic():
        found = list(AgentToken.objects.select_for_update().filter(prefix=prefix[:12]))
        if len(prefix) > 12:  # the whole token, or more of it: match it exactly
            found = [t for t in found if t.token_hash == hash_token(prefix)]
        if not found:
            raise Unprocessable(f"no agent token starts with {prefix[:12]!r}", code="unknown")
        if len(found) > 1:
            raise Unprocessable(
                f"{len(found)} tokens start with {prefix[:12]!r}: give the whole token",
                code="ambiguous",
            )
        token = found[0]
        if token.revoked_at is not None:
            raise Unprocessable(
                f"token {token.prefix}… was already revoked "
                f"at {token.revoked_at:%Y-%m-%d %H:%M} UTC",
                code="already_revoked",
            )
        token.revoked_at = timezone.now()
        token.save(update_fields=["revoked_at"])
    return token
