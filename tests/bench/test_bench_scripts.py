"""The benchmarks keep working as the schema grows: each script runs at a tiny size on the
test database and its figures come from real work (rows rated, events and keys stored).
No timing is asserted: the figures are only read by people."""
from __future__ import annotations

import re
import subprocess
import sys

import pytest
from django.db import connection

from metering import services as metering_services
from metering.models import UsageEvent, UsageEventKey
from tests.conftest import REPO_ROOT, database_url_for_subprocesses, subprocess_environment


@pytest.mark.django_db(transaction=True)
def test_rating_bench_rates_every_loaded_window_and_a_rerun_writes_nothing():
    result = subprocess.run(
        [sys.executable, "bench/rating.py", "--scale", "0.0005", "--workers", "1", "2"],
        cwd=REPO_ROOT, env=subprocess_environment(DJANGO_DEBUG="1"), capture_output=True, text=True, timeout=240,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    assert "50 subscriptions x 2 charges, 1,000 events" in out
    stored = [int(n.replace(",", "")) for n in re.findall(r"RatedUsage rows stored: ([\d,]+)", out)]
    assert len(stored) == 2 and stored[0] > 0 and stored[0] == stored[1], out
    assert out.count("re-run, nothing changed") == 2 and ", 0 created, 0 updated" in out, out
    assert "ratio rating / GROUP BY with 1 rating process(es)" in out
    # The bench's rows are deleted at the end (no --keep).
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM identity_service WHERE code = 'bench-rating'")
        assert cursor.fetchone()[0] == 0


@pytest.mark.django_db(transaction=True)
def test_ingest_preload_stores_every_event_with_its_key_and_tops_up_without_collisions(service):
    from bench import ingest

    subscription_ids = []
    for n in range(3):
        metering_services.create_plan(service=service, data={
            "name": f"P{n}", "code": f"p{n}", "interval": "monthly", "amount_cents": 0, "amount_currency": "CAD"})
        subscription_ids.append(str(metering_services.create_subscription(service=service, data={
            "external_customer_id": f"c-{n}", "plan_code": f"p{n}", "external_id": f"bench-sub-{n}"}).subscription.id))
    meta = {"service_id": service.id, "subscription_ids": subscription_ids}
    url = database_url_for_subprocesses()

    ingest.preload(meta, 2_500, url=url, chunk=1_000, processes=2)
    ingest.preload(meta, 500, url=url, chunk=1_000, processes=2)  # a top-up: new transaction ids

    assert UsageEvent.objects.filter(service=service).count() == 3_000
    assert UsageEventKey.objects.filter(service=service).count() == 3_000
    with connection.cursor() as cursor:
        # Every key names its own event, with the same transaction id, timestamp and payload hash.
        cursor.execute(
            "SELECT count(*) FROM metering_usageeventkey k JOIN metering_usageevent e ON e.id = k.event_id "
            "AND e.transaction_id = k.transaction_id AND e.\"timestamp\" = k.\"timestamp\" "
            "AND e.payload_hash = k.payload_hash WHERE k.service_id = %s", [service.id])
        assert cursor.fetchone()[0] == 3_000
        # Events land in their month's partition, not in DEFAULT.
        cursor.execute("SELECT count(*) FROM metering_usageevent_default")
        assert cursor.fetchone()[0] == 0
