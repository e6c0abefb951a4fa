from .env import VAR_DIR, env

VAR_DIR.mkdir(parents=True, exist_ok=True)

# How long a SQLite writer waits for the file's write lock before giving up (seconds).
SQLITE_BUSY_TIMEOUT_SECONDS = env.int("SQLITE_BUSY_TIMEOUT_SECONDS", default=30)

# An empty DATABASE_URL means the embedded default too (as is_embedded() says).
DATABASES = {
    "default": env.db_url_config(
        env.str("DATABASE_URL", default="") or f"sqlite:///{VAR_DIR / 'fusion_billing.sqlite3'}"
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The embedded default shares one file between web (threads), worker and beat.
    # - WAL: readers never block the writer and the writer never blocks readers.
    # - IMMEDIATE: every transaction.atomic() takes the write lock at BEGIN, waiting up to
    #   the busy timeout for it. With SQLite's default (DEFERRED) a transaction that read
    #   first and then writes cannot wait (waiting could deadlock), so SQLite fails it at
    #   once with "database is locked": that was a 500 for most concurrent event posts.
    #   Writers are serialized and wait their turn instead.
    # - synchronous=NORMAL (safe with WAL): a committed transaction survives a crash of
    #   the process; only an OS crash or power loss can lose the last commits.
    DATABASES["default"].setdefault("OPTIONS", {}).update({
        "transaction_mode": "IMMEDIATE",
        "timeout": SQLITE_BUSY_TIMEOUT_SECONDS,
        "init_command": (
            "PRAGMA journal_mode=WAL;"
            "PRAGMA synchronous=NORMAL;"
            f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_SECONDS * 1000};"
        ),
    })
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
