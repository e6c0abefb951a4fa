"""Settings of the migration area (owned by its engineer)."""
from .env import env  # noqa: F401

MIGRATION_BEAT_SCHEDULE: dict = {}

NEXACLOUD_DSN = env.str("NEXACLOUD_DSN", default="")
STRIPE_API_KEY = env.str("STRIPE_API_KEY", default="")
