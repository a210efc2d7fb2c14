"""One settings module; every knob comes from the environment (see .env.example)."""

from pathlib import Path

import dj_database_url
from django.utils.csp import CSP

from ladder.env import env_bool, env_int, env_list, env_str

BASE_DIR = Path(__file__).resolve().parent.parent

DEBUG = env_bool("DEBUG", default=False)
_INSECURE_DEV_KEY = "insecure-dev-key-only-for-make-run"
SECRET_KEY = env_str("SECRET_KEY", _INSECURE_DEV_KEY)
# Pseudonyms are HMAC-SHA256 keyed by this secret: the same person links across runs
# without being readable. Rotating it breaks that linkage, so it is kept apart from SECRET_KEY.
_INSECURE_PSEUDONYM_KEY = "insecure-dev-pseudonym-key"
LADDER_PSEUDONYM_KEY = env_str("LADDER_PSEUDONYM_KEY", _INSECURE_PSEUDONYM_KEY)
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost", "testserver"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
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
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Serves static/ from the app itself, so `make run` (DEBUG off) and gunicorn need no
    # separate web server for CSS and JS.
    "whitenoise.middleware.WhiteNoiseMiddleware",
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
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": env_str("CACHE_KEY_PREFIX", "ladder"),
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
LADDER_RATE_LIMIT_PER_SECOND = env_int("LADDER_RATE_LIMIT_PER_SECOND", 50)
LADDER_RATE_LIMIT_BURST = env_int("LADDER_RATE_LIMIT_BURST", 100)
LADDER_WAIT_RECHECK_SECONDS = env_int("LADDER_WAIT_RECHECK_SECONDS", 5)
# -- end finding 2 ----------------------------------------------------------------------
# Regions whose national-format phone numbers (no +country prefix) are also redacted.
LADDER_PHONE_REGIONS = env_list("LADDER_PHONE_REGIONS", ["US", "GB", "DE", "FR", "NL", "ES"])
# How long "open by NAME" holds a run for one reviewer.
LADDER_RESERVATION_SECONDS = env_int("LADDER_RESERVATION_SECONDS", 300)

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
    "style-src": [CSP.SELF, CSP.UNSAFE_INLINE],  # swagger-ui sets inline styles
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

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "WARNING")},
}
