"""Celery tasks of metering: thin wrappers over its services.

Rating runs on the ``rating`` queue (the ``metering.tasks.*`` route); starting due
subscriptions is routed to the default queue explicitly (see CELERY_TASK_ROUTES).
"""

from __future__ import annotations

from uuid import UUID

from celery import shared_task
from django.conf import settings

from metering import lifecycle, rating, services
from metering.services import partitions


@shared_task(name="metering.tasks.rate_open_windows", ignore_result=True)
def rate_open_windows(service_code: str | None = None) -> dict[str, int]:
    """Beat entry point: with RATING_SHARDS > 1, fan out one task per slice of subscriptions."""
    # Lifecycle at an instant first: subscriptions whose ending_at has come end there, and
    # pending downgrades whose window ended swap, so rating never rolls them over.
    lifecycle.terminate_ended_subscriptions()
    lifecycle.apply_due_downgrades()
    lifecycle.finish_plan_deletions()
    shards = settings.RATING_SHARDS
    if shards > 1:
        for index in range(shards):
            rate_open_windows_shard.delay(service_code, index, shards)
        return {"shards": shards}
    return rate_open_windows_shard(service_code, 0, 1)


@shared_task(name="metering.tasks.rate_open_windows_shard", ignore_result=True)
def rate_open_windows_shard(service_code: str | None, index: int, count: int) -> dict[str, int]:
    return _counts(rating.rate_open_windows(
        service_code=service_code,
        chunk_size=settings.RATING_CHUNK_SIZE,
        shard=None if count == 1 else (index, count),
    ))


@shared_task(name="metering.tasks.rate_subscription", ignore_result=True)
def rate_subscription(subscription_id: str) -> dict[str, int]:
    return _counts(rating.rate_subscription(subscription_id=UUID(str(subscription_id))))


def _counts(summary: rating.RatingSummary) -> dict[str, int]:
    return {
        "subscriptions": summary.subscriptions,
        "rows_created": summary.rows_created,
        "rows_updated": summary.rows_updated,
        "windows_closed": summary.windows_closed,
    }


@shared_task(name="metering.tasks.activate_due_subscriptions")
def activate_due_subscriptions() -> int:
    """Start pending subscriptions whose subscription_at has come (emits subscription.started)."""
    return services.activate_due_subscriptions()


@shared_task(name="metering.tasks.terminate_ended_subscriptions")
def terminate_ended_subscriptions() -> int:
    """Terminate active subscriptions whose ending_at has come, at ending_at (emits
    subscription.terminated; their final window is closed in the same transaction)."""
    return lifecycle.terminate_ended_subscriptions()


@shared_task(name="metering.tasks.apply_due_downgrades")
def apply_due_downgrades() -> int:
    """Swap pending downgrades whose window has ended (also run before each rating run)."""
    return lifecycle.apply_due_downgrades()


@shared_task(name="metering.tasks.end_trials")
def end_trials() -> int:
    """Record ended trials (trial_ended_at) and emit subscription.trial_ended."""
    return services.end_trials()


@shared_task(name="metering.tasks.ensure_event_partitions", ignore_result=True)
def ensure_event_partitions() -> list[str]:
    """Beat: the usage-event partitions of this month and the next ones exist."""
    return partitions.ensure_event_partitions()


@shared_task(name="metering.tasks.archive_event_partitions", ignore_result=True)
def archive_event_partitions() -> list[dict]:
    """Beat: the retention policy (EVENTS_RETENTION_MONTHS) over the usage-event partitions."""
    return [outcome.as_dict() for outcome in partitions.archive_event_partitions()]


@shared_task(name="metering.tasks.finish_plan_deletions")
def finish_plan_deletions() -> int:
    """Queued by DELETE /plans/{code}: end the subscriptions of plans pending deletion, then
    discard them (each rating run does it too)."""
    return lifecycle.finish_plan_deletions()


@shared_task(name="metering.tasks.send_termination_alerts")
def send_termination_alerts() -> int:
    """subscription.termination_alert N days before ending_at (Lago's clock job)."""
    return services.send_termination_alerts()


@shared_task(name="metering.tasks.report_event_errors", ignore_result=True)
def report_event_errors() -> int:
    """Lago's events.errors: one webhook per lenient service listing the events kept unmatched
    since the last run (metering.services.lenient)."""
    return services.report_event_errors()
