"""Loaded with ``-p`` before Django is configured: test defaults for the environment.

The suite has two legs:

- the PostgreSQL leg (the default): the real local PostgreSQL and Redis; anything
  already set in the environment wins (CI, or an engineer pointing at another database);
- the SQLite leg (``FUSION_BILLING_TEST_LEG=sqlite``, tests under ``tests/sqlite``): the
  embedded default ``scripts/run`` uses, i.e. no ``DATABASE_URL`` and no ``REDIS_URL``,
  with its SQLite file and file-system broker in a temporary ``VAR_DIR``. The PostgreSQL
  leg runs it in a second pytest process (``tests/test_sqlite_leg.py``).
"""
import os
import tempfile

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
    os.environ.setdefault("SECRET_KEY", "test-only-" + "x" * 40)
    os.environ.setdefault("ALLOWED_HOSTS", "localhost,127.0.0.1,testserver")
    os.environ.setdefault("SESSION_COOKIE_SECURE", "false")
    os.environ.setdefault("CSRF_COOKIE_SECURE", "false")
    # The suite's clients and live servers speak plain HTTP (tests/foundation/
    # test_deploy_checklist.py checks the production defaults in a process of its own).
    os.environ.setdefault("SECURE_SSL_REDIRECT", "false")
os.environ.setdefault("WEBHOOK_ALLOW_HTTP_HOSTS", "127.0.0.1,localhost")
