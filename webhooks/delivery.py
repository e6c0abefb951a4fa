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
import random
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from functools import lru_cache
from uuid import UUID

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone
from django.utils.module_loading import import_string

from . import retry, sender, signing
from .models import WebhookAttempt, WebhookDelivery, WebhookEndpoint

logger = logging.getLogger(__name__)

CLAIM_BATCH = 100


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


def _due_filter(now) -> Q:  # noqa: ANN001
    return (
        Q(status=WebhookDelivery.PENDING, next_attempt_at__lte=now)
        & Q(endpoint__is_active=True, endpoint__deleted_at__isnull=True)
        & (Q(claimed_until__isnull=True) | Q(claimed_until__lt=now))
    )


def claim_due(
    *, delivery_ids: Sequence[UUID] | None = None, event_id: UUID | None = None,
    exclude_ids: Iterable[UUID] = (), limit: int = CLAIM_BATCH,
) -> list[WebhookDelivery]:
    """Atomically take due deliveries for this worker; concurrent callers never share one."""
    now = timezone.now()
    lease = now + timedelta(seconds=settings.WEBHOOK_CLAIM_LEASE_SECONDS)
    with transaction.atomic():
        qs = (
            WebhookDelivery.objects.select_for_update(skip_locked=True, of=("self",))
            .select_related("event", "endpoint", "endpoint__service")
            .filter(_due_filter(now))
        )
        if delivery_ids is not None:
            qs = qs.filter(id__in=list(delivery_ids))
        if event_id is not None:
            qs = qs.filter(event_id=event_id)
        exclude = list(exclude_ids)
        if exclude:
            qs = qs.exclude(id__in=exclude)
        claimed = list(qs.order_by("next_attempt_at")[:limit])
        if not claimed:
            return []
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
        WebhookDelivery.objects.filter(id__in=[d.id for d in claimed]).update(
            claimed_until=lease, dispatched_until=None, attempts_count=F("attempts_count") + 1,
            last_attempt_at=now,
        )
    for d in claimed:
        d.claimed_until = lease
        d.attempts_count += 1
        d.last_attempt_at = now
    return claimed


def send_claimed(delivery: WebhookDelivery, *, rng: random.Random | None = None) -> AttemptResult:
    """Send one claimed delivery and record the outcome."""
    event, endpoint = delivery.event, delivery.endpoint
    body = bytes(event.body)
    started_at = timezone.now()
    signed_ts = int(time.time())
    headers = signing.signature_headers(
        msg_id=event.webhook_id, timestamp=signed_ts, body=body,
        secrets=endpoint.signing_secrets(now=started_at),
    )
    outcome = sender.post_webhook(
        url=endpoint.url, body=body, headers=headers,
        allow_http_hosts=settings.WEBHOOK_ALLOW_HTTP_HOSTS, resolver=resolver(),
        timeout=settings.WEBHOOK_TIMEOUT_SECONDS, max_response_bytes=settings.WEBHOOK_MAX_RESPONSE_BYTES,
    )
    finished_at = timezone.now()
    decision = retry.decide(
        outcome=outcome, attempts_made=delivery.attempts_count, now=finished_at, policy=retry_policy(), rng=rng,
    )
    _record(delivery=delivery, outcome=outcome, decision=decision, started_at=started_at,
            finished_at=finished_at, signed_ts=signed_ts)
    if decision.action != retry.SUCCEEDED:
        logger.info(
            "webhook delivery %s to endpoint %s: %s (%s)",
            delivery.id, endpoint.id, decision.action, outcome.error or outcome.status_code,
        )
    return AttemptResult(delivery.id, decision.action, outcome.status_code, outcome.error)


def _record(*, delivery, outcome, decision, started_at, finished_at, signed_ts) -> None:  # noqa: ANN001
    with transaction.atomic():
        WebhookAttempt.objects.create(
            delivery=delivery, attempt_number=delivery.attempts_count, replay_round=delivery.replay_count,
            outcome=WebhookAttempt.SUCCEEDED if outcome.ok else WebhookAttempt.FAILED,
            started_at=started_at, duration_ms=outcome.duration_ms, status_code=outcome.status_code,
            error_kind=outcome.error_kind, error=outcome.error[:500],
            response_excerpt=outcome.response_excerpt, signed_timestamp=signed_ts,
            connected_ip=outcome.connected_ip,
        )
        changes: dict = {
            "claimed_until": None, "last_status_code": outcome.status_code, "last_error": outcome.error[:500],
        }
        if decision.action == retry.SUCCEEDED:
            changes.update(status=WebhookDelivery.SUCCEEDED, succeeded_at=finished_at, next_attempt_at=None)
        elif decision.action == retry.RETRY:
            changes.update(next_attempt_at=decision.next_attempt_at, dispatched_until=None)
        else:
            changes.update(status=WebhookDelivery.DEAD, dead_at=finished_at, next_attempt_at=None,
                           last_error=(decision.reason or outcome.error)[:500])
        if decision.action == retry.DISABLE_ENDPOINT:
            WebhookEndpoint.objects.filter(id=delivery.endpoint_id, is_active=True).update(
                is_active=False, disabled_reason="receiver answered 410 Gone", disabled_at=finished_at,
            )
        # Only the holder of the current claim may move the delivery on.
        WebhookDelivery.objects.filter(id=delivery.id, claimed_until=delivery.claimed_until).update(**changes)


def deliver(
    *, delivery_ids: Sequence[UUID] | None = None, event_id: UUID | None = None, limit: int = CLAIM_BATCH,
) -> list[AttemptResult]:
    """Claim what is due among the given deliveries (or of one event) and send each once."""
    return [send_claimed(d) for d in claim_due(delivery_ids=delivery_ids, event_id=event_id, limit=limit)]


def deliver_all_due(*, max_deliveries: int | None = None) -> list[AttemptResult]:
    """Send everything due now, each delivery at most once (``deliver_webhooks``)."""
    results: list[AttemptResult] = []
    attempted: list[UUID] = []
    while max_deliveries is None or len(results) < max_deliveries:
        batch = CLAIM_BATCH if max_deliveries is None else min(CLAIM_BATCH, max_deliveries - len(results))
        claimed = claim_due(exclude_ids=attempted, limit=batch)
        if not claimed:
            break
        for d in claimed:
            attempted.append(d.id)
            results.append(send_claimed(d))
    return results


# --- dispatch to Celery -----------------------------------------------------------

_publisher = threading.local()


def celery_app():  # noqa: ANN201 - a seam for tests that point the app at another broker
    from billing_project.celery import app

    return app


def _fail_fast_connection():  # noqa: ANN202
    """A broker connection that gives up at once instead of retrying for seconds.

    Publishing happens after commit inside API requests: a broker outage must not
    stall them. The outbox rows stay pending and the sweeper queues them later.
    """
    app = celery_app()
    conn = getattr(_publisher, "conn", None)
    if conn is None or getattr(_publisher, "app", None) is not app:
        options = {**(app.conf.broker_transport_options or {}), "max_retries": 0}
        conn = app.connection_for_write(transport_options=options, connect_timeout=2)
        _publisher.conn, _publisher.app = conn, app
    return conn


def _enqueue(task_name: str, args: list) -> bool:
    try:
        celery_app().send_task(task_name, args=args, retry=False, connection=_fail_fast_connection())
    except Exception as exc:  # any broker failure: the outbox rows are the source of truth
        conn = getattr(_publisher, "conn", None)
        _publisher.conn = None
        if conn is not None:
            try:
                conn.release()
            except Exception:  # noqa: S110 - already broken
                pass
        logger.warning("webhook dispatch deferred to the sweeper (%s: %s)", type(exc).__name__, exc)
        return False
    return True


def dispatch_event(event_id: UUID) -> bool:
    """After commit: queue delivery of a new event (or leave it to the sweeper)."""
    if _enqueue("webhooks.tasks.deliver_event", [str(event_id)]):
        return True
    WebhookDelivery.objects.filter(event_id=event_id, status=WebhookDelivery.PENDING).update(dispatched_until=None)
    return False


def dispatch_deliveries(delivery_ids: Sequence[UUID]) -> bool:
    if not delivery_ids:
        return True
    ids = [str(i) for i in delivery_ids]
    if _enqueue("webhooks.tasks.deliver_deliveries", [ids]):
        return True
    WebhookDelivery.objects.filter(id__in=list(delivery_ids)).update(dispatched_until=None)
    return False


def sweep_due(*, limit: int | None = None, chunk: int = 50) -> int:
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
