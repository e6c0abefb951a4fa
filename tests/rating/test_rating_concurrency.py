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


def test_beat_task_fans_out_shards_on_a_real_worker_of_the_rating_queue(service, start_celery_worker):
    import time

    from metering import tasks

    catalogue = Catalogue(service)
    plan = catalogue.plan("cloud", [CPU])
    now = timezone.now()
    subs = [catalogue.subscription(plan, start=now - timedelta(days=1), end=now + timedelta(days=29))
            for _ in range(6)]
    for sub in subs:
        catalogue.events(sub, "cpu_seconds", [(now - timedelta(hours=1), 3600 + 1800)])
    start_celery_worker(queues="rating", env={"DJANGO_DEBUG": "1", "RATING_SHARDS": "3"})

    tasks.rate_open_windows.delay()  # -> 3 rate_open_windows_shard tasks on the rating queue
    deadline = time.monotonic() + 60
    while RatedUsage.objects.count() < len(subs) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert {r.subscription_id: r.amount for r in RatedUsage.objects.all()} == {s.id: D("0.00375") for s in subs}

    RatedUsage.objects.all().delete()
    tasks.rate_subscription.delay(str(subs[0].id))
    deadline = time.monotonic() + 60
    while not RatedUsage.objects.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert list(RatedUsage.objects.values_list("subscription_id", "amount")) == [(subs[0].id, D("0.00375"))]


def test_a_worker_killed_mid_run_leaves_every_subscription_whole(service):
    import signal
    import time

    catalogue = Catalogue(service)
    plan = catalogue.plan("cloud", [CPU, CALLS])
    subs = [catalogue.subscription(plan, start=T0, end=T0.replace(month=4)) for _ in range(150)]
    for sub in subs:
        catalogue.events(sub, "cpu_seconds", [(T0, 7200)])
        catalogue.events(sub, "calls", [(T0, None)] * 3)
    now = timezone.now()
    current_start, _ = windows.billing_window(interval="monthly", anchor=T0, at=now)

    worker = subprocess.Popen([sys.executable, "manage.py", "rate_usage", "--chunk-size", "3"], cwd=REPO_ROOT,
                              env=subprocess_environment(DJANGO_DEBUG="1"), stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not RatedUsage.objects.exists() and time.monotonic() < deadline and worker.poll() is None:
        time.sleep(0.05)
    worker.send_signal(signal.SIGKILL)  # wherever it is: mid-chunk, between chunks, or done
    worker.wait(timeout=30)

    def assert_whole():
        done = 0
        for sub in Subscription.objects.filter(id__in=[s.id for s in subs]):
            rows = RatedUsage.objects.filter(subscription=sub)
            if sub.current_period_start == T0:  # untouched: nothing half-written
                assert sub.usage_frozen_until is None and not rows.exists()
            else:  # every window closed, its rows frozen with their final amounts
                done += 1
                assert (sub.current_period_start, sub.usage_frozen_until) == (current_start, current_start)
                assert {(r.charge.metric.code, r.amount, r.state) for r in rows} == {
                    ("cpu_seconds", D("0.0075"), "frozen"), ("calls", D("2"), "frozen")}
        return done

    assert_whole()
    subprocess.run([sys.executable, "manage.py", "rate_usage"], cwd=REPO_ROOT, check=True,
                   env=subprocess_environment(DJANGO_DEBUG="1"), capture_output=True)
    assert assert_whole() == len(subs)
    assert RatedUsage.objects.count() == 2 * len(subs)


def test_events_racing_a_window_close_are_either_billed_or_refused(service, api_key):
    """Ingest (HTTP API, FOR KEY SHARE) and window closing (FOR UPDATE) interleave freely:
    every accepted event of the closing window is in its frozen rating; the others get
    ``period_closed``. Nothing accepted is lost."""
    import threading
    import time
    from collections import defaultdict

    from django.db import connection as main_connection

    from tests.conftest import make_api_client

    catalogue = Catalogue(service)
    plan = catalogue.plan("cloud", [("cpu_seconds", "sum_agg", "standard", {"amount": "1"})])
    subs = [catalogue.subscription(plan, start=T0, end=T0.replace(month=4), external_id=f"race-{i}")
            for i in range(20)]
    last_second = int(T0.replace(month=4).timestamp()) - 1  # inside the window being closed
    accepted: dict[str, int] = defaultdict(int)
    refused: list[dict] = []
    stop = threading.Event()

    def ingest():
        from django.db import connection

        client = make_api_client(api_key)
        n = 0
        try:
            while not stop.is_set():
                sub = subs[n % len(subs)]
                response = client.post("/api/v1/events", {"event": {
                    "transaction_id": f"race-{n}", "external_subscription_id": sub.external_id,
                    "code": "cpu_seconds", "timestamp": str(last_second), "properties": {"value": "1"},
                }}, format="json")
                if response.status_code == 200:
                    accepted[sub.external_id] += 1
                else:
                    refused.append(response.json())
                n += 1
        finally:
            connection.close()

    thread = threading.Thread(target=ingest)
    thread.start()
    time.sleep(0.3)
    subprocess.run([sys.executable, "manage.py", "rate_usage", "--chunk-size", "1"], cwd=REPO_ROOT, check=True,
                   env=subprocess_environment(DJANGO_DEBUG="1"), capture_output=True, timeout=120)
    time.sleep(0.3)
    stop.set()
    thread.join(timeout=60)
    main_connection.close()

    assert refused, "no event reached a closed window: the race was not exercised"
    assert all(body["error_details"] == {"timestamp": ["period_closed"]} for body in refused)
    for sub in subs:
        march = RatedUsage.objects.filter(subscription=sub, window_start=T0).first()
        billed = march.units if march else D(0)
        assert billed == accepted[sub.external_id], sub.external_id
        assert march is None or march.state == "frozen"
