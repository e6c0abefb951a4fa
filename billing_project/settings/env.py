"""The one place that reads the process environment."""
from pathlib import Path

import environ

BASE_DIR = Path(__file__).resolve().parent.parent.parent

env = environ.Env()

# Where the embedded default keeps its SQLite file, file-system broker, development
# secret key and collected static files (the SQLite test leg points it at a temp dir).
VAR_DIR = Path(env.str("VAR_DIR", default=str(BASE_DIR / "var"))).resolve()


def is_embedded() -> bool:
    """Nothing configured: run on the embedded default (SQLite + a serverless broker)."""
    return not env.str("DATABASE_URL", default="")
