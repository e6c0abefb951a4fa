"""Django's cache: Redis when REDIS_URL is set (shared by every process), else memory."""
from .celery import REDIS_URL

CACHES: dict[str, dict]
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            # Keys share the broker's database: keep them apart from Celery's.
            "KEY_PREFIX": "fb-cache",
            "OPTIONS": {"socket_connect_timeout": 2, "socket_timeout": 2},
        },
    }
else:
    # The embedded default has no server to share: each process counts on its own.
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
