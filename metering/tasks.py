"""Celery tasks of the rating engine (queue ``rating``); thin wrappers over metering.rating."""

from __future__ import annotations

from uuid import UUID

from celery import shared_task
from django.conf import settings

from metering import rating


@shared_task(name="metering.tasks.rate_open_windows", ignore_result=True)
def rate_open_windows(service_code: str | None = None) -> dict:
    summary = rating.rate_open_windows(
        service_code=service_code, chunk_size=getattr(settings, "RATING_CHUNK_SIZE", rating.DEFAULT_CHUNK_SIZE)
    )
    return {
        "subscriptions": summary.subscriptions,
        "rows_created": summary.rows_created,
        "rows_updated": summary.rows_updated,
        "windows_closed": summary.windows_closed,
    }


@shared_task(name="metering.tasks.rate_subscription", ignore_result=True)
def rate_subscription(subscription_id: str) -> dict:
    summary = rating.rate_subscription(subscription_id=UUID(str(subscription_id)))
    return {
        "subscriptions": summary.subscriptions,
        "rows_created": summary.rows_created,
        "rows_updated": summary.rows_updated,
        "windows_closed": summary.windows_closed,
    }
