"""Retry policy: what happens after an attempt.

Schedule (delay after the n-th failed attempt) is capped exponential with jitter:

    delay(n) = min(cap, base * factor ** (n - 1)) * uniform(1 - jitter, 1 + jitter)

With the defaults (base 5 s, factor 6, cap 10 h, jitter 20 %, 10 attempts) the
nominal delays are 5 s, 30 s, 3 min, 18 min, 1.8 h, 10 h, 10 h, 10 h, 10 h: the first
retries come within seconds, like the Standard Webhooks example schedule, and the
last attempt lands about 42 h after the first (never less than 24 h, even with
all jitter drawn low), after which the delivery is dead-lettered.

Receiver signals (Standard Webhooks): 2xx is success; 410 disables the endpoint;
429 and 503 with ``Retry-After`` wait that long (bounded) instead of the schedule.

Pure module: no Django.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta

from webhooks.sender import AttemptOutcome

SUCCEEDED = "succeeded"
RETRY = "retry"
DEAD = "dead"
DISABLE_ENDPOINT = "disable_endpoint"


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 10
    base_seconds: int = 5
    factor: int = 6
    cap_seconds: int = 10 * 3600
    jitter_percent: int = 20
    max_retry_after_seconds: int = 24 * 3600

    def __post_init__(self) -> None:
        if self.max_attempts < 1 or self.base_seconds < 1 or self.factor < 1:
            raise ValueError("max_attempts, base_seconds and factor must be positive")
        if not 0 <= self.jitter_percent < 100:
            raise ValueError("jitter_percent must be in [0, 100)")

    def nominal_delay_seconds(self, failed_attempts: int) -> int:
        """Delay before the next attempt, once ``failed_attempts`` attempts failed."""
        if failed_attempts < 1:
            raise ValueError("failed_attempts starts at 1")
        # Cap the exponent before exponentiating so huge attempt numbers stay cheap.
        delay = self.base_seconds
        for _ in range(failed_attempts - 1):
            delay *= self.factor
            if delay >= self.cap_seconds:
                return self.cap_seconds
        return min(delay, self.cap_seconds)

    def delay_seconds(self, failed_attempts: int, *, rng: random.Random | None = None) -> int:
        nominal = self.nominal_delay_seconds(failed_attempts)
        draw = (rng or random).randint(-self.jitter_percent, self.jitter_percent)
        return max(1, nominal * (100 + draw) // 100)

    def minimum_span_seconds(self) -> int:
        """Shortest possible time from the first to the last attempt (all jitter low)."""
        return sum(
            max(1, self.nominal_delay_seconds(n) * (100 - self.jitter_percent) // 100)
            for n in range(1, self.max_attempts)
        )


@dataclass(frozen=True)
class Decision:
    action: str  # SUCCEEDED | RETRY | DEAD | DISABLE_ENDPOINT
    next_attempt_at: datetime | None = None
    reason: str = ""


def decide(
    *,
    outcome: AttemptOutcome,
    attempts_made: int,
    now: datetime,
    policy: RetryPolicy,
    rng: random.Random | None = None,
) -> Decision:
    """``attempts_made`` counts the attempt that produced ``outcome``."""
    if outcome.ok:
        return Decision(SUCCEEDED)
    if outcome.status_code == 410:
        return Decision(DISABLE_ENDPOINT, reason="receiver answered 410 Gone: endpoint disabled")
    if attempts_made >= policy.max_attempts:
        return Decision(DEAD, reason=f"gave up after {attempts_made} attempts: {outcome.error}")
    if outcome.status_code in (429, 503) and outcome.retry_after_seconds is not None:
        wait = min(max(1, outcome.retry_after_seconds), policy.max_retry_after_seconds)
        return Decision(RETRY, now + timedelta(seconds=wait), reason=f"Retry-After {wait} s")
    wait = policy.delay_seconds(attempts_made, rng=rng)
    return Decision(RETRY, now + timedelta(seconds=wait), reason=outcome.error)
