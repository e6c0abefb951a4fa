"""Webhook delivery throughput and latency: outbox commit -> Celery -> signed POST -> receipt.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/fb_webhooks REDIS_URL=redis://127.0.0.1:6379/4 \
        /work/main/.venv/bin/python bench/webhooks.py --events 5000 --workers 2

Creates a throwaway service with one endpoint pointing at a local receiver (a separate
process), starts one ``celery worker -c <workers>`` (prefork: that many worker
processes) on the ``webhooks`` queue, then records events in transactions of
``--batch`` events. Each event is one delivery. Prints deliveries/s (first commit to
last receipt) and the commit-to-receipt latency percentiles. ``--rate`` paces the
producer (events/s) to measure latency below saturation.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "billing_project.settings")
os.environ.setdefault("SECRET_KEY", "bench-only-" + "x" * 40)
os.environ.setdefault("ALLOWED_HOSTS", "localhost,127.0.0.1")
os.environ.setdefault("WEBHOOK_ALLOW_HTTP_HOSTS", "127.0.0.1")


def _receiver_main(ready, results, expected: int) -> None:
    from webhooks.testing.receiver import WebhookReceiver

    with WebhookReceiver() as receiver:
        ready.put(receiver.url("/bench"))
        try:
            receiver.wait_for(expected, timeout=900)
        except TimeoutError:
            pass
        results.put([(r.header("webhook-id"), r.received_at) for r in receiver.received()])


def percentile(values: list[float], pct: float) -> float:  # ok-float
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * len(ordered)) - 1))
    return ordered[index]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=5000)
    parser.add_argument("--workers", type=int, default=2, help="Celery worker processes")
    parser.add_argument("--batch", type=int, default=20, help="events per committed transaction")
    parser.add_argument("--rate", type=int, default=0, help="events/s to produce (0 = as fast as possible)")
    parser.add_argument("--prefetch", type=int, default=8, help="worker prefetch multiplier")
    args = parser.parse_args()

    import django

    django.setup()
    from django.core.management import call_command
    from django.db import transaction

    from billing_project.celery import app
    from identity.models import Service
    from webhooks import services
    from webhooks.models import WebhookDelivery

    call_command("migrate", verbosity=0)
    import redis

    redis.Redis.from_url(os.environ["REDIS_URL"]).delete("webhooks")

    ctx = multiprocessing.get_context("spawn")
    ready, results = ctx.Queue(), ctx.Queue()
    receiver = ctx.Process(target=_receiver_main, args=(ready, results, args.events), daemon=True)
    receiver.start()
    url = ready.get(timeout=30)

    service = Service.objects.create(code=f"bench-{uuid.uuid4().hex[:8]}", name="webhook bench")
    services.create_endpoint(service=service, url=url)

    name = f"bench-{uuid.uuid4().hex[:8]}@localhost"
    log = open(f"/tmp/celery-{name.split('@')[0]}.log", "wb")
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "billing_project", "worker", "-Q", "webhooks",
         "-c", str(args.workers), "-n", name, "--without-gossip", "--without-mingle",
         "--prefetch-multiplier", str(args.prefetch), "--loglevel", "WARNING"],
        cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=log, stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        while not app.control.ping(destination=[name], timeout=0.5):
            if time.monotonic() > deadline or worker.poll() is not None:
                raise SystemExit("celery worker did not start; see " + log.name)

        payload = {"lago_id": str(uuid.uuid4()), "number": "BENCH-1", "total_amount_cents": 1999,
                   "currency": "CAD", "fees": [{"amount_cents": 1999, "units": "12.5"}] * 5}
        committed_at: dict[str, float] = {}  # ok-float
        started = time.time()  # ok-float
        produced = 0
        while produced < args.events:
            size = min(args.batch, args.events - produced)
            ids: list[str] = []
            stamp: list[float] = []  # ok-float
            with transaction.atomic():
                # Registered first, so it runs first after COMMIT: the commit time.
                transaction.on_commit(lambda: stamp.append(time.time()))  # noqa: B023
                for _ in range(size):
                    event = services.record_event(service=service, webhook_type="invoice.created",
                                                  object_type="invoice", payload=payload)
                    ids.append(str(event.id))
            for event_id in ids:
                committed_at[event_id] = stamp[0]
            produced += size
            if args.rate:
                ahead = started + produced / args.rate - time.time()
                if ahead > 0:
                    time.sleep(ahead)
        produce_seconds = time.time() - started

        received = results.get(timeout=900)
        receipts = {webhook_id: at for webhook_id, at in received if webhook_id in committed_at}
        latencies_ms = [(receipts[i] - committed_at[i]) * 1000 for i in receipts]
        first_commit = min(committed_at.values())
        last_receipt = max(receipts.values())
        span = last_receipt - first_commit
        succeeded = WebhookDelivery.objects.filter(endpoint__service=service, status="succeeded").count()

        print(f"webhook bench: {args.events} events -> 1 endpoint, {args.workers} worker processes, "
              f"batch {args.batch}, rate {'max' if not args.rate else args.rate}/s, prefetch {args.prefetch}")
        print(f"  produced in {produce_seconds:.2f} s ({args.events / produce_seconds:.0f} events/s)")
        print(f"  received {len(receipts)}/{args.events}; succeeded deliveries in DB: {succeeded}")
        print(f"  throughput: {len(receipts) / span:.0f} deliveries/s (first commit -> last receipt, {span:.2f} s)")
        print(f"  commit -> receipt latency: p50 {statistics.median(latencies_ms):.1f} ms, "
              f"p99 {percentile(latencies_ms, 99):.1f} ms, max {max(latencies_ms):.1f} ms")
        print(f"  duplicates received: {len(received) - len({w for w, _ in received})}")
    finally:
        worker.terminate()
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            worker.kill()
        receiver.terminate()


if __name__ == "__main__":
    main()
