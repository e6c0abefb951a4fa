"""The one place that reads the process environment."""
from pathlib import Path

import environ

BASE_DIR = Path(__file__).resolve().parent.parent.parent
VAR_DIR = BASE_DIR / "var"

env = environ.Env()


def is_embedded() -> bool:
    """Nothing configured: run on the embedded default (SQLite + a serverless broker)."""
    return not env.str("DATABASE_URL", default="")
