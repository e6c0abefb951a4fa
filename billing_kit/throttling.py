"""Per-API-key rate limits: one service cannot take the API's capacity from the others.

Two budgets per key, each configurable (``API_THROTTLE_INGEST_RATE`` for ``POST /events``
and ``/events/batch``, ``API_THROTTLE_MANAGEMENT_RATE`` for every other call), counted in
the ``API_THROTTLE_CACHE`` Django cache: Redis when ``REDIS_URL`` is set (shared by every
web process), the process's memory on the embedded default.

Counting is a fixed window per key: one counter per window, created with its expiry and
incremented atomically (on Redis ``SET NX EX`` + ``INCR`` in one round trip), so
concurrent requests never lose a count, at the cost of letting a client spend up to two
windows' budget across a window boundary.

A refused request answers Lago's 429 body (``{"status": 429, "error": "Too Many
Requests", "code": "too_many_requests"}``) with ``Retry-After`` (seconds to the window's
end) and the ``x-ratelimit-limit/remaining/reset`` headers Lago Cloud sends, which the
official clients read to wait and retry.

The DRF views use ``ApiKeyRateThrottle`` (``DEFAULT_THROTTLE_CLASSES``); the event
fast path, which answers before DRF, calls ``check_rate`` itself.
"""
from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from functools import lru_cache

from django.conf import settings
from django.core.cache import caches
from django.core.cache.backends.redis import RedisCache
from django.http import HttpResponse
from rest_framework.throttling import BaseThrottle

logger = logging.getLogger(__name__)

INGEST = "ingest"
MANAGEMENT = "management"
_INGEST_PATHS = frozenset({"/api/v1/events", "/api/v1/events/batch"})
_PERIODS = {"s": 1, "sec": 1, "second": 1, "m": 60, "min": 60, "minute": 60, "h": 3600, "hour": 3600,
            "d": 86400, "day": 86400}
_DISABLED = frozenset({"", "0", "off", "none"})


@dataclass(frozen=True)
class Rate:
    limit: int
    period_seconds: int


@dataclass(frozen=True)
class Decision:
    allowed: bool
    limit: int
    remaining: int
    reset_seconds: int


@lru_cache(maxsize=32)
def parse_rate(text: str) -> Rate | None:
    """``"600/min"`` → 600 requests a minute; ``"off"`` (or ``0``) → no limit.

    ``ValueError`` on anything else, so a typo in the environment stops the service at
    start-up (the settings parse it once) instead of silently disabling the limit.
    """
    text = text.strip().lower()
    if text in _DISABLED:
        return None
    count, _, unit = text.partition("/")
    # "100/10s": a multiple of the unit
    digits = "".join(c for c in unit if c.isdigit())
    name = unit[len(digits):]
    if not count.isdigit() or name not in _PERIODS or int(count) <= 0:
        raise ValueError(f"invalid rate {text!r}: expected e.g. 600/min, 50/s, 10000/h or off")
    return Rate(limit=int(count), period_seconds=_PERIODS[name] * (int(digits) if digits else 1))


def scope_of(*, method: str, path: str) -> str:
    return INGEST if method == "POST" and path in _INGEST_PATHS else MANAGEMENT


def rate_for(scope: str) -> Rate | None:
    setting = settings.API_THROTTLE_INGEST_RATE if scope == INGEST else settings.API_THROTTLE_MANAGEMENT_RATE
    return parse_rate(setting)


def check_rate(*, scope: str, ident: str, now: float | None = None) -> Decision | None:  # ok-float: clock
    """Count one request of ``ident`` (an API key's prefix) in ``scope``; None when unlimited.

    A cache that cannot be reached lets the request through (logged): the limiter
    protects capacity, it must not become an outage of its own.
    """
    rate = rate_for(scope)
    if rate is None:
        return None
    now = time.time() if now is None else now
    window = int(now // rate.period_seconds)
    reset = max(1, math.ceil((window + 1) * rate.period_seconds - now))
    key = f"throttle:{scope}:{ident}:{rate.period_seconds}:{window}"
    try:
        count = _count(key, timeout=rate.period_seconds + 60)
    except Exception:  # a cache outage: fail open
        logger.warning("Rate limit cache unavailable; request let through", exc_info=True)
        return None
    return Decision(allowed=count <= rate.limit, limit=rate.limit,
                    remaining=max(0, rate.limit - count), reset_seconds=reset)


def _count(key: str, *, timeout: int) -> int:
    """Add one to the counter ``key`` and return it; it outlives its window a little, so
    an increment never meets an expired key."""
    cache = caches[settings.API_THROTTLE_CACHE]
    if isinstance(cache, RedisCache):
        # One round trip instead of the three of cache.add + cache.incr (EXISTS, INCR):
        # create the counter with its expiry if missing, then increment it.
        client = cache._cache.get_client(key, write=True)  # type: ignore[attr-defined]  # Django >= 4.0
        full_key = cache.make_and_validate_key(key)
        pipeline = client.pipeline(transaction=False)
        pipeline.set(full_key, 0, ex=timeout, nx=True)
        pipeline.incr(full_key)
        return int(pipeline.execute()[1])
    if cache.add(key, 1, timeout=timeout):
        return 1
    return cache.incr(key)


def add_rate_headers(response: HttpResponse, decision: Decision | None) -> HttpResponse:
    if decision is not None:
        response["x-ratelimit-limit"] = str(decision.limit)
        response["x-ratelimit-remaining"] = str(decision.remaining)
        response["x-ratelimit-reset"] = str(decision.reset_seconds)
        if not decision.allowed:
            response["Retry-After"] = str(decision.reset_seconds)
    return response


class ApiKeyRateThrottle(BaseThrottle):
    """DRF's throttle hook, after authentication: the calling key's budget for this call."""

    def allow_request(self, request, view) -> bool:
        # The key's public prefix: random, so a counter is never inherited by another key
        # (ids restart with a new database).
        ident = getattr(request.auth, "prefix", None)
        if ident is None:  # unauthenticated calls are refused with 401 by the permission
            return True
        decision = check_rate(scope=scope_of(method=request.method, path=request.path_info), ident=ident)
        # The headers go on the response, whatever it is (billing_kit.views / the exception handler).
        request._request.rate_limit_decision = decision
        self._decision = decision
        return decision is None or decision.allowed

    def wait(self) -> float | None:  # ok-float: DRF's signature
        decision = getattr(self, "_decision", None)
        return float(decision.reset_seconds) if decision is not None else None  # ok-float
