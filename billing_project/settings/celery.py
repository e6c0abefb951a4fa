from .env import VAR_DIR, env

REDIS_URL = env.str("REDIS_URL", default="")

CELERY_BROKER_TRANSPORT_OPTIONS: dict[str, int | str]
if REDIS_URL:
    CELERY_BROKER_URL = REDIS_URL
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 3600}
else:
    # Embedded default: a broker that needs no server, shared through files.
    _broker_dir = VAR_DIR / "celery-broker"
    for _folder in ("processed", "control"):
        (_broker_dir / _folder).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_URL = "filesystem://"
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir),
        "data_folder_out": str(_broker_dir),
        "processed_folder": str(_broker_dir / "processed"),
        "control_folder": str(_broker_dir / "control"),
    }

CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=False)
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = "UTC"
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# django-celery-beat's DatabaseScheduler, writing last_run_at often enough for /ops/health.
CELERY_BEAT_SCHEDULER = "billing_project.beat:Scheduler"
CELERY_TASK_DEFAULT_QUEUE = "celery"
CELERY_TASK_ROUTES = {
    # Starting due subscriptions is not rating work: it stays on the default queue.
    "metering.tasks.activate_due_subscriptions": {"queue": "celery"},
    "metering.tasks.*": {"queue": "rating"},
    "webhooks.tasks.*": {"queue": "webhooks"},
    "odoo_bridge.tasks.*": {"queue": "odoo"},
}
CELERY_WORKER_QUEUES = ["celery", "rating", "webhooks", "odoo"]
