"""`manage.py verify_certificate FILE` works offline: no database is touched (pytest-django
refuses any access in these tests, and one run points the app at no database at all)."""

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from io import StringIO
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.conf import settings
from django.core.management import CommandError, call_command

from ladder import certificates as c

REPO = Path(__file__).resolve().parents[2]
KEY = c.private_key_from_pem(settings.LADDER_CERTIFICATE_KEY)  # this installation's key


def certificate_file(tmp_path, *, key=KEY, issued=None, days=90, rung=4, name="cert.json"):
    issued = issued or datetime.now(UTC).replace(microsecond=0)
    payload = c.certificate_payload(
        serial="0b6a4c1e-8f1d-4e52-9a57-5a0b9c7e2d11",
        workflow={"id": 5, "slug": "shipping-update", "name": "Shipping update"},
        rung=rung,
        policy_version=2,
        evidence_hash="e" * 64,
        approved_by={"id": 3, "name": "compliance"},
        issued_at=issued,
        valid_until=c.valid_until_for(rung=rung, issued_at=issued, valid_days=days),
        key_id=c.key_id(key.public_key()),
        promotion="promotion:4",
    )
    path = tmp_path / name
    document = c.certificate_file(payload=payload, signature=c.certificate_sign(payload, key))
    path.write_text(json.dumps(document, indent=2))
    return path


def verify(*args) -> str:
    out = StringIO()
    call_command("verify_certificate", *map(str, args), stdout=out)
    return out.getvalue()


def test_a_valid_certificate_is_summed_up_in_plain_words(tmp_path):
    out = verify(certificate_file(tmp_path))
    assert out.startswith("Signature valid: autonomy certificate 0b6a4c1e")
    assert "shipping-update (Shipping update)" in out and "rung:           L4" in out
    assert "approved by:    compliance (user id 3)" in out
    assert "as of now:      valid until " in out
    assert f"signed by key:  {c.key_id(KEY.public_key())}" in out


def test_an_expired_certificate_still_verifies_and_says_it_expired(tmp_path):
    path = certificate_file(tmp_path, issued=datetime(2025, 1, 1, tzinfo=UTC))
    assert "as of now:      EXPIRED at 2025-04-01T00:00:00Z" in verify(path)


def test_a_tampered_certificate_fails_with_the_reason(tmp_path):
    path = certificate_file(tmp_path)
    document = json.loads(path.read_text())
    document["certificate"]["valid_until"] = "2099-01-01T00:00:00Z"
    path.write_text(json.dumps(document))
    with pytest.raises(CommandError, match="NOT VALID: the signature does not match"):
        verify(path)


def test_a_certificate_of_another_key_fails_and_a_given_public_key_is_used(tmp_path):
    other = Ed25519PrivateKey.generate()
    path = certificate_file(tmp_path, key=other)
    with pytest.raises(CommandError, match="signed by another key"):
        verify(path)
    pem = tmp_path / "other.pem"
    pem.write_text(c.public_key_pem(other.public_key()))
    assert "Signature valid" in verify(path, "--public-key", pem)


@pytest.mark.parametrize(
    ("content", "reason"),
    [("{not json", "not JSON"), ('{"certificate": 1}', "must hold exactly")],
)
def test_a_malformed_file_fails_with_the_reason(tmp_path, content, reason):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(CommandError, match=reason):
        verify(path)


def test_a_missing_file_or_a_bad_public_key_fails_with_the_reason(tmp_path):
    with pytest.raises(CommandError, match="cannot read the certificate"):
        verify(tmp_path / "missing.json")
    pem = tmp_path / "bad.pem"
    pem.write_text("hello")
    with pytest.raises(CommandError, match="not a PEM public key"):
        verify(certificate_file(tmp_path), "--public-key", pem)


def test_it_runs_with_no_database_reachable_at_all(tmp_path):
    path = certificate_file(tmp_path, issued=datetime.now(UTC) - timedelta(days=1))
    env = {
        **os.environ,
        "LADDER_DEV_MODE": "1",
        "DATABASE_URL": "postgres://nobody@127.0.0.1:1/none",
        "REDIS_URL": "",
    }

    def manage(*args):
        return subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    ok = manage("verify_certificate", str(path))
    assert ok.returncode == 0, ok.stderr
    assert "Signature valid" in ok.stdout
    document = json.loads(path.read_text())
    document["certificate"]["rung"] = 5
    path.write_text(json.dumps(document))
    refused = manage("verify_certificate", str(path))
    assert refused.returncode == 1
    assert "NOT VALID: the signature does not match" in refused.stderr


def test_the_public_key_command_prints_the_published_key():
    out = StringIO()
    call_command("certificate_public_key", stdout=out)
    assert out.getvalue() == c.public_key_pem(KEY.public_key())
    out = StringIO()
    call_command("certificate_public_key", "--key-id", stdout=out)
    assert out.getvalue().strip() == c.key_id(KEY.public_key())
