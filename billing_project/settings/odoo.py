"""Settings of the odoo area (owned by its engineer)."""
from datetime import timedelta

from .env import env  # noqa: F401

ODOO_URL = env.str("ODOO_URL", default="")
ODOO_DB = env.str("ODOO_DB", default="")
ODOO_USER = env.str("ODOO_USER", default="")
ODOO_API_KEY = env.str("ODOO_API_KEY", default="")
# "jsonrpc" (odoorpc over /jsonrpc, Odoo 17-21) or "json2" (Odoo 19+ /json/2, required from Odoo 22).
# Where customers reach Odoo's portal (invoice PDFs and payment pages, /my): ODOO_URL unless the portal
# is served under another public address.
ODOO_PORTAL_URL = env.str("ODOO_PORTAL_URL", default="")
ODOO_TRANSPORT = env.str("ODOO_TRANSPORT", default="jsonrpc")
# Per RPC (urllib socket timeout). Odoo itself kills requests after limit_time_real (120 s).
ODOO_TIMEOUT_SECONDS = env.float("ODOO_TIMEOUT_SECONDS", default=30.0)  # ok-float: seconds
# Subscriptions per push batch: one search_read + one multi-create per model and batch.
ODOO_PUSH_BATCH_SIZE = env.int("ODOO_PUSH_BATCH_SIZE", default=100)
ODOO_PULL_PAGE_SIZE = env.int("ODOO_PULL_PAGE_SIZE", default=200)
# Backoff of a failed object: base * 2**(attempts-1), capped, +10 % jitter.
ODOO_RETRY_BASE_SECONDS = env.int("ODOO_RETRY_BASE_SECONDS", default=30)
ODOO_RETRY_MAX_SECONDS = env.int("ODOO_RETRY_MAX_SECONDS", default=3600)
# Business errors (ValidationError, ...) stop being retried after this many attempts (admin "resync").
ODOO_MAX_ATTEMPTS_ON_REMOTE_ERROR = env.int("ODOO_MAX_ATTEMPTS_ON_REMOTE_ERROR", default=5)
# The default billing calendar (an IANA name): a subscription whose customer has no Lago
# ``timezone`` counts its windows (local midnights) and proration days in it, and its Odoo
# order dates (start_date, next_invoice_date) are dates in it. Snapshotted per subscription.
BILLING_TIMEZONE = env.str("BILLING_TIMEZONE", default="UTC")
ODOO_SYNC_INTERVAL_SECONDS = env.int("ODOO_SYNC_INTERVAL_SECONDS", default=60)
# A push cycle stops taking chunks of changed subscriptions after this long (the chunk under way
# finishes); the rest waits for the next cycle. Below the interval, so cycles never pile up.
ODOO_PUSH_CYCLE_BUDGET_SECONDS = env.float(  # ok-float: seconds
    "ODOO_PUSH_CYCLE_BUDGET_SECONDS", default=max(1.0, ODOO_SYNC_INTERVAL_SECONDS * 0.75))  # ok-float: seconds
# The safety net of the change-driven push: every subscription goes in the change log this often.
ODOO_FULL_SWEEP_HOURS = env.int("ODOO_FULL_SWEEP_HOURS", default=24)

ODOO_BEAT_SCHEDULE: dict = {
    "odoo-push": {
        "task": "odoo_bridge.tasks.push_to_odoo",
        "schedule": timedelta(seconds=ODOO_SYNC_INTERVAL_SECONDS),
        "options": {"queue": "odoo", "expires": ODOO_SYNC_INTERVAL_SECONDS},
    },
    "odoo-push-full-sweep": {
        "task": "odoo_bridge.tasks.push_full_sweep",
        "schedule": timedelta(hours=ODOO_FULL_SWEEP_HOURS),
        "options": {"queue": "odoo", "expires": 3600},
    },
    "odoo-pull-invoices": {
        "task": "odoo_bridge.tasks.pull_from_odoo",
        "schedule": timedelta(seconds=ODOO_SYNC_INTERVAL_SECONDS),
        "options": {"queue": "odoo", "expires": ODOO_SYNC_INTERVAL_SECONDS},
    },
}
