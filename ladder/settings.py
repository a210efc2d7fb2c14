"""One settings module; every knob comes from the environment (see .env.example)."""

from datetime import timedelta
from pathlib import Path

import dj_database_url
from celery.schedules import crontab
from django.core.exceptions import ImproperlyConfigured
from django.utils.csp import CSP

from ladder.certificates import (
    CertificateError,
    dev_private_key,
    private_key_from_pem,
    private_key_pem,
)
from ladder.env import env_bool, env_float, env_int, env_list, env_str

BASE_DIR = Path(__file__).resolve().parent.parent

DEBUG = env_bool("DEBUG", default=False)

# -- Keys and development mode (security review, finding 7) ------------------------------
# LADDER_DEV_MODE=1 is what `make run` and `make test` set: the embedded development keys,
# plain http, known demo passwords. Anything else is a deployment, and a deployment does
# not start on a key that anyone can read in this file.
LADDER_DEV_MODE = env_bool("LADDER_DEV_MODE", default=False)
_INSECURE_DEV_KEY = "insecure-dev-key-only-for-make-run"
SECRET_KEY = env_str("SECRET_KEY", _INSECURE_DEV_KEY if LADDER_DEV_MODE else "")
# Pseudonyms are HMAC-SHA256 keyed by this secret: the same person links across runs
# without being readable. Rotating it breaks that linkage, so it is kept apart from SECRET_KEY.
_INSECURE_PSEUDONYM_KEY = "insecure-dev-pseudonym-key"
LADDER_PSEUDONYM_KEY = env_str(
    "LADDER_PSEUDONYM_KEY", _INSECURE_PSEUDONYM_KEY if LADDER_DEV_MODE else ""
)
_MIN_KEY_CHARS = 32
if not LADDER_DEV_MODE:
    _weak = [
        name
        for name, value, dev in (
            ("SECRET_KEY", SECRET_KEY, _INSECURE_DEV_KEY),
            ("LADDER_PSEUDONYM_KEY", LADDER_PSEUDONYM_KEY, _INSECURE_PSEUDONYM_KEY),
        )
        if len(value) < _MIN_KEY_CHARS or value == dev
    ]
    if _weak:
        raise ImproperlyConfigured(
            f"{' and '.join(_weak)} must be set to a random secret of at least "
            f"{_MIN_KEY_CHARS} characters (not the development default). Generate one with "
            "`python -c 'import secrets; print(secrets.token_urlsafe(50))'`. "
            "For a local try-out on the development keys, set LADDER_DEV_MODE=1 "
            "(what `make run` does)."
        )
# Autonomy certificates are signed with this Ed25519 key (PEM, PKCS#8: `openssl genpkey
# -algorithm ed25519`; docs/certificates.md). Its public half is published, so examiners
# verify certificates offline. Development mode derives a fixed key from the embedded
# development secret, which anyone can recompute: it proves nothing.
_certificate_pem = env_str("LADDER_CERTIFICATE_KEY", "")
_dev_certificate_pem = private_key_pem(dev_private_key(_INSECURE_DEV_KEY))
if not _certificate_pem.strip():
    if not LADDER_DEV_MODE:
        raise ImproperlyConfigured(
            "LADDER_CERTIFICATE_KEY must be set to an Ed25519 private key in PEM (generate "
            "one with `openssl genpkey -algorithm ed25519`). For a local try-out on the "
            "development keys, set LADDER_DEV_MODE=1 (what `make run` does)."
        )
    _certificate_pem = _dev_certificate_pem
try:
    _certificate_key = private_key_from_pem(_certificate_pem)
except CertificateError as exc:
    raise ImproperlyConfigured(f"LADDER_CERTIFICATE_KEY is not usable: {exc}") from None
LADDER_CERTIFICATE_KEY = private_key_pem(_certificate_key)
LADDER_CERTIFICATE_DEV_KEY = _dev_certificate_pem == LADDER_CERTIFICATE_KEY
if LADDER_CERTIFICATE_DEV_KEY and not LADDER_DEV_MODE:
    raise ImproperlyConfigured(
        "LADDER_CERTIFICATE_KEY is the development key, which anyone can derive: generate "
        "one with `openssl genpkey -algorithm ed25519`."
    )
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost", "testserver"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "ladder.adminsite.SuperuserAdminConfig",  # django.contrib.admin, superusers only
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_htmx",
    "ninja",
    "guardian",
    "ladder",
    "traces",
    "approvals",
    "examples.refunds",  # the worked example's shop ledger (docs/worked-example.md)
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Serves static/ from the app itself, so `make run` (DEBUG off) and gunicorn need no
    # separate web server for CSS and JS.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    # Security review, findings 9 and 10 (ladder/middleware.py): after WhiteNoise, so
    # static files keep their caching; no-store outermost, so converted errors get it too.
    "ladder.middleware.no_store",
    "ladder.middleware.api_errors_as_json",
    # PostgreSQL unreachable: 503 with Retry-After, never a 500 (ladder/dbfaults.py).
    "ladder.dbfaults.DatabaseUnavailableMiddleware",
    "ladder.middleware.refuse_nul",
    "django.middleware.csp.ContentSecurityPolicyMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
]

ROOT_URLCONF = "ladder.urls"
WSGI_APPLICATION = "ladder.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {
    "default": dj_database_url.parse(
        env_str("DATABASE_URL", f"sqlite:///{BASE_DIR / 'db.sqlite3'}"),
        conn_max_age=env_int("DB_CONN_MAX_AGE", 60),
    )
}
DATABASES["default"]["TEST"] = {"NAME": env_str("TEST_DATABASE_NAME", "test_ladder")}
# Django turns psycopg's prepared statements off unless asked. Its own queries are bound on
# the client and never prepared either way; this lets the gateway's few hand-written
# statements (traces/fastpath.py) be parsed and planned once per connection.
# DB_PREPARED_STATEMENTS=0 behind a connection pooler that cannot keep them.
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql" and env_bool(
    "DB_PREPARED_STATEMENTS", default=True
):
    DATABASES["default"].setdefault("OPTIONS", {})["prepare_threshold"] = 5
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
# PostgreSQL down or restarting (ladder/dbfaults.py): requests answer 503 with this
# Retry-After (seconds). A persistent connection the server hung up on is dropped when
# the next request or task starts (a poll() of its socket, no SELECT 1 per request as
# CONN_HEALTH_CHECKS would cost the gateway's one-statement hot path).
LADDER_DB_RETRY_AFTER_SECONDS = env_int("LADDER_DB_RETRY_AFTER_SECONDS", 1)

AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "guardian.backends.ObjectPermissionBackend",
]
GUARDIAN_RAISE_403 = False
ANONYMOUS_USER_NAME = None
LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/accounts/login/"

REDIS_URL = env_str("REDIS_URL", "")
# The cache holds only reservations ("open by NAME"), a courtesy: with Redis down or hung,
# a call gives up after LADDER_CACHE_TIMEOUT_SECONDS and pages show no reservations; the
# process then leaves the cache alone for LADDER_CACHE_BACKOFF_SECONDS (approvals/services).
LADDER_CACHE_TIMEOUT_SECONDS = env_float("LADDER_CACHE_TIMEOUT_SECONDS", 0.5)
LADDER_CACHE_BACKOFF_SECONDS = env_int("LADDER_CACHE_BACKOFF_SECONDS", 5)
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": env_str("CACHE_KEY_PREFIX", "ladder"),
            "OPTIONS": {
                "socket_connect_timeout": LADDER_CACHE_TIMEOUT_SECONDS,
                "socket_timeout": LADDER_CACHE_TIMEOUT_SECONDS,
            },
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

# Celery: with no broker configured, tasks run eagerly in-process (the `make run` default).
CELERY_BROKER_URL = REDIS_URL or "memory://"
CELERY_RESULT_BACKEND = None
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", default=not REDIS_URL)
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# -- Execution: dispatch, re-dispatch and leases (docs/execution.md) ----------------------
# A publish to a dead or hung Redis gives up after LADDER_BROKER_TIMEOUT_SECONDS (connect,
# then each read or write; one quick retry): the run is already stored `approved` and the
# sweeper dispatches it again, so a request is never held long by the broker.
LADDER_BROKER_TIMEOUT_SECONDS = env_int("LADDER_BROKER_TIMEOUT_SECONDS", 1)
# After a failed publish, a process does not try again for this long (0: always try).
LADDER_BROKER_BACKOFF_SECONDS = env_int("LADDER_BROKER_BACKOFF_SECONDS", 5)
# A worker for `manage.py simulate` runs each task on the simulation's clock (examples/
# refunds/clock.py). Development mode only: a real worker must never move its clock.
LADDER_SIMULATED_CLOCK = env_bool("LADDER_SIMULATED_CLOCK", default=False)
if LADDER_SIMULATED_CLOCK and not LADDER_DEV_MODE:
    raise ImproperlyConfigured("LADDER_SIMULATED_CLOCK needs LADDER_DEV_MODE=1")
if REDIS_URL:
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "socket_connect_timeout": LADDER_BROKER_TIMEOUT_SECONDS,
        "socket_timeout": LADDER_BROKER_TIMEOUT_SECONDS,
    }
# A server-executor run `approved` for LADDER_EXECUTION_GRACE_SECONDS with no worker on it
# is dispatched again; one `executing` whose claim is older than the lease is handed to
# another worker (the task's time limits end a live worker's call well before the lease).
# The sweep runs every LADDER_EXECUTION_SWEEP_SECONDS (beat) and once as each worker starts.
LADDER_EXECUTION_GRACE_SECONDS = env_int("LADDER_EXECUTION_GRACE_SECONDS", 10)
LADDER_EXECUTION_LEASE_SECONDS = env_int("LADDER_EXECUTION_LEASE_SECONDS", 40)
LADDER_EXECUTION_SWEEP_SECONDS = env_int("LADDER_EXECUTION_SWEEP_SECONDS", 15)
LADDER_EXECUTION_SWEEP_BATCH = env_int("LADDER_EXECUTION_SWEEP_BATCH", 200)
# An idempotent executor is re-called after a lost worker at most this many times in all;
# a run still unfinished then is failed for a person to reconcile.
LADDER_EXECUTION_MAX_ATTEMPTS = env_int("LADDER_EXECUTION_MAX_ATTEMPTS", 5)
for _name in ("LADDER_BROKER_TIMEOUT_SECONDS", "LADDER_EXECUTION_SWEEP_SECONDS"):
    if globals()[_name] < 1:
        raise ImproperlyConfigured(f"{_name} must be at least 1")
if LADDER_EXECUTION_LEASE_SECONDS < 4 or LADDER_EXECUTION_MAX_ATTEMPTS < 1:
    raise ImproperlyConfigured(
        "LADDER_EXECUTION_LEASE_SECONDS must be at least 4 and "
        "LADDER_EXECUTION_MAX_ATTEMPTS at least 1"
    )
# A rollback drill counts as "under load" (the L4 -> L5 gate) when the gateway stored at
# least this many runs a second, across all workflows, while the drill ran (docs/drills.md).
LADDER_DRILL_LOAD_MIN_RPS = env_int("LADDER_DRILL_LOAD_MIN_RPS", 5)
if LADDER_DRILL_LOAD_MIN_RPS < 1:
    raise ImproperlyConfigured("LADDER_DRILL_LOAD_MIN_RPS must be at least 1")
# run_gate_idx's included columns are a PostgreSQL speed-up (traces/gates.py); SQLite,
# the embedded default of `make run`, builds the index without them, as Django says.
SILENCED_SYSTEM_CHECKS = ["models.W040"]

# The hour (UTC) of the nightly gate recompute.
LADDER_GATES_HOUR = env_int("LADDER_GATES_HOUR", 2)
if not 0 <= LADDER_GATES_HOUR <= 23:
    raise ImproperlyConfigured("LADDER_GATES_HOUR must be an hour from 0 to 23")

# Alerts (ladder/notify.py) are mailed through Django's email backend: printed to the
# console unless LADDER_EMAIL_HOST names an SMTP server.
LADDER_BASE_URL = env_str("LADDER_BASE_URL", "http://127.0.0.1:8000")
DEFAULT_FROM_EMAIL = env_str("LADDER_EMAIL_FROM", "autonomy-ladder@localhost")
_EMAIL_HOST = env_str("LADDER_EMAIL_HOST", "")
MAILERS = {
    "default": (
        {
            "BACKEND": "django.core.mail.backends.smtp.EmailBackend",
            "OPTIONS": {
                "host": _EMAIL_HOST,
                "port": env_int("LADDER_EMAIL_PORT", 587),
                "username": env_str("LADDER_EMAIL_USER", ""),
                "password": env_str("LADDER_EMAIL_PASSWORD", ""),
                "use_tls": env_bool("LADDER_EMAIL_TLS", default=True),
                "timeout": env_int("LADDER_EMAIL_TIMEOUT_SECONDS", 10),
            },
        }
        if _EMAIL_HOST
        else {"BACKEND": "django.core.mail.backends.console.EmailBackend"}
    )
}

# Celery beat (`celery -A ladder beat`, or a worker with -B). One key per periodic job.
CELERY_BEAT_SCHEDULE = {
    # Waiting runs past their review deadline are denied or escalated (docs/deadlines.md);
    # agents and reviewers also apply a due deadline themselves when they read the run.
    "apply-deadlines": {"task": "traces.tasks.apply_deadlines", "schedule": 30.0},
    # L4/L5 workflows whose autonomy certificate lapsed drop to L3 (docs/certificates.md);
    # the gateway already handles their runs at L3 from the moment it lapses.
    "expire-certificates": {"task": "ladder.tasks.expire_certificates", "schedule": 3600.0},
    "sweep-executions": {
        "task": "traces.tasks.sweep_executions",
        "schedule": LADDER_EXECUTION_SWEEP_SECONDS,
        # Sweeps queued while no worker ran are dropped, not run back to back.
        "options": {"expires": LADDER_EXECUTION_SWEEP_SECONDS},
    },
    # Attention probes kept at each L3 workflow's probe_rate (docs/evals.md).
    "seed-probes": {
        "task": "traces.tasks.seed_probes",
        "schedule": 300.0,
        "options": {"expires": 300.0},
    },
    # Every workflow's gate snapshot, nightly (docs/gates.md); on demand from its page.
    "recompute-gates": {
        "task": "traces.tasks.recompute_gates",
        "schedule": crontab(hour=LADDER_GATES_HOUR, minute=0),
    },
    # Drift checks of every L4/L5 workflow and L5's continuous evals (docs/drift.md), in
    # the same hour, after the gates: two heavy passes over the runs do not overlap.
    "check-drift": {
        "task": "traces.tasks.check_drift",
        "schedule": crontab(hour=LADDER_GATES_HOUR, minute=30),
    },
}

# The gateway refuses bodies over 1 MiB and JSON nested deeper than 64 levels.
LADDER_MAX_BODY_BYTES = env_int("LADDER_MAX_BODY_BYTES", 1024 * 1024)
LADDER_MAX_JSON_DEPTH = env_int("LADDER_MAX_JSON_DEPTH", 64)
DATA_UPLOAD_MAX_MEMORY_SIZE = LADDER_MAX_BODY_BYTES
LADDER_MAX_WAIT_SECONDS = env_int("LADDER_MAX_WAIT_SECONDS", 30)
# -- Security review finding 2: long polls, waits per token, request rates ------------
# A `?wait=` poll is parked by the server (traces/server.py), not held in a thread. Each
# token may keep LADDER_MAX_WAITS_PER_TOKEN polls open at once (split between the server
# processes) and send LADDER_RATE_LIMIT_PER_SECOND requests a second to /api/v1, bursts up
# to LADDER_RATE_LIMIT_BURST, counted in each server process (0 turns a limit off).
# Parked polls re-read their run every LADDER_WAIT_RECHECK_SECONDS even when no
# notification came (PostgreSQL LISTEN/NOTIFY wakes them at once).
LADDER_MAX_WAITS_PER_TOKEN = env_int("LADDER_MAX_WAITS_PER_TOKEN", 10)
# Backtests of one workflow queued or running at once (0: no limit); more is 409
# `backtests_busy` (traces/services/backtests.py).
LADDER_MAX_RUNNING_BACKTESTS = env_int("LADDER_MAX_RUNNING_BACKTESTS", 2)
LADDER_RATE_LIMIT_PER_SECOND = env_int("LADDER_RATE_LIMIT_PER_SECOND", 50)
LADDER_RATE_LIMIT_BURST = env_int("LADDER_RATE_LIMIT_BURST", 100)
LADDER_WAIT_RECHECK_SECONDS = env_int("LADDER_WAIT_RECHECK_SECONDS", 5)
# -- end finding 2 ----------------------------------------------------------------------
# Regions whose national-format phone numbers (no +country prefix) are also redacted.
LADDER_PHONE_REGIONS = env_list("LADDER_PHONE_REGIONS", ["US", "GB", "DE", "FR", "NL", "ES"])
# How long "open by NAME" holds a run for one reviewer.
LADDER_RESERVATION_SECONDS = env_int("LADDER_RESERVATION_SECONDS", 300)

# -- bounds on one run's trace (security review, finding 5) ---------------------------
# What agents may add to one run: events and stored bytes of canonical JSON. A
# submission at the body limit fits, with room for events appended later.
LADDER_MAX_RUN_EVENTS = env_int("LADDER_MAX_RUN_EVENTS", 1000)
LADDER_MAX_RUN_TRACE_BYTES = env_int("LADDER_MAX_RUN_TRACE_BYTES", 2 * 1024 * 1024)
# -- Security review findings 1 and 6: what one agent request may make the redactor do.
# The most distinct personal values (emails, phones, IBANs, cards, IPs, declared fields)
# one request may carry, and the redaction work one request may cost (units of about a
# microsecond, traces/redaction.py; a typical run costs ~100-300). Over either: 422,
# nothing stored.
LADDER_MAX_PERSONAL_VALUES = env_int("LADDER_MAX_PERSONAL_VALUES", 200)
LADDER_REDACTION_BUDGET = env_int("LADDER_REDACTION_BUDGET", 200_000)
for _name in ("LADDER_MAX_PERSONAL_VALUES", "LADDER_REDACTION_BUDGET"):
    if globals()[_name] < 1:
        raise ImproperlyConfigured(f"{_name} must be at least 1")

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
# Unset by default: WhiteNoise serves straight from static/ (finders). Set it and run
# collectstatic for a deployment that serves compressed, hashed files.
STATIC_ROOT = env_str("STATIC_ROOT", "") or None

WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = DEBUG

# Agent text is always escaped; the policy is the second wall: no inline or foreign
# script can run on any page even if an escaping bug slipped through.
SECURE_CSP = {
    "default-src": [CSP.SELF],
    "script-src": [CSP.SELF],
    # No 'unsafe-inline' (security review, finding 10): no page of ours has inline
    # styles, and htmx's indicator <style> is off (templates/base.html, htmx-config).
    "style-src": [CSP.SELF],
    "img-src": [CSP.SELF, "data:"],
    "object-src": [CSP.NONE],
    "base-uri": [CSP.NONE],
    "frame-ancestors": [CSP.NONE],
    "form-action": [CSP.SELF],
}

SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = False  # htmx reads the token from the page, not the cookie
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True

# -- HTTPS (security review, finding 7) ---------------------------------------------------
# A deployment is HTTPS only by default: secure cookies, a redirect from http, and HSTS for
# a year. Development mode keeps plain http on loopback working. Behind a proxy that ends
# TLS, SECURE_PROXY_SSL_HEADER names the header it sets (HTTP_X_FORWARDED_PROTO), and the
# proxy must overwrite that header on every request, or a client could claim https.
_HTTPS = not LADDER_DEV_MODE
SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", default=_HTTPS)
CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", default=_HTTPS)
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", default=_HTTPS)
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 365 * 24 * 3600 if _HTTPS else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=_HTTPS)
# The preload token alone enrols nobody: a domain enters browsers' lists only when its owner
# submits it. SECURE_HSTS_PRELOAD=0 for a domain that must never be submitted.
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", default=_HTTPS)
_proxy_ssl_header = env_list("SECURE_PROXY_SSL_HEADER", [])
if len(_proxy_ssl_header) > 2 or (
    _proxy_ssl_header and not _proxy_ssl_header[0].startswith("HTTP_")
):
    raise ImproperlyConfigured(
        f"SECURE_PROXY_SSL_HEADER={','.join(_proxy_ssl_header)!r}: give the request.META name "
        "of the proxy's header and optionally its https value, e.g. HTTP_X_FORWARDED_PROTO,https"
    )
SECURE_PROXY_SSL_HEADER = (
    (_proxy_ssl_header[0], _proxy_ssl_header[1] if len(_proxy_ssl_header) == 2 else "https")
    if _proxy_ssl_header
    else None
)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "WARNING")},
}

# -- Login (security review, finding 8) ---------------------------------------------------
# django-axes counts failed sign-ins (the login page and /admin/login/ alike) per name and
# per address: either one reaching LADDER_LOGIN_FAILURE_LIMIT within the cool-off refuses
# every sign-in for it, right password or not, until LADDER_LOGIN_COOLOFF_MINUTES pass since
# the last failure. Counts live in the database, so every server process shares them.
INSTALLED_APPS += ["axes"]
MIDDLEWARE += ["axes.middleware.AxesMiddleware"]  # turns a lockout into the 429 page
AUTHENTICATION_BACKENDS = ["axes.backends.AxesStandaloneBackend", *AUTHENTICATION_BACKENDS]
AXES_FAILURE_LIMIT = env_int("LADDER_LOGIN_FAILURE_LIMIT", 5)
_cooloff_minutes = env_int("LADDER_LOGIN_COOLOFF_MINUTES", 15)
AXES_COOLOFF_TIME = timedelta(minutes=_cooloff_minutes)
if AXES_FAILURE_LIMIT < 1 or _cooloff_minutes < 1:
    raise ImproperlyConfigured(
        "LADDER_LOGIN_FAILURE_LIMIT and LADDER_LOGIN_COOLOFF_MINUTES must be at least 1"
    )
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
# A success does not wipe the counts: it would wipe them for the whole address, and anyone
# with an account of their own could then keep guessing someone else's password.
AXES_RESET_ON_SUCCESS = False
# Attempts refused during a lockout are not counted: the lockout ends when announced, and
# a flood of refused attempts writes nothing.
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = False
AXES_LOCKOUT_CALLABLE = "ladder.login.lockout_response"
AXES_CLIENT_IP_CALLABLE = "ladder.login.client_address"
AXES_USERNAME_CALLABLE = "ladder.login.client_username"
# Behind a reverse proxy REMOTE_ADDR is the proxy: name the request.META key of the header
# it sets to the client's address (HTTP_X_REAL_IP), or every client shares one count.
LADDER_CLIENT_IP_HEADER = env_str("LADDER_CLIENT_IP_HEADER", "")
AXES_DISABLE_ACCESS_LOG = True  # no record of every successful sign-in's address

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
