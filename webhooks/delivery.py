"""The delivery engine: claim due deliveries, send, record the attempt, schedule the next.

State of a delivery (``WebhookDelivery``):

* ``pending`` with ``next_attempt_at`` — due at that time;
* ``claimed_until`` — a worker is sending it; if the worker dies, the claim expires
  and the delivery becomes due again (at-least-once, same ``webhook-id``);
* ``dispatched_until`` — a Celery task was queued for it; the beat sweeper ignores it
  until then, and re-queues it afterwards if nobody delivered it (lost message,
  broker outage);
* ``succeeded`` or ``dead`` (dead letter: replayable).

Tasks and the ``deliver_webhooks`` command are thin wrappers over these functions.
"""

from __future__ import annotations

import logging
import math
import os
import random
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor, wait
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from uuid import UUID

from celery import Celery, current_app
from django.conf import settings
from django.db import connections, transaction
from django.db.models import BooleanField, Count, DateTimeField, ExpressionWrapper, F, Q, QuerySet, Value, Window
from django.db.models.functions import Coalesce, RowNumber
from django.utils import timezone
from django.utils.module_loading import import_string

from . import event_types, keys, retry, sender, signing
from .models import WebhookAttempt, WebhookDelivery, WebhookEndpoint

logger = logging.getLogger(__name__)

CLAIM_BATCH = 50
BACKLOG_SIGN = timedelta(seconds=1)
DISPATCH_CHUNK = 50


@dataclass(frozen=True)
class AttemptResult:
    delivery_id: UUID
    action: str  # retry.SUCCEEDED | RETRY | DEAD | DISABLE_ENDPOINT
    status_code: int | None
    error: str


def retry_policy() -> retry.RetryPolicy:
    return retry.RetryPolicy(
        max_attempts=settings.WEBHOOK_MAX_ATTEMPTS,
        base_seconds=settings.WEBHOOK_RETRY_BASE_SECONDS,
        factor=settings.WEBHOOK_RETRY_FACTOR,
        cap_seconds=settings.WEBHOOK_RETRY_CAP_SECONDS,
        jitter_percent=settings.WEBHOOK_RETRY_JITTER_PERCENT,
        max_retry_after_seconds=settings.WEBHOOK_MAX_RETRY_AFTER_SECONDS,
    )


@lru_cache(maxsize=4)
def _import_resolver(path: str):  # noqa: ANN202
    return import_string(path)


def resolver():  # noqa: ANN201
    path = settings.WEBHOOK_RESOLVER
    return _import_resolver(path) if path else None


def _relaxed_durability() -> None:
    """Inside a worker transaction: don't wait for the WAL flush at commit.

    Only delivery bookkeeping is committed this way. If the database crashed within
    the last few hundred milliseconds, a claim or an outcome could be lost; the
    delivery is then simply sent again (at-least-once, same webhook-id), never lost.
    The outbox rows themselves are written by the caller's transaction, untouched.
    """
    connection = transaction.get_connection()
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL synchronous_commit TO OFF")


def _circuit_closed(now: datetime, prefix: str = "endpoint__") -> Q:
    """The endpoint's circuit breaker lets deliveries through (closed, or open time over)."""
    return Q(**{f"{prefix}circuit_open_until__isnull": True}) | Q(**{f"{prefix}circuit_open_until__lte": now})


def _due_filter(now) -> Q:  # noqa: ANN001
    return (
        Q(status=WebhookDelivery.PENDING, next_attempt_at__lte=now)
        & Q(endpoint__is_active=True, endpoint__deleted_at__isnull=True)
        & _circuit_closed(now)
        & (Q(claimed_until__isnull=True) | Q(claimed_until__lt=now))
    )


def _fair_pick(candidates: QuerySet[WebhookDelivery], *, now: datetime, limit: int,
               taken: Sequence[WebhookDelivery] = ()) -> list[UUID]:
    """Which of ``candidates`` to claim, at most ``limit``: fair across services and endpoints.

    Services take turns (the oldest due delivery of each, then the second of each, ...),
    so a service with a large backlog or many slow endpoints cannot fill a batch that
    another service's deliveries are waiting behind. No endpoint gets more than
    WEBHOOK_ENDPOINT_MAX_IN_FLIGHT deliveries being sent at once (counting other
    workers' claims and ``taken``), and an endpoint whose last attempt failed, whose
    circuit was open or whose send is stalled gets a single one until an attempt
    succeeds. Read without locks; the caller locks what it picked with SKIP LOCKED, so
    a concurrent claimer at worst leaves an endpoint one or two over.
    """
    cap = max(1, settings.WEBHOOK_ENDPOINT_MAX_IN_FLIGHT)
    order = [F("next_attempt_at").asc(), F("id").asc()]
    rows = list(
        candidates.annotate(
            suspect=ExpressionWrapper(
                Q(endpoint__circuit_open_until__isnull=False) | Q(endpoint__consecutive_failures__gt=0),
                output_field=BooleanField()),
            endpoint_rank=Window(RowNumber(), partition_by=[F("endpoint_id")], order_by=order),
            service_rank=Window(RowNumber(), partition_by=[F("endpoint__service_id")], order_by=order),
        )
        .filter(endpoint_rank__lte=cap)
        .order_by("service_rank", "next_attempt_at", "id")
        .values_list("id", "endpoint_id", "suspect")[:limit * 2]
    )
    if not rows:
        return []
    # A send still running after a task's wait is a slow receiver: its endpoint is
    # treated like a failing one before the timeout even records a failure.
    slow_before = now - timedelta(seconds=settings.WEBHOOK_TASK_WAIT_SECONDS)
    busy: dict[UUID, int] = {}
    slow: set[UUID] = set()
    for endpoint_id, n, stalled in (
        WebhookDelivery.objects.filter(
            endpoint_id__in={r[1] for r in rows}, status=WebhookDelivery.PENDING, claimed_until__gt=now,
        ).values_list("endpoint_id")
        .annotate(n=Count("id"), stalled=Count("id", filter=Q(last_attempt_at__lt=slow_before)))
        .values_list("endpoint_id", "n", "stalled")
    ):
        busy[endpoint_id] = n
        if stalled:
            slow.add(endpoint_id)
    for d in taken:
        busy[d.endpoint_id] = busy.get(d.endpoint_id, 0) + 1
    picked: list[UUID] = []
    for delivery_id, endpoint_id, suspect in rows:
        # An endpoint whose last attempt failed (or whose circuit was open) gets one
        # delivery at a time until one succeeds: a probe, not a flood of timeouts.
        room = 1 if suspect or endpoint_id in slow else cap
        if busy.get(endpoint_id, 0) >= room:
            continue
        busy[endpoint_id] = busy.get(endpoint_id, 0) + 1
        picked.append(delivery_id)
        if len(picked) == limit:
            break
    return picked


def _lock_picked(ids: list[UUID], *, now: datetime) -> list[WebhookDelivery]:
    """Lock the picked deliveries that are still due and free, in the picked order."""
    if not ids:
        return []
    rows = {
        d.id: d for d in WebhookDelivery.objects.select_for_update(skip_locked=True, of=("self",))
        .select_related("event", "endpoint").filter(_due_filter(now), id__in=ids)
    }
    return [rows[i] for i in ids if i in rows]


def _lagging_exists(*, now: datetime) -> bool:
    """Is any delivery due for longer than ``BACKLOG_SIGN`` and not being sent?"""
    return WebhookDelivery.objects.filter(
        Q(claimed_until__isnull=True) | Q(claimed_until__lt=now), _circuit_closed(now),
        status=WebhookDelivery.PENDING, next_attempt_at__lte=now - BACKLOG_SIGN,
        endpoint__is_active=True, endpoint__deleted_at__isnull=True,
    ).exists()


def _other_due(*, due_by: datetime, now: datetime, exclude: list[UUID], limit: int,
               taken: Sequence[WebhookDelivery]) -> list[WebhookDelivery]:
    active = list(WebhookEndpoint.objects.filter(_circuit_closed(now, prefix=""), is_active=True,
                                                 deleted_at__isnull=True).values_list("id", flat=True))
    if not active:
        return []
    # Active endpoints are a short id list: no join to filter on them.
    qs = (
        WebhookDelivery.objects
        .filter(status=WebhookDelivery.PENDING, next_attempt_at__lte=due_by, endpoint_id__in=active)
        .filter(Q(claimed_until__isnull=True) | Q(claimed_until__lt=now))
    )
    if exclude:
        qs = qs.exclude(id__in=exclude)
    return _lock_picked(_fair_pick(qs, now=now, limit=limit, taken=taken), now=now)


def claim_due(
    *, delivery_ids: Sequence[UUID] | None = None, event_ids: Sequence[UUID] | None = None,
    exclude_ids: Iterable[UUID] = (), limit: int = CLAIM_BATCH, top_up: bool = False,
    known_backlog: bool = False, others_lagging: bool = False,
) -> list[WebhookDelivery]:
    """Atomically take due deliveries for this worker; concurrent callers never share one.

    With ``top_up``, a claim smaller than ``limit`` is filled with other due
    deliveries when a queue is building up: this task's own deliveries were created
    more than ``BACKLOG_SIGN`` ago (then any due delivery is taken), or
    ``others_lagging`` (then those due for longer than ``BACKLOG_SIGN``). One task
    then sends many, the tasks queued for those find nothing left, and the database
    work is batched.
    """
    now = timezone.now()
    exclude = list(exclude_ids)
    with transaction.atomic():
        _relaxed_durability()
        qs = WebhookDelivery.objects.filter(_due_filter(now))
        if exclude:
            qs = qs.exclude(id__in=exclude)
        if delivery_ids is not None:
            qs = qs.filter(id__in=list(delivery_ids))
        if event_ids is not None:
            # Resolve to ids first: with the locking query on primary keys the planner
            # cannot wander onto the due-time index, which is full of dead entries
            # after a burst until autovacuum catches up.
            ids = list(WebhookDelivery.objects.filter(event_id__in=list(event_ids)).values_list("id", flat=True))
            qs = qs.filter(id__in=ids)
        claimed = _lock_picked(_fair_pick(qs, now=now, limit=limit), now=now)
        # Topping up costs a scan of the due-time index; only worth it when this
        # task's own deliveries waited long enough to show a queue is building up.
        behind = known_backlog or (bool(claimed) and now - min(d.created_at for d in claimed) > BACKLOG_SIGN)
        if top_up and (behind or others_lagging) and len(claimed) < limit:
            claimed += _other_due(due_by=now if behind else now - BACKLOG_SIGN, now=now,
                                  exclude=exclude + [d.id for d in claimed], limit=limit - len(claimed),
                                  taken=claimed)
        if not claimed:
            return []
        # The batch is sent WEBHOOK_SEND_CONCURRENCY at a time: the lease must outlast
        # every round at full timeout, or a slow batch would be claimed twice.
        rounds = math.ceil(len(claimed) / max(1, settings.WEBHOOK_SEND_CONCURRENCY))
        lease = now + timedelta(
            seconds=settings.WEBHOOK_CLAIM_LEASE_SECONDS + settings.WEBHOOK_TIMEOUT_SECONDS * (rounds - 1))
        # A claim that expired without an outcome means the worker died mid-delivery.
        abandoned = [
            WebhookAttempt(
                delivery=d, attempt_number=d.attempts_count, replay_round=d.replay_count,
                outcome=WebhookAttempt.ABANDONED, started_at=d.last_attempt_at or now,
                error_kind="abandoned", error="worker stopped before recording the outcome; sent again",
            )
            for d in claimed if d.claimed_until is not None
        ]
        if abandoned:
            WebhookAttempt.objects.bulk_create(abandoned)
        # A delivery whose every attempt was abandoned (a receiver or payload that kills
        # the worker) must still end: after the last allowed attempt it is a dead letter.
        exhausted = [d.id for d in claimed
                     if d.claimed_until is not None and d.attempts_count >= settings.WEBHOOK_MAX_ATTEMPTS]
        if exhausted:
            WebhookDelivery.objects.filter(id__in=exhausted).update(
                status=WebhookDelivery.DEAD, dead_at=now, next_attempt_at=None, claimed_until=None,
                dispatched_until=None,
                last_error=f"gave up after {settings.WEBHOOK_MAX_ATTEMPTS} attempts: the worker stopped before "
                           "recording the outcome of the last one",
            )
            claimed = [d for d in claimed if d.id not in exhausted]
            if not claimed:
                return []
        WebhookDelivery.objects.filter(id__in=[d.id for d in claimed]).update(
            claimed_until=lease, dispatched_until=None, attempts_count=F("attempts_count") + 1,
            last_attempt_at=now,
        )
    for d in claimed:
        d.claimed_until = lease
        d.dispatched_until = None
        d.attempts_count += 1
        d.last_attempt_at = now
    return claimed


@dataclass
class _Sent:
    delivery: WebhookDelivery
    outcome: sender.AttemptOutcome
    started_at: datetime
    finished_at: datetime
    signed_ts: int


def _send_one_isolated(d: WebhookDelivery, options: dict, lago: signing.LagoSigner | None = None) -> _Sent:
    """``_send_one`` that never raises: whatever goes wrong is this delivery's failed attempt.

    One receiver (or one bug) must never cost the other deliveries of the batch their
    recorded outcome.
    """
    started_at = timezone.now()
    try:
        return _send_one(d, options, lago)
    except Exception as exc:
        logger.exception("webhook delivery %s: unexpected error while sending", d.id)
        finished_at = timezone.now()
        outcome = sender.AttemptOutcome(
            None, int((finished_at - started_at).total_seconds() * 1000), "", sender.KIND_INTERNAL,
            sender.storable_text(f"internal error while sending: {type(exc).__name__}: {exc}"[:500]),
        )
        return _Sent(d, outcome, started_at, finished_at, int(started_at.timestamp()))


def _send_one(d: WebhookDelivery, options: dict, lago: signing.LagoSigner | None = None) -> _Sent:
    """The HTTP part only (no database): safe to run in a thread."""
    event, endpoint = d.event, d.endpoint
    body = bytes(event.body)
    started_at = timezone.now()
    signed_ts = int(time.time())
    headers = signing.signature_headers(
        msg_id=event.webhook_id, timestamp=signed_ts, body=body, secrets=endpoint.signing_secrets(now=started_at),
        lago=lago,
    )
    outcome = sender.post_webhook(url=endpoint.url, body=body, headers=headers, **options)
    return _Sent(d, outcome, started_at, timezone.now(), signed_ts)


_pool: ThreadPoolExecutor | None = None
_pool_pid: int | None = None
# Sends a task left behind (still waiting for a slow receiver) in this process.
_detached = 0
_detached_lock = threading.Lock()


def _thread_pool() -> ThreadPoolExecutor:
    global _pool, _pool_pid
    # Created lazily per process: a pool inherited through fork() has no threads.
    if _pool is None or _pool_pid != os.getpid():
        # Room for the sends of the current batch plus the ones tasks left behind, so
        # that slow receivers never hold the threads another batch needs.
        _pool = ThreadPoolExecutor(
            max_workers=settings.WEBHOOK_SEND_CONCURRENCY + settings.WEBHOOK_MAX_DETACHED_SENDS,
            thread_name_prefix="webhook-send")
        _pool_pid = os.getpid()
    return _pool


def send_claimed(claimed: Sequence[WebhookDelivery], *, rng: random.Random | None = None,
                 wait_seconds: float | None = None) -> list[AttemptResult]:  # ok-float
    """Send claimed deliveries (concurrently), then record all outcomes in one transaction.

    With ``wait_seconds`` (Celery tasks), sends still running after that long are left
    to finish in this process's thread pool, each recording its own outcome, and the
    task returns: a slow receiver then holds one sending thread, never the worker
    process that other services' tasks are queued for. Without it (commands, tests)
    every outcome is recorded before returning.
    """
    if not claimed:
        return []
    options = {
        "allow_http_hosts": settings.WEBHOOK_ALLOW_HTTP_HOSTS, "resolver": resolver(),
        "allowed_ports": settings.WEBHOOK_ALLOWED_PORTS,
        "timeout": settings.WEBHOOK_TIMEOUT_SECONDS, "max_response_bytes": settings.WEBHOOK_MAX_RESPONSE_BYTES,
    }
    signers = keys.lago_signers({d.endpoint_id: d.endpoint for d in claimed}.values())
    if wait_seconds is None and (len(claimed) == 1 or settings.WEBHOOK_SEND_CONCURRENCY <= 1):
        sent = [_send_one_isolated(d, options, signers.get(d.endpoint_id)) for d in claimed]
    elif wait_seconds is None:
        sent = list(_thread_pool().map(lambda d: _send_one_isolated(d, options, signers.get(d.endpoint_id)),
                                       claimed))
    else:
        sent = _send_detaching_slow_ones(claimed, options, signers, wait_seconds=wait_seconds, rng=rng)
    policy = retry_policy()
    decisions = [_decide(s, policy, rng) for s in sent]
    _record(sent, decisions)
    results = []
    for s, decision in zip(sent, decisions, strict=True):
        if decision.action != retry.SUCCEEDED:
            logger.info("webhook delivery %s to endpoint %s: %s (%s)", s.delivery.id, s.delivery.endpoint_id,
                        decision.action, s.outcome.error or s.outcome.status_code)
        results.append(AttemptResult(s.delivery.id, decision.action, s.outcome.status_code, s.outcome.error))
    return results


def _send_detaching_slow_ones(claimed: Sequence[WebhookDelivery], options: dict,
                              signers: dict[UUID, signing.LagoSigner], *, wait_seconds: float,
                              rng: random.Random | None) -> list[_Sent]:  # ok-float
    """The sends done within ``wait_seconds``; the others record themselves when they end.

    Sends to an endpoint already known to fail are not waited for at all: most of them
    time out, and the task's worker process is wanted by other services' tasks.
    """
    global _detached
    futures = [_thread_pool().submit(_send_one_isolated, d, options, signers.get(d.endpoint_id)) for d in claimed]
    patient = [f for f, d in zip(futures, claimed, strict=True)
               if not (d.endpoint.consecutive_failures or d.endpoint.circuit_open_until)]
    if patient:
        wait(patient, timeout=wait_seconds)
    done = {f for f in futures if f.done()}
    pending = {f for f in futures if f not in done}
    if pending:
        with _detached_lock:
            room = _detached + len(pending) <= settings.WEBHOOK_MAX_DETACHED_SENDS
            if room:
                _detached += len(pending)
        if not room:  # too many left behind already: this task waits for its own
            wait(pending)
            done, pending = set(futures), set()
        for future in pending:
            future.add_done_callback(lambda f: _record_detached(f, rng))
    return [f.result() for f in futures if f in done]


def _record_detached(future: Future, rng: random.Random | None) -> None:
    """In the sending thread: record the outcome of a send its task left behind."""
    global _detached
    try:
        sent = future.result()
        _record([sent], [_decide(sent, retry_policy(), rng)])
    except Exception:  # the lease expires and the sweeper sends it again
        logger.exception("webhook delivery: the outcome of a detached send was not recorded")
    finally:
        # This pool thread may sit idle for long: it must not keep a database session.
        connections.close_all()
        with _detached_lock:
            _detached -= 1


def _decide(s: _Sent, policy: retry.RetryPolicy, rng: random.Random | None) -> retry.Decision:
    try:
        return retry.decide(outcome=s.outcome, attempts_made=s.delivery.attempts_count, now=s.finished_at,
                            policy=policy, rng=rng)
    except Exception:
        logger.exception("webhook delivery %s: no retry decision; the schedule applies", s.delivery.id)
        if s.delivery.attempts_count >= policy.max_attempts:
            return retry.Decision(retry.DEAD, reason=f"gave up after {s.delivery.attempts_count} attempts")
        return retry.Decision(retry.RETRY, s.finished_at + timedelta(seconds=policy.nominal_delay_seconds(
            max(1, s.delivery.attempts_count))))


def _record(sent: list[_Sent], decisions: list[retry.Decision]) -> None:
    """Record every outcome: the whole batch in one transaction (the hot path).

    If the database refuses that transaction, each delivery is recorded in its own, so
    one hostile outcome never costs the others theirs; a delivery whose full outcome is
    still refused gets a bare failed attempt, so it is released and retried (or
    dead-lettered) instead of staying claimed.
    """
    try:
        _record_batch(sent, decisions)
        return
    except Exception:
        if len(sent) == 1:
            logger.exception("webhook delivery %s: outcome refused by the database", sent[0].delivery.id)
        else:
            logger.exception("webhook batch of %d: outcomes refused; recording one by one", len(sent))
    for s, decision in zip(sent, decisions, strict=True):
        if len(sent) > 1:
            try:
                _record_batch([s], [decision])
                continue
            except Exception:
                logger.exception("webhook delivery %s: outcome refused by the database", s.delivery.id)
        bare = sender.AttemptOutcome(
            s.outcome.status_code if s.outcome.status_code is None or 0 <= s.outcome.status_code <= 999 else None,
            max(0, s.outcome.duration_ms), "", sender.KIND_INTERNAL,
            "the attempt's details could not be recorded (see the worker log)",
        )
        try:
            _record_batch([_Sent(s.delivery, bare, s.started_at, s.finished_at, s.signed_ts)], [decision])
        except Exception:  # the lease expires and the sweeper sends it again
            logger.exception("webhook delivery %s: even a bare outcome was refused", s.delivery.id)


def _record_batch(sent: list[_Sent], decisions: list[retry.Decision]) -> None:
    """One transaction: every attempt row, then each delivery moved on.

    Successes are updated with one statement per (claim, status code), since that is
    the hot path; failures carry per-row schedules and are updated one by one.
    """
    text = sender.storable_text
    attempts = []
    disable: dict[UUID, datetime] = {}
    succeeded: dict[tuple[datetime | None, int | None], list[UUID]] = {}
    others: list[tuple[WebhookDelivery, dict]] = []
    recorded_at = timezone.now()
    tally: dict[UUID, list[int]] = {}  # endpoint -> [successes, failures], for its circuit breaker
    for s, decision in zip(sent, decisions, strict=True):
        d, outcome = s.delivery, s.outcome
        if outcome.ok or outcome.error_kind != sender.KIND_INTERNAL:  # our own faults are not the receiver's
            tally.setdefault(d.endpoint_id, [0, 0])[0 if outcome.ok else 1] += 1
        attempts.append(WebhookAttempt(
            delivery=d, attempt_number=d.attempts_count, replay_round=d.replay_count,
            outcome=WebhookAttempt.SUCCEEDED if outcome.ok else WebhookAttempt.FAILED,
            started_at=s.started_at, duration_ms=outcome.duration_ms, status_code=outcome.status_code,
            error_kind=outcome.error_kind, error=text(outcome.error[:500]),
            response_excerpt=text(outcome.response_excerpt), signed_timestamp=s.signed_ts,
            connected_ip=outcome.connected_ip,
        ))
        if decision.action == retry.SUCCEEDED:
            succeeded.setdefault((d.claimed_until, outcome.status_code), []).append(d.id)
            continue
        changes: dict = {"claimed_until": None, "last_status_code": outcome.status_code,
                         "last_error": text(outcome.error[:500])}
        if decision.action == retry.RETRY:
            changes.update(next_attempt_at=decision.next_attempt_at, dispatched_until=None)
        else:
            changes.update(status=WebhookDelivery.DEAD, dead_at=s.finished_at, next_attempt_at=None,
                           last_error=text((decision.reason or outcome.error)[:500]))
        if decision.action == retry.DISABLE_ENDPOINT:
            disable[d.endpoint_id] = s.finished_at
        others.append((d, changes))
    with transaction.atomic():
        _relaxed_durability()
        WebhookAttempt.objects.bulk_create(attempts)
        for endpoint_id, at in disable.items():
            WebhookEndpoint.objects.filter(id=endpoint_id, is_active=True).update(
                is_active=False, disabled_reason="receiver answered 410 Gone", disabled_at=at,
            )
        # Only the holder of the current claim may move a delivery on.
        for (lease, status_code), ids in succeeded.items():
            WebhookDelivery.objects.filter(id__in=ids, claimed_until=lease).update(
                status=WebhookDelivery.SUCCEEDED, succeeded_at=recorded_at, next_attempt_at=None,
                claimed_until=None, last_status_code=status_code, last_error="",
            )
        for d, changes in others:
            WebhookDelivery.objects.filter(id=d.id, claimed_until=d.claimed_until).update(**changes)
        _update_breakers(tally, now=recorded_at)


def _update_breakers(tally: dict[UUID, list[int]], *, now: datetime) -> None:
    """Move each endpoint's circuit breaker on after a batch (inside its transaction).

    A success closes the circuit. Failures only: count them; from WEBHOOK_BREAKER_FAILURES
    in a row the circuit opens (WEBHOOK_BREAKER_OPEN_SECONDS, doubling per further
    failure, capped), and an endpoint that has not succeeded for
    WEBHOOK_BREAKER_DISABLE_AFTER_HOURS is disabled, with a notice to its service.
    """
    recovered = [endpoint_id for endpoint_id, (good, _bad) in tally.items() if good]
    if recovered:
        WebhookEndpoint.objects.filter(id__in=recovered).filter(
            Q(consecutive_failures__gt=0) | Q(failing_since__isnull=False) | Q(circuit_open_until__isnull=False)
        ).update(consecutive_failures=0, failing_since=None, circuit_open_until=None)
    failing = {endpoint_id: bad for endpoint_id, (good, bad) in tally.items() if bad and not good}
    if not failing or settings.WEBHOOK_BREAKER_FAILURES <= 0:  # 0 turns the breaker off
        return
    for endpoint_id, bad in failing.items():
        WebhookEndpoint.objects.filter(id=endpoint_id).update(
            consecutive_failures=F("consecutive_failures") + bad,
            failing_since=Coalesce(F("failing_since"), Value(now, output_field=DateTimeField())),
        )
    disable_before = now - timedelta(hours=settings.WEBHOOK_BREAKER_DISABLE_AFTER_HOURS)
    tripped = WebhookEndpoint.objects.select_related("service").filter(
        id__in=list(failing), is_active=True, consecutive_failures__gte=settings.WEBHOOK_BREAKER_FAILURES)
    for endpoint in tripped:
        if endpoint.failing_since is not None and endpoint.failing_since <= disable_before:
            _disable_failing_endpoint(endpoint, now=now)
            continue
        beyond = endpoint.consecutive_failures - settings.WEBHOOK_BREAKER_FAILURES
        seconds = min(settings.WEBHOOK_BREAKER_MAX_OPEN_SECONDS,
                      settings.WEBHOOK_BREAKER_OPEN_SECONDS * 2 ** min(beyond, 20))
        WebhookEndpoint.objects.filter(id=endpoint.id).update(circuit_open_until=now + timedelta(seconds=seconds))
        logger.warning("webhook endpoint %s: circuit open for %d s after %d failed attempts in a row",
                       endpoint.id, seconds, endpoint.consecutive_failures)


def _disable_failing_endpoint(endpoint: WebhookEndpoint, *, now: datetime) -> None:
    from . import services  # services queues deliveries through this module

    hours = int((now - endpoint.failing_since).total_seconds() // 3600) if endpoint.failing_since else 0
    reason = (f"circuit breaker: {endpoint.consecutive_failures} failed attempts in a row over {hours} h "
              "without a success")
    if not WebhookEndpoint.objects.filter(id=endpoint.id, is_active=True).update(
            is_active=False, disabled_reason=reason, disabled_at=now, circuit_open_until=None):
        return
    logger.warning("webhook endpoint %s disabled: %s", endpoint.id, reason)
    # The disabled endpoint no longer receives anything; the service's other endpoints
    # (subscribed to this type) get the notice, ops see it in the admin and /ops/health.
    services.record_event(
        service=endpoint.service, webhook_type=event_types.WebhookType.WEBHOOK_ENDPOINT_DISABLED,
        object_type="webhook_endpoint",
        payload={
            "lago_id": str(endpoint.id), "webhook_url": endpoint.url, "name": endpoint.name,
            "disabled_reason": reason, "disabled_at": now, "failing_since": endpoint.failing_since,
            "consecutive_failures": endpoint.consecutive_failures,
        },
    )


def deliver(
    *, delivery_ids: Sequence[UUID] | None = None, event_ids: Sequence[UUID] | None = None,
    limit: int = CLAIM_BATCH, top_up: bool = False, wait_seconds: float | None = None,  # ok-float
) -> list[AttemptResult]:
    """Claim what is due among the given deliveries (or of the given events) and send each once.

    Claims in batches of ``limit`` until none is left (events can have several endpoints).
    """
    results: list[AttemptResult] = []
    backlog = False
    while True:
        lagging = False
        if not backlog:
            # Cheap checks first: after a backlog was drained by topped-up claims, the
            # queue still holds a message per transaction; those must cost little, yet
            # still pick up anything that is stuck behind them.
            lagging = top_up and _lagging_exists(now=timezone.now())
            if not lagging and not _own_pending(delivery_ids=delivery_ids, event_ids=event_ids):
                return results
        claimed = claim_due(delivery_ids=delivery_ids, event_ids=event_ids, limit=limit, top_up=top_up,
                            known_backlog=backlog, others_lagging=lagging)
        results += send_claimed(claimed, wait_seconds=wait_seconds)
        if not claimed:
            # Own deliveries still due were held back (their endpoint has its fill in
            # flight elsewhere): the sweeper queues them again instead of waiting the grace.
            _release_own_due(delivery_ids=delivery_ids, event_ids=event_ids)
            return results
        if len(claimed) < limit:
            if _own_due_exists(delivery_ids=delivery_ids, event_ids=event_ids):
                backlog = False
                continue  # held back by the in-flight cap: its slots are free again now
            return results
        # A full batch: with ``top_up`` keep draining the backlog while it lasts.
        backlog = top_up


def _own_due(*, delivery_ids: Sequence[UUID] | None, event_ids: Sequence[UUID] | None) -> QuerySet[WebhookDelivery]:
    qs = WebhookDelivery.objects.filter(_due_filter(timezone.now()))
    if delivery_ids is not None:
        qs = qs.filter(id__in=list(delivery_ids))
    if event_ids is not None:
        qs = qs.filter(event_id__in=list(event_ids))
    return qs


def _own_due_exists(*, delivery_ids: Sequence[UUID] | None, event_ids: Sequence[UUID] | None) -> bool:
    return _own_due(delivery_ids=delivery_ids, event_ids=event_ids).exists()


def _release_own_due(*, delivery_ids: Sequence[UUID] | None, event_ids: Sequence[UUID] | None) -> None:
    if delivery_ids is None and event_ids is None:
        return
    ids = list(_own_due(delivery_ids=delivery_ids, event_ids=event_ids)
               .filter(dispatched_until__isnull=False).values_list("id", flat=True))
    if ids:
        WebhookDelivery.objects.filter(id__in=ids).update(dispatched_until=None)


def _own_pending(*, delivery_ids: Sequence[UUID] | None, event_ids: Sequence[UUID] | None) -> bool:
    qs = WebhookDelivery.objects.filter(status=WebhookDelivery.PENDING)
    if delivery_ids is not None:
        qs = qs.filter(id__in=list(delivery_ids))
    if event_ids is not None:
        qs = qs.filter(event_id__in=list(event_ids))
    return qs.exists()


def deliver_all_due(*, max_deliveries: int | None = None) -> list[AttemptResult]:
    """Send everything due now, each delivery at most once (``deliver_webhooks``)."""
    results: list[AttemptResult] = []
    attempted: list[UUID] = []
    while max_deliveries is None or len(results) < max_deliveries:
        batch = CLAIM_BATCH if max_deliveries is None else min(CLAIM_BATCH, max_deliveries - len(results))
        claimed = claim_due(exclude_ids=attempted, limit=batch)
        if not claimed:
            break
        attempted += [d.id for d in claimed]
        results += send_claimed(claimed)
    return results


# --- dispatch to Celery -----------------------------------------------------------

_publisher = threading.local()


def celery_app() -> Celery:
    """The process's Celery app (the composition root's); a seam for tests that point
    publishing at another broker. Looked up, not imported: webhooks sits below the root."""
    return current_app._get_current_object()


def _fail_fast_connection():  # noqa: ANN202
    """A broker connection that gives up at once instead of retrying for seconds.

    Publishing happens after commit inside API requests: a broker outage must not
    stall them. The outbox rows stay pending and the sweeper queues them later.
    """
    app = celery_app()
    conn = getattr(_publisher, "conn", None)
    if conn is None or getattr(_publisher, "app", None) is not app or getattr(_publisher, "pid", None) != os.getpid():
        options = {**(app.conf.broker_transport_options or {}), "max_retries": 0}
        conn = app.connection_for_write(transport_options=options, connect_timeout=2)
        _publisher.conn, _publisher.app, _publisher.pid = conn, app, os.getpid()
    return conn


def _drop_publisher_connection() -> None:
    conn = getattr(_publisher, "conn", None)
    _publisher.conn = None
    if conn is not None:
        try:
            conn.release()
        except Exception:  # noqa: S110 - it is already broken
            pass


def _enqueue(task_name: str, args: list) -> bool:
    # Two tries: the first may hit a connection the broker closed (e.g. a restart).
    for attempt in (1, 2):
        try:
            celery_app().send_task(task_name, args=args, retry=False, connection=_fail_fast_connection())
            return True
        except Exception as exc:  # any broker failure: the outbox rows are the source of truth
            _drop_publisher_connection()
            if attempt == 2:
                logger.warning("webhook dispatch deferred to the sweeper (%s: %s)", type(exc).__name__, exc)
    return False


def dispatch_events(event_ids: Sequence[UUID]) -> bool:
    """After commit: queue delivery of new events (or leave them to the sweeper)."""
    ok = True
    for start in range(0, len(event_ids), DISPATCH_CHUNK):
        part = list(event_ids[start:start + DISPATCH_CHUNK])
        if ok and _enqueue("webhooks.tasks.deliver_events", [[str(i) for i in part]]):
            continue
        ok = False
        WebhookDelivery.objects.filter(event_id__in=part, status=WebhookDelivery.PENDING).update(
            dispatched_until=None)
    return ok


class _CommitBatch:
    """The events recorded in one transaction, dispatched together after its commit."""

    def __init__(self) -> None:
        self.event_ids: list[UUID] = []

    def __call__(self) -> None:
        dispatch_events(self.event_ids)


def dispatch_after_commit(event_id: UUID) -> None:
    connection = transaction.get_connection()
    if connection.in_atomic_block:
        # One Celery message per transaction, not per event. ``run_on_commit`` holds
        # (savepoint ids, callback, robust) tuples; a batch registered in a savepoint
        # that rolled back is gone from it, and a new one is started.
        for _sids, callback, _robust in connection.run_on_commit:
            if isinstance(callback, _CommitBatch):
                callback.event_ids.append(event_id)
                return
    batch = _CommitBatch()
    batch.event_ids.append(event_id)
    transaction.on_commit(batch, robust=True)


def dispatch_deliveries(delivery_ids: Sequence[UUID]) -> bool:
    if not delivery_ids:
        return True
    ids = [str(i) for i in delivery_ids]
    if _enqueue("webhooks.tasks.deliver_deliveries", [ids]):
        return True
    WebhookDelivery.objects.filter(id__in=list(delivery_ids)).update(dispatched_until=None)
    return False


def sweep_due(*, limit: int | None = None, chunk: int = DISPATCH_CHUNK) -> int:
    """Queue a task for every due delivery nobody is handling. Returns how many were queued."""
    now = timezone.now()
    limit = limit or settings.WEBHOOK_SWEEP_BATCH
    grace = now + timedelta(seconds=settings.WEBHOOK_DISPATCH_GRACE_SECONDS)
    with transaction.atomic():
        ids = list(
            WebhookDelivery.objects.select_for_update(skip_locked=True, of=("self",))
            .filter(_due_filter(now))
            .filter(Q(dispatched_until__isnull=True) | Q(dispatched_until__lt=now))
            .order_by("next_attempt_at")
            .values_list("id", flat=True)[:limit]
        )
        if ids:
            WebhookDelivery.objects.filter(id__in=ids).update(dispatched_until=grace)
    queued = 0
    for start in range(0, len(ids), chunk):
        part = ids[start:start + chunk]
        if not dispatch_deliveries(part):
            # Broker down: release the rest too so the next sweep retries them at once.
            WebhookDelivery.objects.filter(id__in=ids[start:]).update(dispatched_until=None)
            break
        queued += len(part)
    return queued
