"""Webhook delivery throughput and latency: outbox commit -> Celery -> signed POST -> receipt.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/fb_webhooks REDIS_URL=redis://127.0.0.1:6379/4 \
        .venv/bin/python bench/webhooks.py --events 5000 --workers 2

Creates a throwaway service with one endpoint pointing at a local receiver (a separate
process), starts one ``celery worker -c <workers>`` (prefork: that many worker
processes) on the ``webhooks`` queue, then records events in transactions of
``--batch`` events. Each event is one delivery. Prints deliveries/s (first commit to
last receipt) and the commit-to-receipt latency percentiles. ``--rate`` paces the
producer (events/s) to measure latency below saturation.

Fairness (``--tarpits 10``): instead, the p99 commit-to-receipt of one service's paced
webhooks alone, then again while another service with that many tarpit endpoints
(accept, never answer) keeps emitting events (``--tarpit-rate`` events/s, one delivery
per tarpit each) and beat retries them; prints both and their ratio (#17: at most 2x).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "billing_project.settings")
os.environ.setdefault("SECRET_KEY", "bench-only-" + "x" * 40)
os.environ.setdefault("ALLOWED_HOSTS", "localhost,127.0.0.1")
os.environ.setdefault("WEBHOOK_ALLOW_HTTP_HOSTS", "127.0.0.1")


def _receiver_main(ready, commands, results) -> None:
    from webhooks.testing.receiver import WebhookReceiver

    with WebhookReceiver() as receiver:
        ready.put(receiver.url("/bench"))
        while True:
            command = commands.get()
            if command is None:
                return
            expected = command
            try:
                receiver.wait_for(expected, timeout=900)
            except TimeoutError:
                pass
            results.put([(r.header("webhook-id"), r.received_at) for r in receiver.received()])
            receiver.clear()


def percentile(values: list[float], pct: float) -> float:  # ok-float
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * len(ordered)) - 1))
    return ordered[index]


def produce(*, service, count: int, batch: int, rate: int) -> dict[str, float]:  # ok-float
    """Record ``count`` events in transactions of ``batch``; returns event id -> commit time."""
    from django.db import transaction

    from webhooks import services

    payload = {"lago_id": str(uuid.uuid4()), "number": "BENCH-1", "total_amount_cents": 1999,
               "currency": "CAD", "fees": [{"amount_cents": 1999, "units": "12.5"}] * 5}
    committed_at: dict[str, float] = {}  # ok-float
    started = time.time()  # ok-float
    produced = 0
    while produced < count:
        size = min(batch, count - produced)
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
        if rate:
            ahead = started + produced / rate - time.time()
            if ahead > 0:
                time.sleep(ahead)
    return committed_at


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=5000, help="throughput phase: backlog to drain")
    parser.add_argument("--latency-events", type=int, default=1000, help="latency phase: paced events")
    parser.add_argument("--rate", type=int, default=50, help="latency phase: events/s")
    parser.add_argument("--workers", type=int, default=2, help="Celery worker processes")
    parser.add_argument("--batch", type=int, default=20, help="events per committed transaction (throughput)")
    parser.add_argument("--latency-batch", type=int, default=1, help="events per transaction (latency)")
    parser.add_argument("--prefetch", type=int, default=4, help="worker prefetch multiplier")
    parser.add_argument("--tarpits", type=int, default=0, help="fairness: tarpit endpoints of another service")
    parser.add_argument("--tarpit-rate", type=int, default=5, help="fairness: the tarpit service's events/s")
    parser.add_argument("--warmup", type=float, default=3.0, help="fairness: seconds of tarpit load before measuring")
    args = parser.parse_args()

    import django

    django.setup()
    from django.core.management import call_command

    from billing_project.celery import app
    from identity.models import Service
    from webhooks import services
    from webhooks.models import WebhookDelivery

    call_command("migrate", verbosity=0)
    from django.db import connection

    # Start from clean statistics and no dead index entries (autovacuum may be off on a
    # development database; production relies on it).
    with connection.cursor() as cursor:
        for table in ("webhooks_webhookdelivery", "webhooks_webhookevent", "webhooks_webhookattempt"):
            cursor.execute(f"VACUUM ANALYZE {table}")
    import redis

    redis.Redis.from_url(os.environ["REDIS_URL"]).delete("webhooks")

    ctx = multiprocessing.get_context("spawn")
    ready, commands, results = ctx.Queue(), ctx.Queue(), ctx.Queue()
    receiver = ctx.Process(target=_receiver_main, args=(ready, commands, results), daemon=True)
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
        print(f"webhook bench: 1 endpoint on a local receiver, {args.workers} worker processes "
              f"(celery prefork, prefetch {args.prefetch}); machine shared, {os.cpu_count()} cores, "
              f"load average {os.getloadavg()[0]:.1f} at start")  # ok-float
        if args.tarpits:
            fairness(args=args, service=service, commands=commands, results=results)
            return

        # Phase 1, throughput: a backlog committed while the worker is paused, then drained.
        app.control.cancel_consumer("webhooks", destination=[name], reply=True)
        commands.put(args.events)
        produce_started = time.time()  # ok-float
        committed = produce(service=service, count=args.events, batch=args.batch, rate=0)
        produce_seconds = time.time() - produce_started
        resumed = time.time()  # ok-float
        app.control.add_consumer("webhooks", destination=[name], reply=True)
        received = results.get(timeout=900)
        receipts = {w: at for w, at in received if w in committed}
        span = max(receipts.values()) - resumed
        print(f"  throughput: {len(receipts)}/{args.events} deliveries drained in {span:.2f} s = "
              f"{len(receipts) / span:.0f} deliveries/s (backlog produced at "
              f"{args.events / produce_seconds:.0f} events/s in transactions of {args.batch})")
        print(f"    duplicates received: {len(received) - len({w for w, _ in received})}")

        # Phase 2, latency: paced events, each delivery measured from its commit to its receipt.
        # First let the workers finish recording phase 1's outcomes (receipt comes before that).
        settle_deadline = time.monotonic() + 60
        broker = redis.Redis.from_url(os.environ["REDIS_URL"])
        while ((WebhookDelivery.objects.filter(endpoint__service=service, status="pending").exists()
                or broker.llen("webhooks")) and time.monotonic() < settle_deadline):
            time.sleep(0.2)  # outcomes recorded and queued messages (no-ops by now) consumed
        time.sleep(1)
        commands.put(args.latency_events)
        committed = produce(service=service, count=args.latency_events, batch=args.latency_batch,
                            rate=args.rate)
        received = results.get(timeout=900)
        receipts = {w: at for w, at in received if w in committed}
        latencies_ms = [(receipts[i] - committed[i]) * 1000 for i in receipts]
        print(f"  latency at {args.rate} events/s ({args.latency_batch} per transaction), commit -> receipt, "
              f"{len(receipts)}/{args.latency_events}: p50 {statistics.median(latencies_ms):.1f} ms, "
              f"p99 {percentile(latencies_ms, 99):.1f} ms, max {max(latencies_ms):.1f} ms")
        time.sleep(1)
        total = args.events + args.latency_events
        succeeded = WebhookDelivery.objects.filter(endpoint__service=service, status="succeeded").count()
        print(f"  deliveries recorded as succeeded: {succeeded}/{total}")
    finally:
        # The bench's rows are throwaway: remove them so runs don't accumulate.
        from webhooks.models import WebhookAttempt, WebhookEndpoint, WebhookEvent

        WebhookAttempt.objects.filter(delivery__endpoint__service=service).delete()
        WebhookDelivery.objects.filter(endpoint__service=service).delete()
        WebhookEvent.objects.filter(service=service).delete()
        WebhookEndpoint.objects.filter(service=service).delete()
        service.delete()
        worker.terminate()
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            worker.kill()
        commands.put(None)
        receiver.join(timeout=10)


def _paced_latencies(*, args, service, commands, results) -> list[float]:  # ok-float
    commands.put(args.latency_events)
    committed = produce(service=service, count=args.latency_events, batch=args.latency_batch, rate=args.rate)
    received = results.get(timeout=900)
    receipts = {w: at for w, at in received if w in committed}
    if len(receipts) < len(committed):
        print(f"    only {len(receipts)}/{len(committed)} received within the wait")
    return [(receipts[i] - committed[i]) * 1000 for i in receipts]


def fairness(*, args, service, commands, results) -> None:
    """p99 of ``service``'s webhooks alone, then beside another service's tarpit endpoints."""
    from django.db import close_old_connections, transaction

    from identity.models import Service
    from webhooks import services
    from webhooks.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint, WebhookEvent
    from webhooks.testing.receiver import Fault, WebhookReceiver

    def report(label: str, latencies: list[float]) -> float:  # ok-float
        p99 = percentile(latencies, 99)
        print(f"  {label}: {len(latencies)} webhooks at {args.rate}/s, commit -> receipt p50 "
              f"{statistics.median(latencies):.1f} ms, p99 {p99:.1f} ms, max {max(latencies):.1f} ms")
        return p99

    solo = report("solo", _paced_latencies(args=args, service=service, commands=commands, results=results))
    beat_log = open(f"/tmp/celery-beat-{uuid.uuid4().hex[:8]}.log", "wb")
    # Beat's sweeper retries the tarpit deliveries, as in production.
    beat = subprocess.Popen([sys.executable, "-m", "celery", "-A", "billing_project", "beat", "--loglevel", "WARNING"],
                            cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=beat_log,
                            stderr=subprocess.STDOUT)
    noisy = Service.objects.create(code=f"tarpits-{uuid.uuid4().hex[:8]}", name="tarpit bench")
    stop = threading.Event()
    emitted = [0]

    def flood() -> None:
        try:
            while not stop.is_set():
                with transaction.atomic():
                    services.record_event(service=noisy, webhook_type="invoice.created", object_type="invoice",
                                          payload={"lago_id": str(uuid.uuid4())})
                emitted[0] += 1
                stop.wait(1 / args.tarpit_rate)
        finally:
            close_old_connections()

    try:
        with WebhookReceiver() as tarpit:
            tarpit.set_default(Fault.timeout(3600))
            for i in range(args.tarpits):
                services.create_endpoint(service=noisy, url=tarpit.url(f"/tarpit/{i}"))
            flooder = threading.Thread(target=flood, daemon=True)
            flooder.start()
            time.sleep(args.warmup)
            beside = report(f"beside {args.tarpits} tarpit endpoints",
                            _paced_latencies(args=args, service=service, commands=commands, results=results))
            stop.set()
            flooder.join(timeout=30)
            open_circuits = WebhookEndpoint.objects.filter(service=noisy, circuit_open_until__isnull=False).count()
            attempts = WebhookAttempt.objects.filter(delivery__endpoint__service=noisy).count()
            print(f"    tarpit service: {emitted[0]} events x {args.tarpits} endpoints, {attempts} attempts "
                  f"(timeouts), {open_circuits}/{args.tarpits} circuits open at the end")
        print(f"  p99 beside tarpits / p99 solo = {beside / solo:.2f} (limit 2.00)")
    finally:
        beat.terminate()
        beat.wait(timeout=30)
        WebhookAttempt.objects.filter(delivery__endpoint__service=noisy).delete()
        WebhookDelivery.objects.filter(endpoint__service=noisy).delete()
        WebhookEvent.objects.filter(service=noisy).delete()
        WebhookEndpoint.objects.filter(service=noisy).delete()
        noisy.delete()


if __name__ == "__main__":
    main()
