"""The lock protocol between ingest and rating, ingest's side.

Rating locks a chunk's subscriptions ``FOR NO KEY UPDATE`` and, to close a window,
``FOR UPDATE`` (``metering.rating``). Ingest takes ``FOR KEY SHARE`` on the subscriptions
it stores events for, as the usage-event foreign key does anyway: that never blocks
ordinary rating, but conflicts with closing a window. So an event is either committed
before the final rating reads its window, or sees the advanced window and is refused
with ``period_closed``. Locks are always taken in subscription-id order.
"""
from __future__ import annotations

from datetime import datetime
from typing import Iterable
from uuid import UUID

from django.db import connection

from metering.models import Subscription
from metering.windows import closed_before


def lock_subscriptions_for_ingest(*, subscription_ids: Iterable[UUID]) -> dict[UUID, datetime | None]:
    """Lock subscriptions ``FOR KEY SHARE`` (id order) and return, per id, the
    instant before which events are refused as ``period_closed``
    (``metering.windows.closed_before``).

    Call inside the ingest transaction, before inserting: a window that rating
    is closing is then either fully closed (the advanced start is returned) or
    waits for this transaction's events. ``None`` means the subscription has no
    window yet (nothing is closed).
    """
    ids = sorted(set(subscription_ids))
    if not ids:
        return {}
    if connection.vendor == "postgresql":
        # Django has no FOR KEY SHARE; it is what the usage-event foreign key
        # takes anyway, so it never blocks ordinary rating (FOR NO KEY UPDATE).
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT id, current_period_start, usage_frozen_until FROM {Subscription._meta.db_table}"
                " WHERE id = ANY(%s) ORDER BY id FOR KEY SHARE",
                [ids],
            )
            rows = cursor.fetchall()
    else:
        rows = list(
            Subscription.objects.filter(id__in=ids).order_by("id")
            .values_list("id", "current_period_start", "usage_frozen_until")
        )
    return {sub_id: closed_before(period_start=start, frozen_until=frozen_until)
            for sub_id, start, frozen_until in rows}
