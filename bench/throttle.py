"""What the per-key rate limit costs a request: ``check_rate`` against the configured
cache (Redis when REDIS_URL is set), median per call over N calls, printed.

    DATABASE_URL=... REDIS_URL=redis://127.0.0.1:6379/6 .venv/bin/python bench/throttle.py --calls 5000
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "billing_project.settings")
os.environ.setdefault("SECRET_KEY", "bench-only-" + "x" * 40)
os.environ.setdefault("ALLOWED_HOSTS", "localhost")

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402

from billing_kit.throttling import INGEST, check_rate  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=5000)
    args = parser.parse_args()
    settings.API_THROTTLE_INGEST_RATE = f"{args.calls * 10}/min"
    ident = f"bench-{uuid.uuid4().hex[:8]}"
    samples = []
    for _ in range(args.calls):
        start = time.perf_counter()
        decision = check_rate(scope=INGEST, ident=ident)
        samples.append(time.perf_counter() - start)
        assert decision is not None and decision.allowed
    samples.sort()
    backend = settings.CACHES[settings.API_THROTTLE_CACHE]["BACKEND"].rsplit(".", 1)[-1]
    print(f"check_rate on {backend}: {args.calls} calls, median {statistics.median(samples) * 1e6:.0f} µs, "
          f"p99 {samples[int(len(samples) * 0.99)] * 1e6:.0f} µs per call")


if __name__ == "__main__":
    main()
