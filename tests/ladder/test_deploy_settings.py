"""Outside development mode the app is a deployment: real keys or no start, HTTPS only.

Each case starts Django in a subprocess with its own environment, as a server would; the
suite itself runs in development mode (`make test` sets LADDER_DEV_MODE=1).
"""

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ladder.certificates import dev_private_key, private_key_pem, public_key_pem

REPO = Path(__file__).resolve().parents[2]
OURS = (
    "LADDER_DEV_MODE",
    "SECRET_KEY",
    "LADDER_PSEUDONYM_KEY",
    "LADDER_CERTIFICATE_KEY",
    "DEBUG",
    "SESSION_COOKIE_SECURE",
    "CSRF_COOKIE_SECURE",
    "SECURE_SSL_REDIRECT",
    "SECURE_HSTS_SECONDS",
    "SECURE_HSTS_INCLUDE_SUBDOMAINS",
    "SECURE_HSTS_PRELOAD",
    "SECURE_PROXY_SSL_HEADER",
)


def production_env(**overrides: str | None) -> dict[str, str]:
    """This process's environment as a deployment would have it: real keys, DEBUG off, no
    development mode. An override of None removes the variable."""
    env = {k: v for k, v in os.environ.items() if k not in OURS}
    env.update(
        SECRET_KEY=secrets.token_urlsafe(50),
        LADDER_PSEUDONYM_KEY=secrets.token_urlsafe(50),
        LADDER_CERTIFICATE_KEY=private_key_pem(Ed25519PrivateKey.generate()),
        # Alerts are mailed (docs/breaker.md): a deployment names its SMTP server.
        LADDER_EMAIL_HOST="smtp.example.com",
        DEBUG="0",
    )
    for name, value in overrides.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env


def manage(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_production_start_passes_the_deploy_check_at_warning_level():
    done = manage("check", "--deploy", "--fail-level", "WARNING", env=production_env())
    assert done.returncode == 0, done.stdout + done.stderr
    assert "System check identified no issues" in done.stdout


def test_without_keys_outside_development_mode_the_app_refuses_to_start():
    done = manage("check", env=production_env(SECRET_KEY=None, LADDER_PSEUDONYM_KEY=None))
    assert done.returncode != 0
    message = done.stderr.strip().splitlines()[-1]
    assert message.startswith("django.core.exceptions.ImproperlyConfigured: ")
    assert "SECRET_KEY and LADDER_PSEUDONYM_KEY must be set" in message
    assert "LADDER_DEV_MODE=1" in message  # and says how to try it out locally


@pytest.mark.parametrize(
    ("overrides", "refused"),
    [
        ({"SECRET_KEY": "insecure-dev-key-only-for-make-run"}, "SECRET_KEY"),
        ({"LADDER_PSEUDONYM_KEY": "insecure-dev-pseudonym-key"}, "LADDER_PSEUDONYM_KEY"),
        ({"SECRET_KEY": "change-me"}, "SECRET_KEY"),
        ({"LADDER_PSEUDONYM_KEY": ""}, "LADDER_PSEUDONYM_KEY"),
    ],
    ids=["dev-secret-key", "dev-pseudonym-key", "short-secret-key", "empty-pseudonym-key"],
)
def test_a_development_or_short_key_is_refused_by_name(overrides, refused):
    # The refusal is the settings module's: importing it is starting the app.
    done = subprocess.run(
        [sys.executable, "-c", "import ladder.settings"],
        cwd=REPO,
        env=production_env(**overrides),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    message = done.stderr.strip().splitlines()[-1]
    assert message.startswith(f"django.core.exceptions.ImproperlyConfigured: {refused} must")
    assert " and " not in message.split(" must")[0]  # only the weak one is named


PROBE = """
import json
from django.test import Client
client = Client()
plain = client.get("/accounts/login/")
secure = client.get("/accounts/login/", secure=True)
proxied = client.get("/accounts/login/", headers={"X-Forwarded-Proto": "https"})
print(json.dumps({
    "plain": [plain.status_code, plain.get("Location", "")],
    "hsts": secure.get("Strict-Transport-Security", ""),
    "csrf_cookie_secure": bool(secure.cookies["csrftoken"]["secure"]),
    "proxied": proxied.status_code,
}))
"""


def probe(env: dict[str, str]) -> dict:
    done = manage("shell", "-c", PROBE, env=env)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_a_deployment_is_https_only_by_default():
    seen = probe(production_env())
    assert seen["plain"] == [301, "https://testserver/accounts/login/"]
    assert seen["hsts"] == "max-age=31536000; includeSubDomains; preload"
    assert seen["csrf_cookie_secure"] is True
    assert seen["proxied"] == 301  # no proxy header is trusted unless configured


def test_behind_a_tls_proxy_its_header_is_trusted_only_when_configured():
    seen = probe(production_env(SECURE_PROXY_SSL_HEADER="HTTP_X_FORWARDED_PROTO"))
    assert seen["proxied"] == 200
    assert seen["plain"][0] == 301


def test_development_mode_starts_on_the_development_keys_and_keeps_plain_http_working():
    seen = probe(production_env(LADDER_DEV_MODE="1", SECRET_KEY=None, LADDER_PSEUDONYM_KEY=None))
    assert seen["plain"] == [200, ""]
    assert seen["hsts"] == ""
    assert seen["csrf_cookie_secure"] is False


def test_a_malformed_proxy_header_setting_stops_the_start_with_its_name():
    done = manage("check", env=production_env(SECURE_PROXY_SSL_HEADER="X-Forwarded-Proto"))
    assert done.returncode != 0
    assert "SECURE_PROXY_SSL_HEADER" in done.stderr.strip().splitlines()[-1]


def start(env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", "import ladder.settings"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("key", "refused"),
    [
        (None, "LADDER_CERTIFICATE_KEY must be set to an Ed25519 private key"),
        ("not a key", "LADDER_CERTIFICATE_KEY is not usable: not a PEM private key"),
        (
            private_key_pem(dev_private_key("insecure-dev-key-only-for-make-run")),
            "LADDER_CERTIFICATE_KEY is the development key",
        ),
    ],
    ids=["missing", "malformed", "development-key"],
)
def test_a_deployment_without_a_real_certificate_key_does_not_start(key, refused):
    done = start(production_env(LADDER_CERTIFICATE_KEY=key))
    assert done.returncode != 0
    message = done.stderr.strip().splitlines()[-1]
    assert message.startswith(f"django.core.exceptions.ImproperlyConfigured: {refused}")


def test_a_malformed_certificate_key_stops_development_mode_too():
    done = start(production_env(LADDER_DEV_MODE="1", LADDER_CERTIFICATE_KEY="-----BEGIN nope"))
    assert "LADDER_CERTIFICATE_KEY is not usable" in done.stderr.strip().splitlines()[-1]


def test_a_certificate_key_on_one_line_with_escaped_newlines_is_read():
    key = Ed25519PrivateKey.generate()
    one_line = private_key_pem(key).replace("\n", "\\n")
    done = manage("certificate_public_key", env=production_env(LADDER_CERTIFICATE_KEY=one_line))
    assert done.returncode == 0, done.stderr
    assert done.stdout == public_key_pem(key.public_key())


def test_the_deploy_check_asks_for_an_smtp_server_for_the_alerts():
    done = manage(
        "check", "--deploy", "--fail-level", "WARNING", env=production_env(LADDER_EMAIL_HOST=None)
    )
    assert done.returncode == 1
    assert "mail.E001" in done.stderr and "console.EmailBackend" in done.stderr
