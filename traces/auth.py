"""Agent tokens: random, shown once, stored as sha256 (high entropy needs no slow hash)."""

import hashlib
import secrets
from dataclasses import dataclass

from ladder.errors import Unauthorized

TOKEN_PREFIX = "lat_"  # noqa: S105 - a public prefix, not a secret


def hash_token(raw: str) -> str:
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


@dataclass(frozen=True)
class AgentAuth:
    token_id: int
    prefix: str
    workflow_ids: frozenset[int]

    @property
    def actor(self) -> str:
        return f"agent:{self.prefix}"


def authenticate(raw: str) -> AgentAuth:
    from traces.fastpath import token_rows

    if not raw.startswith(TOKEN_PREFIX) or len(raw) > 200:
        raise Unauthorized("malformed agent token", code="invalid_token")
    # Looked up on every request (no cache), so a revoked token stops at once.
    rows = token_rows(hash_token(raw))
    if not rows:
        raise Unauthorized("unknown or revoked agent token", code="invalid_token")
    return AgentAuth(
        token_id=rows[0][0], prefix=rows[0][1], workflow_ids=frozenset(r[2] for r in rows)
    )
