"""The inbound Lago-shaped API."""
import re

from django.core.exceptions import ImproperlyConfigured

from .env import env

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["identity.authentication.ApiKeyAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["identity.authentication.IsService"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "EXCEPTION_HANDLER": "billing_kit.http.api_exception_handler",
    # Per-API-key budgets (billing_kit.throttling); the event fast path applies the same.
    "DEFAULT_THROTTLE_CLASSES": ["billing_kit.throttling.ApiKeyRateThrottle"],
    "UNAUTHENTICATED_USER": None,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Fusion Billing API",
    "DESCRIPTION": "Lago-compatible metering and billing API backed by Odoo.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "SCHEMA_PATH_PREFIX": "/api/v1",
    "SECURITY": [{"bearerAuth": []}],
    # Every operation documents the answers the request guards and the limiter give.
    "POSTPROCESSING_HOOKS": ["drf_spectacular.hooks.postprocess_schema_enums",
                             "billing_kit.docs.document_common_errors", "billing_kit.docs.document_examples"],
    "APPEND_COMPONENTS": {"securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer"}}},
}

# Bodies larger than this are refused with 413 before they are parsed.
DATA_UPLOAD_MAX_MEMORY_SIZE = env.int("API_MAX_BODY_BYTES", default=1024 * 1024)
API_MAX_BODY_BYTES = DATA_UPLOAD_MAX_MEMORY_SIZE
API_PAGE_SIZE_DEFAULT = 100
API_PAGE_SIZE_MAX = 1000
# Don't write last_used_at more often than this per key (it would cost a write per request).
API_KEY_LAST_USED_RESOLUTION_SECONDS = 60
# Idempotency-Key records are kept at least this long (then purged by purge_idempotency_keys).
IDEMPOTENCY_KEY_TTL_HOURS = env.int("IDEMPOTENCY_KEY_TTL_HOURS", default=24)
# A key whose request has been "in flight" longer than this is considered abandoned.
IDEMPOTENCY_LOCK_TIMEOUT_SECONDS = env.int("IDEMPOTENCY_LOCK_TIMEOUT_SECONDS", default=60)
# PostgreSQL statement_timeout of the statements an API request (/api/) runs, in ms; a
# statement past it is cancelled and the client gets a 503 ``statement_timeout`` (retry
# later) instead of a worker held up. 0 = no limit. Celery tasks, commands and the admin
# are not limited (billing_kit.statement_timeout).
API_STATEMENT_TIMEOUT_MS = env.int("API_STATEMENT_TIMEOUT_MS", default=5000)
# Lago's Events::CreateBatchService::MAX_LENGTH (LAGO_EVENTS_BATCH_MAX_LENGTH).
EVENTS_BATCH_MAX_LENGTH = env.int("EVENTS_BATCH_MAX_LENGTH", default=100)

API_BEAT_SCHEDULE = {
    "purge-idempotency-keys": {
        "task": "identity.tasks.purge_idempotency_keys",
        "schedule": 3600.0,  # ok-float
    },
    "activate-due-subscriptions": {
        "task": "metering.tasks.activate_due_subscriptions",
        "schedule": 60.0,  # ok-float
    },
}

# Event ingestion remembers a valid API key this long per process (revocation delay).
API_KEY_CACHE_SECONDS = env.int("API_KEY_CACHE_SECONDS", default=5)

# Per-API-key rate limits (billing_kit.throttling): "<count>/<s|min|h|day>" or "off".
# Event ingestion (POST /events, /events/batch) and every other call have separate budgets.
API_THROTTLE_INGEST_RATE = env.str("API_THROTTLE_INGEST_RATE", default="30000/min")
API_THROTTLE_MANAGEMENT_RATE = env.str("API_THROTTLE_MANAGEMENT_RATE", default="3000/min")
# The Django cache that holds the counters (billing_project/settings/cache.py: Redis when
# REDIS_URL is set, else this process's memory).
API_THROTTLE_CACHE = env.str("API_THROTTLE_CACHE", default="default")
for _name, _rate in (("API_THROTTLE_INGEST_RATE", API_THROTTLE_INGEST_RATE),
                     ("API_THROTTLE_MANAGEMENT_RATE", API_THROTTLE_MANAGEMENT_RATE)):
    # A typo must not silently lift the limit: refuse to start.
    if not re.fullmatch(r"\s*(off|none|0|[1-9]\d*/\d*(s|sec|second|m|min|minute|h|hour|d|day))\s*", _rate.lower()):
        raise ImproperlyConfigured(f"{_name}={_rate!r}: expected e.g. 600/min, 50/s, 10000/h or off")
