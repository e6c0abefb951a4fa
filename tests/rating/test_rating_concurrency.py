"""Several real processes rating at once: no double counting, no double closing, no deadlock."""

from __future__ import annotations

import re
import subprocess
import sys
from datetime import timedelta
from decimal import Decimal as D

import pytest
from django.utils import timezone

from metering import windows
from metering.models import RatedUsage, Subscription
from tests.conftest import REPO_ROOT, subprocess_environment
from tests.rating.conftest import T0, Catalogue

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

CPU = ("cpu_seconds", "sum_agg", "standard", {"amount": "0.0075", "unit_batch": 3600, "free_units": 3600})
CALLS = ("calls", "count_agg", "package", {"amount": "1", "package_size": 2, "free_units": 0})
SUBSCRIPTIONS = 120


def months_between(start, now) -> int:
    return (now.year - start.year) * 12 + now.month - start.month


def test_two_processes_rating_and_closing_windows_at_once(service):
    catalogue = Catalogue(service)
    plan = catalogue.plan("cloud", [CPU, CALLS])
    # Windows started in March: every subscription has months of windows to close.
    subs = [catalogue.subscription(plan, start=T0, end=T0.replace(month=4)) for _ in range(SUBSCRIPTIONS)]
    for index, sub in enumerate(subs):
        catalogue.events(sub, "cpu_seconds", [(T0, 7200 + index), (T0.replace(month=5), 10800)])
        catalogue.events(sub, "calls", [(T0, None)] * 3)

    command = [sys.executable, "manage.py", "rate_usage", "--chunk-size", "7"]
    env = subprocess_environment(DJANGO_DEBUG="1")
    workers = [subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True) for _ in range(2)]
    outputs = [worker.communicate(timeout=240) for worker in workers]
    for worker, (out, err) in zip(workers, outputs):
        assert worker.returncode == 0, err

    now = timezone.now()
    expected_closed_per_sub = months_between(T0, now)
    closed = sum(int(re.search(r"(\d+) window\(s\) closed", out).group(1)) for out, _ in outputs)
    # each window was closed exactly once, by one of the two processes
    assert closed == SUBSCRIPTIONS * expected_closed_per_sub

    current_start, _ = windows.billing_window(interval="monthly", anchor=T0, at=now)
    assert set(Subscription.objects.values_list("current_period_start", flat=True)) == {current_start}
    march = RatedUsage.objects.filter(window_start=T0)
    may = RatedUsage.objects.filter(window_start=T0.replace(month=5))
    # one row per (subscription, charge, window), never two
    assert march.count() == 2 * SUBSCRIPTIONS and may.count() == SUBSCRIPTIONS
    assert RatedUsage.objects.count() == 3 * SUBSCRIPTIONS
    for row in march.filter(charge__metric__code="cpu_seconds").select_related("subscription"):
        index = subs.index(next(s for s in subs if s.id == row.subscription_id))
        assert row.amount == ((D(3600 + index) * D("0.0075")) / 3600).quantize(D("0.000001"), rounding="ROUND_HALF_UP")
        assert row.state == "frozen"
    assert set(march.filter(charge__metric__code="calls").values_list("amount", flat=True)) == {D("2")}
    assert set(may.values_list("amount", "state")) == {(D("0.015"), "frozen")}


def test_beat_task_rates_on_a_real_worker_of_the_rating_queue(service, start_celery_worker):
    import time

    from metering import tasks

    catalogue = Catalogue(service)
    plan = catalogue.plan("cloud", [CPU])
    now = timezone.now()
    sub = catalogue.subscription(plan, start=now - timedelta(days=1), end=now + timedelta(days=29))
    catalogue.events(sub, "cpu_seconds", [(now - timedelta(hours=1), 3600 + 1800)])
    start_celery_worker(queues="rating", env={"DJANGO_DEBUG": "1"})

    tasks.rate_open_windows.delay()
    deadline = time.monotonic() + 60
    while not RatedUsage.objects.filter(subscription=sub).exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert RatedUsage.objects.get(subscription=sub).amount == D("0.00375")

    RatedUsage.objects.all().delete()
    tasks.rate_subscription.delay(str(sub.id))
    deadline = time.monotonic() + 60
    while not RatedUsage.objects.filter(subscription=sub).exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert RatedUsage.objects.get(subscription=sub).amount == D("0.00375")
