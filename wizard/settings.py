"""Settings for Import Wizard: every value comes from the environment (see README).

The defaults make a fresh machine work without any service: SQLite, django-q2's
ORM broker, and the sandbox AWS on loopback.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import dj_database_url
from botocore.config import Config as BotoConfig

BASE_DIR = Path(__file__).resolve().parent.parent


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_list(name: str, default: str) -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


# Where the app keeps its local state (SQLite file, generated secret key).
DATA_DIR = Path(os.environ.get("WIZARD_DATA_DIR", BASE_DIR / "var"))
DATA_DIR.mkdir(parents=True, exist_ok=True)


def _secret_key() -> str:
    """DJANGO_SECRET_KEY, or a key generated once and kept in DATA_DIR (never in code)."""
    if key := os.environ.get("DJANGO_SECRET_KEY"):
        return key
    path = DATA_DIR / "secret_key"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(50))
        path.chmod(0o600)
    return path.read_text().strip()


SECRET_KEY = _secret_key()
DEBUG = env_bool("DJANGO_DEBUG", False)
ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", "127.0.0.1,localhost")
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS", "")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_htmx",
    "django_q",
    "wizard",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
]

ROOT_URLCONF = "wizard.urls"

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
                "wizard.context_processors.sandbox",
            ],
        },
    },
]

WSGI_APPLICATION = "wizard.wsgi.application"

# --- database -------------------------------------------------------------------
# SQLite by default, in WAL mode with a busy timeout and IMMEDIATE transactions so
# that the web process and the worker do not run into "database is locked".
SQLITE_OPTIONS = {
    "transaction_mode": "IMMEDIATE",
    "timeout": 20,
    "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
}
DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL", f"sqlite:///{DATA_DIR / 'db.sqlite3'}"),
        # Keep connections between requests (the progress partial is polled every 2 s).
        conn_max_age=60,
        conn_health_checks=True,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"]["OPTIONS"] = SQLITE_OPTIONS
    # Tests share the database with real worker processes: a file, never :memory:.
    DATABASES["default"]["TEST"] = {"NAME": str(DATA_DIR / "test_db.sqlite3")}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- task queue (django-q2) ----------------------------------------------------------
REDIS_URL = os.environ.get("REDIS_URL", "")
# Dispatch must happen exactly once whatever dies, so a task is delivered again rather
# than lost, and a second delivery is harmless: the request's ClientToken, stored when
# the request was made, makes ImportImage answer a repeated call with the same task,
# and the task row is written once (wizard.dispatch).
# - timeout (Q_TIMEOUT): a task running this long is killed (and counts as a failed
#   attempt). It covers one ImportImage throttled through botocore's 5 retries and
#   their backoff (at most ~31 s, wizard.aws.clients), and one poll with its longest
#   throttled pause (wizard.tasks.MAX_BACKOFF_SECONDS, 60 s).
# - retry (Q_RETRY): a task taken this long ago and not acknowledged (it raised, timed
#   out, or its worker or the whole cluster died, even by SIGKILL) is delivered again.
#   It must be larger than timeout, else a task still running goes to a second worker.
# - ack_failures False: a task that raised (throttled, 5xx, no answer, even after
#   botocore's retries) is not acknowledged, so it comes back after `retry`...
# - max_attempts: ...at most this many times (a killed worker records no attempt);
#   at the last one dispatch fails the request with AWS's message instead of raising.
Q_TIMEOUT = int(os.environ.get("Q_TIMEOUT", "120"))
Q_RETRY = int(os.environ.get("Q_RETRY", "180"))
if Q_RETRY <= Q_TIMEOUT:
    raise ValueError(f"Q_RETRY ({Q_RETRY}) must be larger than Q_TIMEOUT ({Q_TIMEOUT})")
Q_CLUSTER: dict[str, object] = {
    "name": "wizard",
    "workers": int(os.environ.get("Q_WORKERS", "2")),
    "timeout": Q_TIMEOUT,
    "retry": Q_RETRY,
    "max_attempts": 5,
    "ack_failures": False,
    "poll": 0.5,
    "catch_up": False,
    "save_limit": 500,
    "label": "Tasks",
}
# The cache carries django-q2's cluster status (read by /healthz), so it is shared by
# every process: the database by default, Redis at scale.
if REDIS_URL:
    Q_CLUSTER["redis"] = REDIS_URL
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}}
else:
    Q_CLUSTER["orm"] = "default"
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.db.DatabaseCache", "LOCATION": "wizard_cache"}}

# --- AWS ---------------------------------------------------------------------------
# In the sandbox, boto3 talks to the local moto server with throw-away credentials;
# otherwise it uses the standard credential chain against real AWS.
AWS_SANDBOX = env_bool("WIZARD_SANDBOX", True)
SANDBOX_HOST = os.environ.get("SANDBOX_HOST", "127.0.0.1")
SANDBOX_PORT = int(os.environ.get("SANDBOX_PORT", "5000"))
AWS_REGION = os.environ.get("AWS_REGION", os.environ.get("AWS_DEFAULT_REGION", "us-east-1"))
AWS_ENDPOINT_URL = os.environ.get(
    "WIZARD_AWS_ENDPOINT_URL",
    f"http://{SANDBOX_HOST}:{SANDBOX_PORT}" if AWS_SANDBOX else "",
)
IMPORT_BUCKET = os.environ.get("WIZARD_BUCKET", "import-wizard-uploads")
IMPORT_POLL_SECONDS = float(os.environ.get("WIZARD_POLL_SECONDS", "3"))
# A task whose status has not changed for this long is flagged as stalled on its page.
STALL_MINUTES = float(os.environ.get("WIZARD_STALL_MINUTES", "60"))
# Links in emails point here.
WIZARD_BASE_URL = os.environ.get("WIZARD_BASE_URL", f"http://127.0.0.1:{os.environ.get('WEB_PORT', '8000')}")
EMAIL_BACKEND = os.environ.get(
    "DJANGO_EMAIL_BACKEND",
    "django.core.mail.backends.console.EmailBackend" if AWS_SANDBOX else "django.core.mail.backends.smtp.EmailBackend",
)
DEFAULT_FROM_EMAIL = os.environ.get("DJANGO_DEFAULT_FROM_EMAIL", "import-wizard@localhost")
# When off, a submitted request is approved by the system and dispatched at once.
APPROVAL_REQUIRED = env_bool("WIZARD_APPROVAL_REQUIRED", True)
# At most this many import tasks run at once (AWS's quota of concurrent import tasks per account and
# Region, 20 by default); the other approved requests wait their turn (wizard.dispatch_queue).
MAX_ACTIVE_IMPORTS = int(os.environ.get("WIZARD_MAX_ACTIVE_IMPORTS", "20"))

STORAGES = {
    "default": {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": IMPORT_BUCKET,
            "region_name": AWS_REGION,
            "endpoint_url": AWS_ENDPOINT_URL or None,
            "addressing_style": "path",
            "signature_version": "s3v4",
            "file_overwrite": False,
            **({"access_key": "sandbox", "secret_key": "sandbox"} if AWS_SANDBOX else {}),
        },
    },
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
# The audit log's checkpoint (wizard.audit_checkpoint): the chain's head, written after every
# transaction that records events, under audit/ of WIZARD_AUDIT_BUCKET (default: the upload
# bucket, where users cannot write: upload keys are chosen by the server, under
# uploads/<user id>/). head.json is overwritten; short timeouts, as the write follows the
# commit in the request, and a failed write is only logged (the next one catches up).
AUDIT_BUCKET = os.environ.get("WIZARD_AUDIT_BUCKET", IMPORT_BUCKET)
STORAGES["audit"] = {
    "BACKEND": "storages.backends.s3.S3Storage",
    "OPTIONS": {
        **STORAGES["default"]["OPTIONS"],
        "bucket_name": AUDIT_BUCKET,
        "location": "audit",
        "file_overwrite": True,
        "client_config": BotoConfig(
            s3={"addressing_style": "path"},
            signature_version="s3v4",
            connect_timeout=3,
            read_timeout=5,
            retries={"mode": "standard", "total_max_attempts": 2},
        ),
    },
}

# --- auth, i18n, static ----------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "my-imports"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = DATA_DIR / "staticfiles"
STATIC_ROOT.mkdir(exist_ok=True)  # whitenoise serves from finders; an empty root keeps it quiet
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = DEBUG

# Uploaded images go to S3, never to the web process's memory beyond this.
FILE_UPLOAD_MAX_MEMORY_SIZE = 2 * 1024 * 1024
DATA_UPLOAD_MAX_MEMORY_SIZE = 2 * 1024 * 1024

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": os.environ.get("WIZARD_LOG_LEVEL", "INFO")},
    "loggers": {"botocore": {"level": "WARNING"}, "boto3": {"level": "WARNING"}},
}
