"""Autonomy certificates: what is signed, how, and how anyone checks it (docs/certificates.md).

After Feng, McDonald & Zhang, "Levels of Autonomy for AI Agents" (2025): a workflow's
rung is a claim an examiner can check without us. Each approved promotion issues a
certificate naming the workflow, the rung, the policy version in force, the sha256 of
the frozen evidence, who approved and until when it holds; it is signed with Ed25519.

Plain functions over plain data, no Django: `manage.py verify_certificate` runs on them
with no database, and settings use them to check the signing key at start.

The signed bytes are the UTF-8 of the certificate object's canonical JSON (keys sorted,
no whitespace, non-ASCII as is): for the strings, integers and nulls a certificate holds
this is RFC 8785's canonical form, so `jq -cjS .certificate` rebuilds them exactly.
"""

import base64
import binascii
import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

ALGORITHM = "Ed25519"
FORMAT = "autonomy-ladder-certificate/1"
# Rungs whose certificates expire: autonomy without a person on each action is a state
# the workflow keeps earning; below L4 a person decides every action anyway.
EXPIRING_FROM_RUNG = 4
FILE_KEYS = frozenset({"certificate", "signature", "key_id", "algorithm"})
PAYLOAD_KEYS = frozenset(
    {
        "format",
        "serial",
        "workflow",
        "rung",
        "policy_version",
        "evidence_hash",
        "approved_by",
        "issued_at",
        "valid_until",
        "key_id",
        "promotion",
    }
)


class CertificateError(ValueError):
    """A key or certificate that cannot be used; the message says why, for a person."""


def canonical_json(value: Any) -> str:
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )


def evidence_hash(evidence: Any) -> str:
    """The sha256 hex of frozen evidence, as a certificate names it: of its canonical
    JSON when it is a JSON value, of the bytes themselves when it is bytes."""
    data = evidence if isinstance(evidence, bytes) else canonical_json(evidence).encode()
    return hashlib.sha256(data).hexdigest()


def is_sha256_hex(value: Any) -> bool:
    return (
        isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdef" for c in value)
    )


# -- keys ---------------------------------------------------------------------------------


def private_key_from_pem(text: str) -> Ed25519PrivateKey:
    """An Ed25519 private key from PEM (PKCS#8, as `openssl genpkey -algorithm ed25519`
    writes it). Environment files often hold a PEM on one line with literal `\\n`."""
    pem = text.strip().replace("\\n", "\n")
    try:
        key = serialization.load_pem_private_key(pem.encode(), password=None)
    except (ValueError, TypeError) as exc:
        raise CertificateError(f"not a PEM private key without a passphrase ({exc})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise CertificateError(f"an Ed25519 key is needed, this is {type(key).__name__}")
    return key


def public_key_from_pem(text: str) -> Ed25519PublicKey:
    try:
        key = serialization.load_pem_public_key(text.strip().encode())
    except (ValueError, TypeError) as exc:
        raise CertificateError(f"not a PEM public key ({exc})") from None
    if not isinstance(key, Ed25519PublicKey):
        raise CertificateError(f"an Ed25519 public key is needed, this is {type(key).__name__}")
    return key


def dev_private_key(seed: str) -> Ed25519PrivateKey:
    """The development key (LADDER_DEV_MODE=1): derived from the embedded development
    secret, so `make run` signs with the same key every time and anyone can forge it."""
    digest = hashlib.sha256(f"autonomy-ladder certificate key:{seed}".encode()).digest()
    return Ed25519PrivateKey.from_private_bytes(digest)


def private_key_pem(key: Ed25519PrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def public_key_pem(key: Ed25519PublicKey) -> str:
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


def key_id(key: Ed25519PublicKey) -> str:
    """The public key's fingerprint: sha256 hex of its DER SubjectPublicKeyInfo, what
    `openssl pkey -pubin -in key.pem -outform DER | sha256sum` prints."""
    der = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(der).hexdigest()


# -- issuing ------------------------------------------------------------------------------


def valid_until_for(*, rung: int, issued_at: datetime, valid_days: int) -> datetime | None:
    """L4/L5: `valid_days` after issue. Below: no expiry (None)."""
    if rung < EXPIRING_FROM_RUNG:
        return None
    return issued_at + timedelta(days=valid_days)


def timestamp(at: datetime | None) -> str | None:
    """A certificate's time: UTC, whole seconds, `2026-11-27T14:45:00Z`."""
    if at is None:
        return None
    return at.astimezone(UTC).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_timestamp(text: Any) -> datetime:
    if not isinstance(text, str):
        raise CertificateError(f"a time must be a string like 2026-01-31T12:00:00Z, not {text!r}")
    try:
        return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except ValueError:
        raise CertificateError(f"{text!r} is not a time like 2026-01-31T12:00:00Z") from None


def certificate_payload(
    *,
    serial: str,
    workflow: dict,
    rung: int,
    policy_version: int | None,
    evidence_hash: str,
    approved_by: dict | None,
    issued_at: datetime,
    valid_until: datetime | None,
    key_id: str,
    promotion: str = "",
) -> dict:
    """The certificate object that is signed. `workflow` is {id, slug, name};
    `approved_by` is {id, name}, or None when the system issued it."""
    return {
        "format": FORMAT,
        "serial": serial,
        "workflow": workflow,
        "rung": rung,
        "policy_version": policy_version,
        "evidence_hash": evidence_hash,
        "approved_by": approved_by,
        "issued_at": timestamp(issued_at),
        "valid_until": timestamp(valid_until),
        "key_id": key_id,
        "promotion": promotion,
    }


def certificate_sign(payload: dict, key: Ed25519PrivateKey) -> str:
    """The base64 Ed25519 signature of the payload's canonical JSON."""
    return base64.b64encode(key.sign(canonical_json(payload).encode())).decode()


def certificate_file(*, payload: dict, signature: str) -> dict:
    """The certificate as a file: `{"certificate", "signature", "key_id", "algorithm"}`."""
    return {
        "certificate": payload,
        "signature": signature,
        "key_id": payload["key_id"],
        "algorithm": ALGORITHM,
    }


# -- verifying ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Verified:
    """A certificate whose signature holds. Expiry is a separate question (`expired`)."""

    payload: dict
    issued_at: datetime
    valid_until: datetime | None

    def expired(self, at: datetime) -> bool:
        return self.valid_until is not None and at >= self.valid_until


def _no_constant(name: str):
    raise ValueError(f"{name} is not JSON")


def certificate_verify(document: Any, public_key: Ed25519PublicKey) -> Verified:
    """Check a certificate file (its text, or the parsed object) against `public_key`.

    Raises CertificateError naming the first thing wrong: not JSON, not the file's
    shape, another algorithm, signed by another key, or a signature that does not match
    the certificate as it stands (any field changed after signing).
    """
    if isinstance(document, (str, bytes)):
        try:
            document = json.loads(document, parse_constant=_no_constant)
        except (ValueError, UnicodeDecodeError) as exc:
            raise CertificateError(f"the file is not JSON ({exc})") from None
    if not isinstance(document, dict):
        raise CertificateError("the file is not a JSON object")
    if set(document) != FILE_KEYS:
        raise CertificateError(
            f"the file must hold exactly {', '.join(sorted(FILE_KEYS))}; "
            f"it holds {', '.join(sorted(map(str, document))) or 'nothing'}"
        )
    if document["algorithm"] != ALGORITHM:
        raise CertificateError(f"algorithm {document['algorithm']!r} is not {ALGORITHM}")
    payload = document["certificate"]
    if not isinstance(payload, dict) or set(payload) != PAYLOAD_KEYS:
        raise CertificateError(
            f"'certificate' must be an object with {', '.join(sorted(PAYLOAD_KEYS))}"
        )
    if payload["format"] != FORMAT:
        raise CertificateError(f"format {payload['format']!r} is not {FORMAT}")
    expected = key_id(public_key)
    if document["key_id"] != payload["key_id"]:
        raise CertificateError("the file's key_id differs from the one inside the certificate")
    if payload["key_id"] != expected:
        raise CertificateError(
            f"signed by another key (key_id {payload['key_id']}); this public key is {expected}"
        )
    signature = document["signature"]
    try:
        raw = base64.b64decode(signature, validate=True) if isinstance(signature, str) else b""
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != 64:
        raise CertificateError("the signature is not 64 bytes of base64")
    try:
        public_key.verify(raw, canonical_json(payload).encode())
    except (InvalidSignature, ValueError):  # ValueError: a NaN or Infinity put in by hand
        raise CertificateError(
            "the signature does not match: the certificate was changed after it was signed"
        ) from None
    issued_at = parse_timestamp(payload["issued_at"])
    until = payload["valid_until"]
    return Verified(
        payload=payload,
        issued_at=issued_at,
        valid_until=None if until is None else parse_timestamp(until),
    )
