"""Loaded with ``-p`` before Django is configured: test defaults for the environment.

The suite has two legs:

- the PostgreSQL leg (the default): the real local PostgreSQL and Redis; anything
  already set in the environment wins (CI, or an engineer pointing at another database);
- the SQLite leg (``FUSION_BILLING_TEST_LEG=sqlite``, tests under ``tests/sqlite``): the
  embedded default ``scripts/run`` uses, i.e. no ``DATABASE_URL`` and no ``REDIS_URL``,
  with its SQLite file and file-system broker in a temporary ``VAR_DIR``. The PostgreSQL
  leg runs it in a second pytest process (``tests/test_sqlite_leg.py``).

Under pytest-xdist (``scripts/test`` runs the suite in several processes) each worker has
its own test database (pytest-django adds the worker's name to it) and its own Redis
database: the base database's number plus the worker's index, so one worker's Celery
queues, broadcasts, cache and rate limits never reach another's.
"""
import os
import tempfile
from urllib.parse import urlsplit, urlunsplit

SQLITE_LEG = os.environ.get("FUSION_BILLING_TEST_LEG", "postgresql") == "sqlite"

# What a new user running ``scripts/run`` has not configured.
EMBEDDED_DEFAULT_UNSET = (
    "DATABASE_URL", "REDIS_URL", "DJANGO_DEBUG", "SECRET_KEY", "ALLOWED_HOSTS", "SESSION_COOKIE_SECURE",
    "CSRF_COOKIE_SECURE", "SECURE_SSL_REDIRECT", "CELERY_TASK_ALWAYS_EAGER", "ODOO_URL", "ODOO_DB", "ODOO_USER", "ODOO_API_KEY",
    "NEXACLOUD_DSN", "RATING_SHARDS",
)

if SQLITE_LEG:
    for name in EMBEDDED_DEFAULT_UNSET:
        os.environ.pop(name, None)
    if not os.environ.get("VAR_DIR"):
        os.environ["VAR_DIR"] = tempfile.mkdtemp(prefix="fusion-billing-sqlite-leg-")
else:
    os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/fusion_billing")
    os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/1")
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")  # "gw0", "gw1", ... (set before plugins load)
    # Once per worker: a pytest that a worker's test starts inherits both variables already set.
    if (worker.startswith("gw") and worker[2:].isdigit()
            and os.environ.get("FUSION_BILLING_REDIS_SHIFTED_FOR") != worker):
        os.environ["FUSION_BILLING_REDIS_SHIFTED_FOR"] = worker
        parts = urlsplit(os.environ["REDIS_URL"])
        number = int(parts.path.strip("/") or 0) + int(worker[2:])
        if number > 15:  # Redis's default "databases 16"
            raise RuntimeError(f"xdist worker {worker} would need Redis database {number}: "
                               "run fewer workers (-n) or a lower REDIS_URL database")
        os.environ["REDIS_URL"] = urlunsplit(parts._replace(path=f"/{number}"))
    os.environ.setdefault("SECRET_KEY", "test-only-" + "x" * 40)
    os.environ.setdefault("ALLOWED_HOSTS", "localhost,127.0.0.1,testserver")
    os.environ.setdefault("SESSION_COOKIE_SECURE", "false")
    os.environ.setdefault("CSRF_COOKIE_SECURE", "false")
    # The suite's clients and live servers speak plain HTTP (tests/foundation/
    # test_deploy_checklist.py checks the production defaults in a process of its own).
    os.environ.setdefault("SECURE_SSL_REDIRECT", "false")
os.environ.setdefault("WEBHOOK_ALLOW_HTTP_HOSTS", "127.0.0.1,localhost")
