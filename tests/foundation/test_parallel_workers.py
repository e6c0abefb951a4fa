"""scripts/test runs the suite in pytest-xdist workers: each has its own test database and
its own Redis database (broker, broadcasts, cache, rate limits), so no worker sees another's
queues or rows (tests/environment.py)."""
from __future__ import annotations

import os
from urllib.parse import urlsplit

from django.conf import settings
from django.db import connection


def worker_index(config) -> int | None:
    workerinput = getattr(config, "workerinput", None)
    return int(workerinput["workerid"].removeprefix("gw")) if workerinput else None


def test_this_worker_has_its_own_redis_database(request):
    index = worker_index(request.config)
    redis_url = os.environ["REDIS_URL"]
    # The default base is database 1; each worker adds its index.
    assert urlsplit(redis_url).path == f"/{1 + (index or 0)}"
    assert settings.CELERY_BROKER_URL == redis_url
    assert settings.CACHES["default"]["LOCATION"] == redis_url


def test_this_worker_has_its_own_test_database(request, db):
    index = worker_index(request.config)
    name = connection.settings_dict["NAME"]
    assert name.startswith("test_")
    assert name.endswith(f"_gw{index}") if index is not None else "_gw" not in name
