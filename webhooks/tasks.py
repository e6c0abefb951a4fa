"""Celery tasks (queue ``webhooks``): thin wrappers over ``webhooks.delivery``."""

from __future__ import annotations

from uuid import UUID

from celery import shared_task
from django.conf import settings

from . import delivery


@shared_task(name="webhooks.tasks.deliver_events", ignore_result=True)
def deliver_events(event_ids: list[str]) -> int:
    """Deliver freshly committed events (queued on commit)."""
    return len(delivery.deliver(event_ids=[UUID(i) for i in event_ids], top_up=True,
                                wait_seconds=settings.WEBHOOK_TASK_WAIT_SECONDS))


@shared_task(name="webhooks.tasks.deliver_deliveries", ignore_result=True)
def deliver_deliveries(delivery_ids: list[str]) -> int:
    """Deliver the given deliveries if they are still due (sweeper, replay)."""
    return len(delivery.deliver(delivery_ids=[UUID(i) for i in delivery_ids],
                                wait_seconds=settings.WEBHOOK_TASK_WAIT_SECONDS))


@shared_task(name="webhooks.tasks.sweep_due_deliveries", ignore_result=True)
def sweep_due_deliveries() -> int:
    """Beat: queue every due delivery nobody is handling (retries, lost messages, broker outages)."""
    return delivery.sweep_due()
