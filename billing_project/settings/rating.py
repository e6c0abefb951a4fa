"""Settings of the rating area (owned by its engineer)."""
from .env import env  # noqa: F401

RATING_BEAT_SCHEDULE: dict = {}
