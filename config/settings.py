"""Settings for Import Wizard: every value comes from the environment (see README).

The defaults make a fresh machine work without any service: SQLite, django-q2's
ORM broker, and the sandbox AWS on loopback.
"""

from __future__ import annotations

import os
import secrets
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import dj_database_url
from boto3.s3.transfer import TransferConfig
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
    "csp",
    "axes",
    "wizard",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    # An unchanged progress poll's 304, before the session and auth (it checks both itself).
    "wizard.views.progress_poll.ProgressPollMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    # Last, so that it sees the login view's answer (it replaces it while locked out).
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "config.urls"

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

WSGI_APPLICATION = "config.wsgi.application"

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
    # Django's backend with a writer's wait that ends within ms of the lock's release (wizard.sqlite).
    DATABASES["default"]["ENGINE"] = "wizard.sqlite"
    DATABASES["default"]["OPTIONS"] = SQLITE_OPTIONS
    # Tests share the database with real worker processes: a file, never :memory:.
    DATABASES["default"]["TEST"] = {"NAME": str(DATA_DIR / "test_db.sqlite3")}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- task queue (django-q2) ----------------------------------------------------------
REDIS_URL = os.environ.get("REDIS_URL", "")
# Dispatch must happen exactly once whatever dies, so a task is delivered again rather
# than lost, and a second delivery is harmless: the request's ClientToken, stored when
# the request was made, makes ImportImage answer a repeated call with the same task,
# and the task row is written once (wizard.imports.dispatch).
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
Q_CLUSTER: dict[str, Any] = {
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
# Sessions are read from a cache of their own in front of the database (cached_db): one
# raw lookup per request instead of an ORM query (the progress partial is polled every 2 s by
# every open request page); a miss reads the database's row and fills the cache again.
if REDIS_URL:
    Q_CLUSTER["redis"] = REDIS_URL
    CACHES: dict[str, dict[str, object]] = {
        "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL},
        "sessions": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": "sessions",
        },
    }
else:
    Q_CLUSTER["orm"] = "default"
    CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.db.DatabaseCache", "LOCATION": "wizard_cache"},
        # Its own table, large enough not to cull the sessions of everyone logged in.
        "sessions": {
            "BACKEND": "django.core.cache.backends.db.DatabaseCache",
            "LOCATION": "wizard_session_cache",
            "OPTIONS": {"MAX_ENTRIES": 100_000},
        },
    }
# The audit log's checkpoint is written by a thread of each process after the commit, not in the
# request (wizard.audit.checkpoint.Background); 0 writes it before the response, as tests do.
AUDIT_CHECKPOINT_BACKGROUND = env_bool("WIZARD_AUDIT_CHECKPOINT_BACKGROUND", True)
# In the background, checkpoints at least this far apart (a second's commits share one write).
AUDIT_CHECKPOINT_SECONDS = float(os.environ.get("WIZARD_AUDIT_CHECKPOINT_SECONDS", "1"))
# AWS's answers to the pages' account and KMS questions, kept for a few seconds in each process
# (wizard.aws.recent); dispatch always asks afresh.
CACHES["aws"] = {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "aws-answers"}
AWS_ANSWER_SECONDS = float(os.environ.get("WIZARD_AWS_ANSWER_SECONDS", "30"))
SESSION_ENGINE = "django.contrib.sessions.backends.cached_db"
SESSION_CACHE_ALIAS = "sessions"

# --- AWS ---------------------------------------------------------------------------
# In the sandbox, boto3 talks to the local moto server with throw-away credentials;
# otherwise it uses the standard credential chain against real AWS.
AWS_SANDBOX = env_bool("WIZARD_SANDBOX", True)
# `make run` seeds demo requests in every state (manage.py demo_data): in the sandbox only.
DEMO_DATA = AWS_SANDBOX and env_bool("WIZARD_DEMO_DATA", True)
SANDBOX_HOST = os.environ.get("SANDBOX_HOST", "127.0.0.1")
SANDBOX_PORT = int(os.environ.get("SANDBOX_PORT", "5000"))
AWS_REGION = os.environ.get("AWS_REGION", os.environ.get("AWS_DEFAULT_REGION", "us-east-1"))
AWS_ENDPOINT_URL = os.environ.get(
    "WIZARD_AWS_ENDPOINT_URL",
    f"http://{SANDBOX_HOST}:{SANDBOX_PORT}" if AWS_SANDBOX else "",
)
IMPORT_BUCKET = os.environ.get("WIZARD_BUCKET", "import-wizard-uploads")
IMPORT_POLL_SECONDS = float(os.environ.get("WIZARD_POLL_SECONDS", "3"))
# Each image is inspected in a child process of the worker with a wall-clock and a memory
# (address space) limit, wizard.preflight.inspection; an image that needs more gets an error finding.
# A normal inspection from S3 peaks at about 60 MiB, mostly boto3 (bench/inspect-memory).
# The inspection task's own timeout is these seconds + 30, so they must stay under Q_RETRY - 30.
WIZARD_INSPECT_SECONDS = float(os.environ.get("WIZARD_INSPECT_SECONDS", "30"))
WIZARD_INSPECT_MEMORY_MB = int(os.environ.get("WIZARD_INSPECT_MEMORY_MB", "256"))
# The inspection task's own timeout (the child's limit plus a margin, wizard.tasks) must stay
# under Q_RETRY, else a task still running would be delivered to a second worker.
if WIZARD_INSPECT_SECONDS + 2 > Q_RETRY:
    raise ValueError(f"WIZARD_INSPECT_SECONDS ({WIZARD_INSPECT_SECONDS}) must be under Q_RETRY - 2 ({Q_RETRY - 2})")
# A task whose status has not changed for this long is flagged as stalled on its page.
STALL_MINUTES = float(os.environ.get("WIZARD_STALL_MINUTES", "60"))
# Links in emails point here.
WIZARD_BASE_URL = os.environ.get("WIZARD_BASE_URL", f"http://127.0.0.1:{os.environ.get('WEB_PORT', '8000')}")
EMAIL_BACKEND = os.environ.get(
    "DJANGO_EMAIL_BACKEND",
    "django.core.mail.backends.console.EmailBackend" if AWS_SANDBOX else "django.core.mail.backends.smtp.EmailBackend",
)
DEFAULT_FROM_EMAIL = os.environ.get("DJANGO_DEFAULT_FROM_EMAIL", "import-wizard@localhost")
# The SMTP server (the SMTP backend only); the password comes from the environment, never from code.
EMAIL_HOST = os.environ.get("DJANGO_EMAIL_HOST", "localhost")
EMAIL_PORT = int(os.environ.get("DJANGO_EMAIL_PORT", "25"))
EMAIL_HOST_USER = os.environ.get("DJANGO_EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = os.environ.get("DJANGO_EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env_bool("DJANGO_EMAIL_USE_TLS", False)
# When off, a submitted request is approved by the system and dispatched at once.
APPROVAL_REQUIRED = env_bool("WIZARD_APPROVAL_REQUIRED", True)
# At most this many import tasks run at once (AWS's quota of concurrent import tasks per account and
# Region, 20 by default); the other approved requests wait their turn (wizard.imports.dispatch_queue).
MAX_ACTIVE_IMPORTS = int(os.environ.get("WIZARD_MAX_ACTIVE_IMPORTS", "20"))
# Finishing the AMI (wizard.imports.finishing): delete the uploaded images from S3 once it is done, unless
# the request says otherwise; and how long one worker task waits for a copy to become available
# before it hands the wait to a task of its own.
DELETE_SOURCE_DEFAULT = env_bool("WIZARD_DELETE_SOURCE", False)
FINISH_WAIT_SECONDS = float(os.environ.get("WIZARD_FINISH_WAIT_SECONDS", "20"))

STORAGES: dict[str, dict[str, Any]] = {
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
# The audit log's checkpoint (wizard.audit.checkpoint): the chain's head, written after every
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
        # Two objects of a few hundred bytes: no transfer thread pool per write.
        "transfer_config": TransferConfig(use_threads=False),
        "client_config": BotoConfig(
            s3={"addressing_style": "path"},
            signature_version="s3v4",
            connect_timeout=3,
            read_timeout=5,
            retries={"mode": "standard", "total_max_attempts": 2},
        ),
    },
}
# Batch manifests as they were sent (wizard.batches.batches), under manifests/<owner id>/ of the
# upload bucket: never overwritten, read back only through the batch page's access check.
STORAGES["manifests"] = {
    "BACKEND": "storages.backends.s3.S3Storage",
    "OPTIONS": {**STORAGES["default"]["OPTIONS"], "location": "manifests", "file_overwrite": False},
}

# --- auth, i18n, static ----------------------------------------------------------------
# django-axes first: it refuses a locked-out user name or address before any password is checked.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    # A user's permissions in one query (it logs no one in; ModelBackend, next, does).
    "wizard.permissions.PermissionsBackend",
    "django.contrib.auth.backends.ModelBackend",
]
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

# --- production: HTTPS, the proxy in front, the Content-Security-Policy ----------------------
# WIZARD_HTTPS (on by default outside the sandbox): the site is served over https only, so
# http is redirected, the browser is told to use https (HSTS) and cookies travel on https
# only. The sandbox and `make run` serve plain http://127.0.0.1:8000, so it is off there.
HTTPS = env_bool("WIZARD_HTTPS", not AWS_SANDBOX)
SECURE_SSL_REDIRECT = HTTPS
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]  # the load balancer's health check may come over http
SESSION_COOKIE_SECURE = HTTPS
CSRF_COOKIE_SECURE = HTTPS
SECURE_HSTS_SECONDS = int(os.environ.get("DJANGO_SECURE_HSTS_SECONDS", "31536000" if HTTPS else "0"))
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS", HTTPS)
SECURE_HSTS_PRELOAD = env_bool("DJANGO_SECURE_HSTS_PRELOAD", HTTPS)
# WIZARD_BEHIND_PROXY: gunicorn listens behind one TLS-terminating proxy that sets
# X-Forwarded-Proto (and overwrites any the client sent) and appends the client's address
# to X-Forwarded-For. Never set it when clients reach gunicorn directly: they could then
# claim https, or any address.
BEHIND_PROXY = env_bool("WIZARD_BEHIND_PROXY", False)
if BEHIND_PROXY:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")


def upload_origins(endpoint: str, bucket: str, region: str) -> list[str]:
    """Where the browser PUTs upload parts: the origins of the URLs wizard.aws.multipart presigns."""
    if endpoint:
        parts = urlsplit(endpoint)
        return [f"{parts.scheme}://{parts.netloc}"]
    if "." in bucket:  # not valid in a https host name: path-style URLs
        return ["https://s3.amazonaws.com", f"https://s3.{region}.amazonaws.com"]
    return [f"https://{bucket}.s3.amazonaws.com", f"https://{bucket}.s3.{region}.amazonaws.com"]


UPLOAD_ORIGINS = env_list(
    "WIZARD_UPLOAD_ORIGINS", ",".join(upload_origins(AWS_ENDPOINT_URL, IMPORT_BUCKET, AWS_REGION))
)
# django-csp: only the application's own scripts, styles, images and fonts; XHR to itself and
# to S3 (the upload widget's part PUTs); its CRC32 worker from a static file. No inline script
# or style anywhere (templates/ has none; htmx's indicator style is off, see base.html).
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'none'"],
        # 'wasm-unsafe-eval' lets the upload widget's worker compile its CRC32 WebAssembly
        # (static/vendor/hash-wasm); it allows no eval of scripts. Without it, a pure-JS CRC32.
        "script-src": ["'self'", "'wasm-unsafe-eval'"],
        "style-src": ["'self'"],
        "img-src": ["'self'"],
        "font-src": ["'self'"],
        "connect-src": ["'self'", *UPLOAD_ORIGINS],
        "worker-src": ["'self'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
        "base-uri": ["'none'"],
        "object-src": ["'none'"],
    },
}

# --- login attempts (django-axes) ---------------------------------------------------------
# After WIZARD_LOGIN_FAILURES failed logins for one user name, or from one address, further
# attempts for it are refused for WIZARD_LOGIN_COOLOFF_MINUTES (an attempt during the lock
# starts it again). `python manage.py axes_reset` (or axes_reset_username NAME,
# axes_reset_ip ADDRESS) lifts locks at once. Failures and lockouts are audit events
# (wizard.logins).
AXES_FAILURE_LIMIT = int(os.environ.get("WIZARD_LOGIN_FAILURES", "5"))
AXES_COOLOFF_TIME = timedelta(minutes=float(os.environ.get("WIZARD_LOGIN_COOLOFF_MINUTES", "15")))
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
AXES_LOCKOUT_CALLABLE = "wizard.logins.lockout_response"
# Passwords are never stored or logged by django-axes; the CSRF token neither.
AXES_SENSITIVE_PARAMETERS = ["csrfmiddlewaretoken"]
# The client's address: REMOTE_ADDR, or behind the proxy the last X-Forwarded-For entry
# (the one the proxy itself appended; anything before it the client may have made up).
AXES_IPWARE_META_PRECEDENCE_ORDER = ("HTTP_X_FORWARDED_FOR", "REMOTE_ADDR") if BEHIND_PROXY else ("REMOTE_ADDR",)
AXES_IPWARE_PROXY_ORDER = "right-most"
AXES_VERBOSE = False  # no start-up banner in every manage.py command

# --- logs: one JSON object per line, secrets masked (wizard.logs) ------------------------------
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"json": {"()": "wizard.logs.JsonFormatter"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "json"}},
    "root": {"handlers": ["console"], "level": os.environ.get("WIZARD_LOG_LEVEL", "INFO")},
    "loggers": {"botocore": {"level": "WARNING"}, "boto3": {"level": "WARNING"}},
}
