"""Settings of the webhooks area (owned by its engineer)."""
from .env import env  # noqa: F401

WEBHOOKS_BEAT_SCHEDULE: dict = {}

WEBHOOK_ALLOW_HTTP_HOSTS = env.list("WEBHOOK_ALLOW_HTTP_HOSTS", default=[])
