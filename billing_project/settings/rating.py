"""Settings of the rating area (owned by its engineer)."""
from .env import env

# How often Celery beat rates every open window (and closes the ones that ended).
RATING_INTERVAL_SECONDS = env.int("RATING_INTERVAL_SECONDS", default=300)
# Subscriptions per transaction: bounds memory and lock hold time.
RATING_CHUNK_SIZE = env.int("RATING_CHUNK_SIZE", default=2000)

RATING_BEAT_SCHEDULE: dict = {
    "rate-open-windows": {
        "task": "metering.tasks.rate_open_windows",
        "schedule": RATING_INTERVAL_SECONDS,
        "options": {"queue": "rating", "expires": RATING_INTERVAL_SECONDS},
    },
}
