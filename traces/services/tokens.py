"""Agent tokens: created here, shown once, stored as their sha256 (traces.auth)."""

from django.db import transaction

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
