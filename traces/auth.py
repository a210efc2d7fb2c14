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
    token_hash: str = ""
    # True when read from the per-process memo rather than from the database just now:
    # whoever acts on it must re-check it where it writes (POST /runs does, in its INSERT).
    from_memo: bool = False

    @property
    def actor(self) -> str:
        return f"agent:{self.prefix}"


def authenticate(raw: str, *, memo: bool = False) -> AgentAuth:
    """Who is calling. By default read from the database on every request, so a revoked
    token stops at once; `memo=True` (POST /runs only) may answer from memory, because
    that endpoint's INSERT re-checks the token and its scope in the same statement."""
    if not raw.startswith(TOKEN_PREFIX) or len(raw) > 200:
        raise Unauthorized("malformed agent token", code="invalid_token")
    return authenticate_hash(hash_token(raw), memo=memo)


def authenticate_hash(token_hash: str, *, memo: bool = False) -> AgentAuth:
    from traces import fastpath

    if memo and (known := fastpath.TOKENS.get(token_hash)) is not None:
        return known
    rows = fastpath.token_rows(token_hash)
    if not rows:
        fastpath.TOKENS.drop(token_hash)
        raise Unauthorized("unknown or revoked agent token", code="invalid_token")
    auth = AgentAuth(
        token_id=rows[0][0],
        prefix=rows[0][1],
        workflow_ids=frozenset(r[2] for r in rows),
        token_hash=token_hash,
    )
    fastpath.remember_token(auth)
    return auth
