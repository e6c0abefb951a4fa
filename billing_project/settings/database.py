from .env import VAR_DIR, env

VAR_DIR.mkdir(exist_ok=True)

DATABASES = {
    "default": env.db_url(
        "DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'fusion_billing.sqlite3'}"
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The embedded default shares one file between web, worker and beat.
    DATABASES["default"].setdefault("OPTIONS", {})["timeout"] = 30
else:
    DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("DATABASE_CONN_MAX_AGE", default=60))
    DATABASES["default"].setdefault("CONN_HEALTH_CHECKS", True)
    # Server-side prepared statements for the raw psycopg cursors on hot paths (event
    # ingest, rating); Django's own ORM cursors bind client-side and never prepare.
    # Behind a pooler that cannot keep prepared statements (PgBouncer < 1.21 in
    # transaction mode), set DATABASE_PREPARE_THRESHOLD=off.
    _prepare_threshold = env.str("DATABASE_PREPARE_THRESHOLD", default="5").strip().lower()
    DATABASES["default"].setdefault("OPTIONS", {}).setdefault(
        "prepare_threshold", None if _prepare_threshold in {"off", "none", ""} else int(_prepare_threshold))
