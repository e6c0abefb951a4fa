"""Settings of the rating area (owned by its engineer)."""
from .database import DATABASES
from .env import env

# How often Celery beat rates every open window (and closes the ones that ended).
RATING_INTERVAL_SECONDS = env.int("RATING_INTERVAL_SECONDS", default=300)
# Late usage: a window closes (its usage freezes, its arrears fee is written, the next
# window opens) only this long after its end; until then ingest still accepts events stamped
# inside it. Events stamped at or after its end belong to the next window. 0 = at the end.
# A termination (DELETE, ending_at, upgrade) freezes the final window at once. The deployment
# default: a customer's or its service's invoice grace period (days) beats it (docs/rating.md "Grace").
RATING_GRACE_SECONDS = env.int("RATING_GRACE_SECONDS", default=0)
# Subscriptions per transaction: bounds memory and lock hold time.
RATING_CHUNK_SIZE = env.int("RATING_CHUNK_SIZE", default=2000)
# Each beat run is split into this many tasks (slices of the subscription ids) that the
# rating queue's worker processes run in parallel; 1 = one task rates everything. The
# default matches the two worker processes scripts/run starts; the embedded SQLite
# database serializes writers, so there one task does it all.
RATING_SHARDS = env.int(
    "RATING_SHARDS", default=1 if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3" else 2)

# How often beat terminates subscriptions whose ending_at has come and swaps due downgrades.
LIFECYCLE_INTERVAL_SECONDS = env.int("LIFECYCLE_INTERVAL_SECONDS", default=60)
# Days before ending_at when subscription.termination_alert is sent (Lago's variable and default).
SUBSCRIPTION_TERMINATION_ALERT_DAYS = env.list("LAGO_SUBSCRIPTION_TERMINATION_ALERT_SENT_AT_DAYS", cast=int,
                                               default=[15, 45])

# How often beat sends the events.errors webhooks of lenient services (Lago: hourly).
EVENT_ERRORS_INTERVAL_SECONDS = env.int("EVENT_ERRORS_INTERVAL_SECONDS", default=3600)

RATING_BEAT_SCHEDULE: dict = {
    # Wallets whose expiration_at has come are terminated (credits voided); depleted ongoing balances announced.
    "expire-wallets": {
        "task": "wallets.tasks.expire_wallets",
        "schedule": LIFECYCLE_INTERVAL_SECONDS,
        "options": {"queue": "celery", "expires": LIFECYCLE_INTERVAL_SECONDS},
    },
    # Recurring top-ups (Lago's recurring_transaction_rules): interval rules on their due dates (idempotent
    # per rule and due date), threshold rules crossed by new usage.
    "wallet-recurring-top-ups": {
        "task": "wallets.tasks.run_recurring_top_ups",
        "schedule": LIFECYCLE_INTERVAL_SECONDS,
        "options": {"queue": "celery", "expires": LIFECYCLE_INTERVAL_SECONDS},
    },
    "rate-open-windows": {
        "task": "metering.tasks.rate_open_windows",
        "schedule": RATING_INTERVAL_SECONDS,
        "options": {"queue": "rating", "expires": RATING_INTERVAL_SECONDS},
    },
    # Lifecycle at an instant (metering.lifecycle), on the rating queue (route
    # "metering.tasks.*"): both close a final window, which is rating work. A late run
    # still ends the subscription AT ending_at / the window's end, never at the run's time.
    "terminate-ended-subscriptions": {
        "task": "metering.tasks.terminate_ended_subscriptions",
        "schedule": LIFECYCLE_INTERVAL_SECONDS,
        "options": {"queue": "rating", "expires": LIFECYCLE_INTERVAL_SECONDS},
    },
    "end-trials": {
        "task": "metering.tasks.end_trials",
        "schedule": LIFECYCLE_INTERVAL_SECONDS,
        "options": {"queue": "rating", "expires": LIFECYCLE_INTERVAL_SECONDS},
    },
    # Lago's subscription.termination_alert (once a day per subscription; cheap to run often).
    "send-termination-alerts": {
        "task": "metering.tasks.send_termination_alerts",
        "schedule": LIFECYCLE_INTERVAL_SECONDS,
        "options": {"queue": "rating", "expires": LIFECYCLE_INTERVAL_SECONDS},
    },
    # Lago's events.errors of lenient services (metering.services.lenient), batched per run.
    "report-event-errors": {
        "task": "metering.tasks.report_event_errors",
        "schedule": EVENT_ERRORS_INTERVAL_SECONDS,
        "options": {"queue": "rating", "expires": EVENT_ERRORS_INTERVAL_SECONDS},
    },
    "apply-due-downgrades": {
        "task": "metering.tasks.apply_due_downgrades",
        "schedule": LIFECYCLE_INTERVAL_SECONDS,
        "options": {"queue": "rating", "expires": LIFECYCLE_INTERVAL_SECONDS},
    },
}

# The usage-event covering index (INCLUDE value) is a PostgreSQL feature; the embedded
# SQLite mode builds it without the included column and would warn on every command.
SILENCED_SYSTEM_CHECKS = ["models.W040"]
