"""Tasks only the test suite's workers load (``celery worker --include tests.worker_tasks``)."""
from __future__ import annotations

import socket

import redis
from celery import shared_task
from django.conf import settings

from identity.models import Service

WORKER_PING_KEY = "fusion:worker-ping:{token}"


@shared_task
def ping_worker(token: str) -> None:
    """Proves a worker can reach both the broker's Redis and the database."""
    answer = f"{socket.gethostname()}:{Service.objects.count()}"
    redis.Redis.from_url(settings.REDIS_URL).set(WORKER_PING_KEY.format(token=token), answer, ex=300)
