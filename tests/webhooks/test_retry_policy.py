"""The retry schedule and the receiver signals."""

import random
from datetime import datetime, timedelta, timezone

from hypothesis import given, settings, strategies as st

from webhooks import retry
from webhooks.sender import AttemptOutcome

NOW = datetime(2026, 5, 1, tzinfo=timezone.utc)
POLICY = retry.RetryPolicy()


def outcome(status=None, retry_after=None, kind="http_status"):
    return AttemptOutcome(status, 10, "", "" if status and 200 <= status < 300 else kind, "err", retry_after)


def test_default_schedule_starts_in_seconds_and_spans_over_a_day():
    nominal = [POLICY.nominal_delay_seconds(n) for n in range(1, POLICY.max_attempts)]
    assert nominal == [5, 30, 180, 1080, 6480, 36000, 36000, 36000, 36000]
    assert POLICY.max_attempts >= 8
    assert POLICY.minimum_span_seconds() >= 24 * 3600


@settings(max_examples=200)
@given(seed=st.integers(0, 2**32))
def test_jittered_schedule_always_spans_a_day_and_respects_bounds(seed):
    rng = random.Random(seed)
    delays = [POLICY.delay_seconds(n, rng=rng) for n in range(1, POLICY.max_attempts)]
    assert sum(delays) >= 24 * 3600
    for n, delay in enumerate(delays, start=1):
        nominal = POLICY.nominal_delay_seconds(n)
        assert nominal * 0.8 <= delay <= nominal * 1.2
        assert delay <= POLICY.cap_seconds * 1.2


def test_jitter_spreads_retries():
    rng = random.Random(1)
    assert len({POLICY.delay_seconds(6, rng=rng) for _ in range(50)}) > 10


def test_huge_attempt_numbers_are_capped():
    assert POLICY.nominal_delay_seconds(10_000) == POLICY.cap_seconds


def test_success():
    assert retry.decide(outcome=outcome(204), attempts_made=1, now=NOW, policy=POLICY).action == retry.SUCCEEDED


def test_failure_retries_on_schedule_then_dead_letters():
    rng = random.Random(3)
    d = retry.decide(outcome=outcome(500), attempts_made=1, now=NOW, policy=POLICY, rng=rng)
    assert d.action == retry.RETRY
    assert timedelta(seconds=4) <= d.next_attempt_at - NOW <= timedelta(seconds=6)
    d = retry.decide(outcome=outcome(None, kind="timeout"), attempts_made=POLICY.max_attempts - 1, now=NOW, policy=POLICY)
    assert d.action == retry.RETRY
    d = retry.decide(outcome=outcome(500), attempts_made=POLICY.max_attempts, now=NOW, policy=POLICY)
    assert d.action == retry.DEAD and d.next_attempt_at is None


def test_redirect_is_retried_like_any_failure():
    d = retry.decide(outcome=outcome(302, kind="redirect"), attempts_made=1, now=NOW, policy=POLICY)
    assert d.action == retry.RETRY


def test_gone_disables():
    d = retry.decide(outcome=outcome(410), attempts_made=1, now=NOW, policy=POLICY)
    assert d.action == retry.DISABLE_ENDPOINT


def test_retry_after_is_honoured_for_429_and_503_and_bounded():
    for status in (429, 503):
        d = retry.decide(outcome=outcome(status, retry_after=900), attempts_made=1, now=NOW, policy=POLICY)
        assert d.action == retry.RETRY and d.next_attempt_at == NOW + timedelta(seconds=900)
    d = retry.decide(outcome=outcome(429, retry_after=10**9), attempts_made=1, now=NOW, policy=POLICY)
    assert d.next_attempt_at == NOW + timedelta(seconds=POLICY.max_retry_after_seconds)
    d = retry.decide(outcome=outcome(429, retry_after=0), attempts_made=1, now=NOW, policy=POLICY)
    assert d.next_attempt_at == NOW + timedelta(seconds=1)
    # still bounded by the attempt budget
    d = retry.decide(outcome=outcome(429, retry_after=5), attempts_made=POLICY.max_attempts, now=NOW, policy=POLICY)
    assert d.action == retry.DEAD


def test_429_without_retry_after_uses_schedule():
    d = retry.decide(outcome=outcome(429), attempts_made=2, now=NOW, policy=POLICY, rng=random.Random(0))
    assert timedelta(seconds=24) <= d.next_attempt_at - NOW <= timedelta(seconds=36)
