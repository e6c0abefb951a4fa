"""Settings of the migration area (owned by its engineer)."""
from decimal import Decimal

from celery.schedules import crontab

from .env import env  # noqa: F401

# Nightly reconciliation of the NexaCloud dual run (after NexaCloud's own nightly billing).
MIGRATION_BEAT_SCHEDULE: dict = {
    "migration-reconcile-nexacloud-nightly": {
        "task": "migration.tasks.reconcile_nightly",
        "schedule": crontab(hour=3, minute=30),
        "kwargs": {"service_code": "nexacloud"},
    },
}

NEXACLOUD_DSN = env.str("NEXACLOUD_DSN", default="")
STRIPE_API_KEY = env.str("STRIPE_API_KEY", default="")
# Where the stripe library sends requests (tests point it at a local fake).
STRIPE_API_BASE = env.str("STRIPE_API_BASE", default="https://api.stripe.com")
# |fusion - source| at or below this is a match (CAD).
MIGRATION_RECONCILIATION_TOLERANCE = Decimal(env.str("MIGRATION_RECONCILIATION_TOLERANCE", default="0.01"))
# Go-live needs this many most recent closed periods reconciled as "match".
MIGRATION_GO_LIVE_MATCHED_PERIODS = env.int("MIGRATION_GO_LIVE_MATCHED_PERIODS", default=1)
# Dotted path of the object that pushes a subscription to Odoo as a live order (see docs/migration.md).
MIGRATION_LIVE_ORDER_GATEWAY = env.str("MIGRATION_LIVE_ORDER_GATEWAY", default="")
# Run admin-started imports in the request instead of on a Celery worker.
MIGRATION_IMPORT_SYNCHRONOUS = env.bool("MIGRATION_IMPORT_SYNCHRONOUS", default=False)
