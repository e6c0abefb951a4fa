from pathlib import Path

from .env import BASE_DIR, VAR_DIR, env, is_embedded

# Fail closed: a configured (non-embedded) deployment runs with DEBUG off unless told otherwise.
DEBUG = env.bool("DJANGO_DEBUG", default=is_embedded())
# Debug pages and error reports mask credentials inside values too (URLs, DSNs), not only
# settings named like secrets.
DEFAULT_EXCEPTION_REPORTER_FILTER = "billing_project.error_reports.CredentialMaskingExceptionReporterFilter"

INSTALLED_APPS = [
    # The admin, as the ops console: its site is console.sites.ConsoleAdminSite.
    "console.apps.FusionAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "django_celery_beat",
    "identity",
    "metering",
    "webhooks",
    "wallets",
    "coupons",
    "odoo_bridge",
    "migration",
    # Last: it composes the apps' admin pages (safe actions, masked secrets, read-only fields).
    "console.apps.ConsoleConfig",
    "axes",
    # The API docs page works offline: Swagger UI and Redoc are served from our static files.
    "drf_spectacular_sidecar",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Serves the admin's and the API docs' static files under gunicorn (after collectstatic).
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "billing_kit.middleware.ApiJsonErrorsMiddleware",
    # API requests run their statements under API_STATEMENT_TIMEOUT_MS (the fast path too).
    "billing_kit.statement_timeout.ApiStatementTimeoutMiddleware",
    # Oversized bodies are refused first (JSON 413), before anything reads them.
    "billing_kit.middleware.ApiBodyLimitMiddleware",
    # Answers POST /api/v1/events[/batch] without the rest of the stack (see its docstring).
    "metering.api.fastpath.EventIngestFastPathMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Idempotency-Key wraps every API write.
    "identity.idempotency.IdempotencyKeyMiddleware",
    # Staff login throttling (django-axes): last, as its documentation asks.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "billing_project.urls"
WSGI_APPLICATION = "billing_project.wsgi.application"
# Lago clients POST to /api/v1/customers: never redirect to a trailing slash.
APPEND_SLASH = False

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

LANGUAGE_CODE = "en-ca"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = Path(env.str("STATIC_ROOT", default=str(VAR_DIR / "static")))
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

FUSION_BILLING_VERSION = "0.1.0"
# Where this code base is published, for /health's Lago-shaped "github_url"; nothing is
# claimed unless it is configured.
FUSION_BILLING_SOURCE_URL = env.str("FUSION_BILLING_SOURCE_URL", default="")

# /ops/health answers a staff session or ``Authorization: Bearer <OPS_HEALTH_TOKEN>``
# (empty: staff only). Its probes (database, broker, workers, beat, Odoo) run at most
# once per OPS_HEALTH_CACHE_SECONDS per process, so polling it costs no outbound call.
OPS_HEALTH_TOKEN = env.str("OPS_HEALTH_TOKEN", default="")
OPS_HEALTH_CACHE_SECONDS = env.int("OPS_HEALTH_CACHE_SECONDS", default=5)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
}
