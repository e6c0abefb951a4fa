"""Settings of the rating area (owned by its engineer)."""
from .database import DATABASES
from .env import env

# How often Celery beat rates every open window (and closes the ones that ended).
RATING_INTERVAL_SECONDS = env.int("RATING_INTERVAL_SECONDS", default=300)
# Late usage: a window closes (freezes) this long after its end; until then events of the
# window are still accepted and rated.
RATING_GRACE_SECONDS = env.int("RATING_GRACE_SECONDS", default=0)
# Subscriptions per transaction: bounds memory and lock hold time.
RATING_CHUNK_SIZE = env.int("RATING_CHUNK_SIZE", default=2000)
# Each beat run is split into this many tasks (slices of the subscription ids) that the
# rating queue's worker processes run in parallel; 1 = one task rates everything. The
# default matches the two worker processes scripts/run starts; the embedded SQLite
# database serializes writers, so there one task does it all.
RATING_SHARDS = env.int(
    "RATING_SHARDS", default=1 if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3" else 2)

RATING_BEAT_SCHEDULE: dict = {
    "rate-open-windows": {
        "task": "metering.tasks.rate_open_windows",
        "schedule": RATING_INTERVAL_SECONDS,
        "options": {"queue": "rating", "expires": RATING_INTERVAL_SECONDS},
    },
}

# The usage-event covering index (INCLUDE value) is a PostgreSQL feature; the embedded
# SQLite mode builds it without the included column and would warn on every command.
SILENCED_SYSTEM_CHECKS = ["models.W040"]
