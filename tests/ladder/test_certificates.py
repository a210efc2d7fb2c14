"""The signed document and its check, as plain functions (ladder/certificates.py)."""

import base64
import json
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ladder import certificates as c

ISSUED = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
KEY = c.dev_private_key("tests")


def signed(key=KEY, **overrides) -> dict:
    fields = {
        "serial": "3f1c2b9e-0000-4000-8000-000000000001",
        "workflow": {"id": 7, "slug": "shipping-update", "name": "Shipping update"},
        "rung": 4,
        "policy_version": 3,
        "evidence_hash": c.evidence_hash({"gates": ["volume", "approval_rate"]}),
        "approved_by": {"id": 12, "name": "compliance"},
        "issued_at": ISSUED,
        "valid_until": c.valid_until_for(rung=4, issued_at=ISSUED, valid_days=90),
        "key_id": c.key_id(key.public_key()),
        "promotion": "promotion:41",
    } | overrides
    payload = c.certificate_payload(**fields)
    return c.certificate_file(payload=payload, signature=c.certificate_sign(payload, key))


def test_a_signed_certificate_verifies_and_says_what_it_certifies():
    verified = c.certificate_verify(json.dumps(signed()), KEY.public_key())
    assert verified.payload["rung"] == 4
    assert verified.payload["workflow"]["slug"] == "shipping-update"
    assert verified.payload["issued_at"] == "2026-03-01T12:00:00Z"
    assert verified.valid_until == datetime(2026, 5, 30, 12, 0, tzinfo=UTC)


def test_the_file_has_exactly_the_documented_shape():
    document = signed()
    assert set(document) == {"certificate", "signature", "key_id", "algorithm"}
    assert document["algorithm"] == "Ed25519"
    assert document["key_id"] == document["certificate"]["key_id"]
    assert len(base64.b64decode(document["signature"])) == 64


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("rung", 5),
        ("policy_version", 4),
        ("evidence_hash", "f" * 64),
        ("approved_by", {"id": 12, "name": "someone else"}),
        ("approved_by", None),
        ("valid_until", "2027-05-30T12:00:00Z"),
        ("issued_at", "2026-03-02T12:00:00Z"),
        ("workflow", {"id": 7, "slug": "support-refund", "name": "Shipping update"}),
        ("serial", "3f1c2b9e-0000-4000-8000-000000000002"),
        ("promotion", ""),
    ],
)
def test_changing_any_field_breaks_the_signature(field, value):
    document = signed()
    document["certificate"][field] = value
    with pytest.raises(c.CertificateError, match="changed after it was signed"):
        c.certificate_verify(document, KEY.public_key())


def test_a_certificate_signed_by_another_key_is_refused_naming_both_keys():
    other = Ed25519PrivateKey.generate()
    with pytest.raises(c.CertificateError, match="signed by another key") as refused:
        c.certificate_verify(signed(key=other), KEY.public_key())
    assert c.key_id(KEY.public_key()) in str(refused.value)


def test_a_key_id_swapped_to_ours_does_not_make_another_keys_signature_valid():
    other = Ed25519PrivateKey.generate()
    document = signed(key=other, key_id=c.key_id(KEY.public_key()))
    with pytest.raises(c.CertificateError, match="changed after it was signed"):
        c.certificate_verify(document, KEY.public_key())


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("not json", "not JSON"),
        ("[1, 2]", "not a JSON object"),
        ('{"certificate": {}}', "must hold exactly"),
        (
            '{"certificate": {"rung": NaN}, "signature": "", "key_id": "", "algorithm": ""}',
            "not JSON",
        ),
    ],
)
def test_a_malformed_file_is_refused_with_the_reason(text, reason):
    with pytest.raises(c.CertificateError, match=reason):
        c.certificate_verify(text, KEY.public_key())


def test_another_algorithm_or_a_garbled_signature_is_refused():
    document = signed()
    document["algorithm"] = "RS256"
    with pytest.raises(c.CertificateError, match="not Ed25519"):
        c.certificate_verify(document, KEY.public_key())
    document = signed()
    document["signature"] = "not base64!"
    with pytest.raises(c.CertificateError, match="64 bytes of base64"):
        c.certificate_verify(document, KEY.public_key())


def test_an_l4_certificate_expires_after_its_days_and_one_below_l4_never():
    verified = c.certificate_verify(signed(), KEY.public_key())
    end = ISSUED + timedelta(days=90)
    assert not verified.expired(end - timedelta(seconds=1))
    assert verified.expired(end)
    below = c.certificate_verify(
        signed(rung=3, valid_until=c.valid_until_for(rung=3, issued_at=ISSUED, valid_days=90)),
        KEY.public_key(),
    )
    assert below.valid_until is None and not below.expired(ISSUED + timedelta(days=10_000))


def test_the_signed_bytes_are_the_canonical_json_anyone_can_rebuild():
    document = signed(workflow={"id": 7, "slug": "s", "name": "Versand: Übersicht"})
    payload = document["certificate"]
    text = c.canonical_json(payload)
    assert text == json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert '"name":"Versand: Übersicht"' in text and ", " not in text
    KEY.public_key().verify(base64.b64decode(document["signature"]), text.encode("utf-8"))


def test_keys_round_trip_through_pem_and_a_one_line_env_value():
    pem = c.private_key_pem(KEY)
    assert c.private_key_from_pem(pem.replace("\n", "\\n")).public_key() == KEY.public_key()
    public = c.public_key_from_pem(c.public_key_pem(KEY.public_key()))
    assert c.key_id(public) == c.key_id(KEY.public_key())
    with pytest.raises(c.CertificateError, match="not a PEM private key"):
        c.private_key_from_pem("-----BEGIN PRIVATE KEY-----\nnope\n-----END PRIVATE KEY-----")


def test_the_development_key_is_the_same_every_time_and_differs_by_seed():
    assert c.key_id(c.dev_private_key("x").public_key()) == c.key_id(
        c.dev_private_key("x").public_key()
    )
    assert c.key_id(c.dev_private_key("x").public_key()) != c.key_id(
        c.dev_private_key("y").public_key()
    )
