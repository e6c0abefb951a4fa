"""Settings of the webhooks area (owned by its engineer)."""
from datetime import timedelta

from .env import env

# Hosts that may receive plain http and skip the private-address check (local
# development and tests only), comma-separated: WEBHOOK_ALLOW_HTTP_HOSTS=127.0.0.1,localhost
WEBHOOK_ALLOW_HTTP_HOSTS = env.list("WEBHOOK_ALLOW_HTTP_HOSTS", default=[])
# An https webhook URL must use port 443 unless its host:port is listed here,
# comma-separated: WEBHOOK_ALLOWED_PORTS=hooks.example.com:8443,[2001:db8::1]:9443
# (hosts of WEBHOOK_ALLOW_HTTP_HOSTS may use any port).
WEBHOOK_ALLOWED_PORTS = env.list("WEBHOOK_ALLOWED_PORTS", default=[])
# Dotted path of a resolver ``(host, port) -> [ip, ...]``; empty = the system resolver.
# Tests use ``webhooks.testing.dns.resolve_from_env``.
WEBHOOK_RESOLVER = env.str("WEBHOOK_RESOLVER", default="")

# A receiver answers within this or the attempt fails (and is retried): short, so a slow
# receiver holds a worker's sending thread only briefly.
WEBHOOK_TIMEOUT_SECONDS = env.int("WEBHOOK_TIMEOUT_SECONDS", default=5)
WEBHOOK_MAX_RESPONSE_BYTES = env.int("WEBHOOK_MAX_RESPONSE_BYTES", default=16 * 1024)

# Retry schedule: min(cap, base * factor**(n-1)) ± jitter; dead letter after max attempts.
WEBHOOK_MAX_ATTEMPTS = env.int("WEBHOOK_MAX_ATTEMPTS", default=10)
WEBHOOK_RETRY_BASE_SECONDS = env.int("WEBHOOK_RETRY_BASE_SECONDS", default=5)
WEBHOOK_RETRY_FACTOR = env.int("WEBHOOK_RETRY_FACTOR", default=6)
WEBHOOK_RETRY_CAP_SECONDS = env.int("WEBHOOK_RETRY_CAP_SECONDS", default=10 * 3600)
WEBHOOK_RETRY_JITTER_PERCENT = env.int("WEBHOOK_RETRY_JITTER_PERCENT", default=20)
WEBHOOK_MAX_RETRY_AFTER_SECONDS = env.int("WEBHOOK_MAX_RETRY_AFTER_SECONDS", default=24 * 3600)

# A worker's claim on a delivery; must exceed the timeout. A worker that dies
# mid-delivery delays that delivery by at most this long.
WEBHOOK_CLAIM_LEASE_SECONDS = env.int("WEBHOOK_CLAIM_LEASE_SECONDS", default=WEBHOOK_TIMEOUT_SECONDS + 45)
# After a task is queued for a delivery, the sweeper waits this long before queueing it again.
WEBHOOK_DISPATCH_GRACE_SECONDS = env.int("WEBHOOK_DISPATCH_GRACE_SECONDS", default=60)
WEBHOOK_SWEEP_INTERVAL_SECONDS = env.int("WEBHOOK_SWEEP_INTERVAL_SECONDS", default=5)
WEBHOOK_SWEEP_BATCH = env.int("WEBHOOK_SWEEP_BATCH", default=2000)
# HTTP requests a worker process sends in parallel when it holds several deliveries.
WEBHOOK_SEND_CONCURRENCY = env.int("WEBHOOK_SEND_CONCURRENCY", default=8)

# Fairness: one service's slow or failing endpoints must not delay other services' webhooks.
# Deliveries of one endpoint claimed (being sent) at once, across all workers. Two full
# claim batches: a healthy endpoint's throughput is untouched, a slow one cannot take more.
WEBHOOK_ENDPOINT_MAX_IN_FLIGHT = env.int("WEBHOOK_ENDPOINT_MAX_IN_FLIGHT", default=100)
# A task waits this long for its sends; slower ones finish in the process's thread pool
# and record themselves, so a slow receiver never holds a worker process (at most
# WEBHOOK_MAX_DETACHED_SENDS per process; beyond that a task waits for its own).
WEBHOOK_TASK_WAIT_SECONDS = env.float("WEBHOOK_TASK_WAIT_SECONDS", default=0.5)  # ok-float
WEBHOOK_MAX_DETACHED_SENDS = env.int("WEBHOOK_MAX_DETACHED_SENDS", default=32)
# Circuit breaker: after this many failed attempts in a row the endpoint's circuit opens
# for WEBHOOK_BREAKER_OPEN_SECONDS, doubling with every further failure up to the max (0: no breaker).
WEBHOOK_BREAKER_FAILURES = env.int("WEBHOOK_BREAKER_FAILURES", default=5)
WEBHOOK_BREAKER_OPEN_SECONDS = env.int("WEBHOOK_BREAKER_OPEN_SECONDS", default=30)
WEBHOOK_BREAKER_MAX_OPEN_SECONDS = env.int("WEBHOOK_BREAKER_MAX_OPEN_SECONDS", default=3600)
# Failing without a single success this long disables the endpoint (a
# webhook_endpoint.disabled notice goes to the service's other endpoints).
WEBHOOK_BREAKER_DISABLE_AFTER_HOURS = env.int("WEBHOOK_BREAKER_DISABLE_AFTER_HOURS", default=72)

WEBHOOK_SECRET_ROTATION_OVERLAP_HOURS = env.int("WEBHOOK_SECRET_ROTATION_OVERLAP_HOURS", default=24)
WEBHOOK_ENDPOINTS_PER_SERVICE = env.int("WEBHOOK_ENDPOINTS_PER_SERVICE", default=10)

WEBHOOKS_BEAT_SCHEDULE: dict = {
    "webhooks-sweep-due-deliveries": {
        "task": "webhooks.tasks.sweep_due_deliveries",
        "schedule": timedelta(seconds=WEBHOOK_SWEEP_INTERVAL_SECONDS),
        # A sweep not started within two intervals is dropped (the next one covers it);
        # `expire_seconds` is how django-celery-beat stores it, `expires` how Celery reads it.
        "options": {
            "queue": "webhooks",
            "expires": WEBHOOK_SWEEP_INTERVAL_SECONDS * 2,
            "expire_seconds": WEBHOOK_SWEEP_INTERVAL_SECONDS * 2,
        },
    },
}

# X-Lago-Signature of jwt endpoints (Lago's default): RS256 with this key, base64 of a PEM
# private key as Lago's own LAGO_RSA_PRIVATE_KEY; empty = one made on first use and stored.
LAGO_RSA_PRIVATE_KEY = env.str("LAGO_RSA_PRIVATE_KEY", default="")
# The JWT's ``iss``. Lago uses its LAGO_API_URL; the default is Lago Cloud's, so a receiver
# written for Lago Cloud (issuer="https://api.getlago.com") verifies unchanged.
WEBHOOK_JWT_ISSUER = env.str("WEBHOOK_JWT_ISSUER", default="https://api.getlago.com")
