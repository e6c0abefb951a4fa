"""Settings of the usage-event table's partitions and retention (metering.services.partitions)."""
from .env import VAR_DIR, env

# Monthly partitions are created this many months ahead of the current one (PostgreSQL).
EVENTS_PARTITIONS_AHEAD_MONTHS = env.int("EVENTS_PARTITIONS_AHEAD_MONTHS", default=3)
# Retention: a month of events that ended more than this many months ago, all of its
# windows closed, is archived to EVENTS_ARCHIVE_DIR (gzip CSV + manifest) and dropped from
# the database; rated results stay. 0 keeps every event in the database.
EVENTS_RETENTION_MONTHS = env.int("EVENTS_RETENTION_MONTHS", default=0)
EVENTS_ARCHIVE_DIR = env.str("EVENTS_ARCHIVE_DIR", default=str(VAR_DIR / "event-archive"))

EVENTS_BEAT_SCHEDULE: dict = {
    "ensure-event-partitions": {
        "task": "metering.tasks.ensure_event_partitions",
        "schedule": 6 * 3600,
        "options": {"queue": "rating", "expires": 3600},
    },
    "archive-event-partitions": {
        "task": "metering.tasks.archive_event_partitions",
        "schedule": 24 * 3600,
        "options": {"queue": "rating", "expires": 3600},
    },
}
