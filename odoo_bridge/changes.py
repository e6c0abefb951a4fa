"""The push's change log: which subscriptions a cycle must examine (``OdooPushChange``).

Triggers (migration ``odoo_bridge.0007``) append a row in the same transaction as every
change of what Odoo must hold; this module is the rest of the log's life:

- ``take_chunk``: the next chunk of subscriptions with a due change, in id order, with the
  ids of the rows taken;
- ``settle``: after the chunk was pushed, delete exactly the rows taken (a change committed
  meanwhile has a row of its own and stays), and append a row for each subscription that is
  not settled yet (a retry after its backoff, an order waiting for Odoo's cron);
- ``enqueue``: the push's own rows (resync, retries); ``enqueue_all``: the full sweep (every
  subscription the old walk examined), the safety net run daily by beat.

PostgreSQL only, like the sync itself.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any, Iterable

from django.db import connection
from django.db.models import QuerySet
from django.utils import timezone

from identity.models import AccountLink
from metering.models import Charge, PlanFee, RatedUsage, Subscription, SubscriptionMode

from .models import OdooPushChange, OdooSyncState, SyncKind

TABLE = OdooPushChange._meta.db_table

Chunk = list[tuple[uuid.UUID, list[int]]]
# The due_at of a change to examine at once, whatever clock the cycle runs on (the triggers write it too):
# only a retry carries a real date (its backoff, on the cycle's clock).
AT_ONCE = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)


def take_chunk(*, now: dt.datetime, after: uuid.UUID | None, limit: int) -> Chunk:
    """Up to ``limit`` subscriptions with a change due at ``now``, after ``after`` in id order."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT subscription_id, array_agg(id ORDER BY id) FROM {TABLE} "
            "WHERE due_at <= %s AND (%s::uuid IS NULL OR subscription_id > %s::uuid) "
            "GROUP BY subscription_id ORDER BY subscription_id LIMIT %s",
            [now, after, after, limit])
        return [(row[0], list(row[1])) for row in cursor.fetchall()]


def settle(*, taken: Iterable[int], requeue: dict[Any, dt.datetime], reasons: dict[Any, str] | None = None,
           now: dt.datetime | None = None) -> None:
    """Delete the rows taken; append one row per subscription of ``requeue`` (due at its date)."""
    ids = list(taken)
    if ids:
        OdooPushChange.objects.filter(pk__in=ids).delete()
    if requeue:
        enqueue_many({sub: (due, (reasons or {}).get(sub, "retry")) for sub, due in requeue.items()}, now=now)


def enqueue(subscription_ids: Iterable[Any], *, reason: str, due_at: dt.datetime | None = None) -> int:
    return enqueue_many({sid: (due_at or AT_ONCE, reason) for sid in subscription_ids})


def enqueue_many(rows: dict[Any, tuple[dt.datetime, str]], *, now: dt.datetime | None = None) -> int:
    now = now or timezone.now()
    OdooPushChange.objects.bulk_create([
        OdooPushChange(subscription_id=sid, reason=reason[:32], due_at=due, created_at=now)
        for sid, (due, reason) in rows.items()], batch_size=1000)
    return len(rows)


def enqueue_all(subscriptions: QuerySet[Subscription], *, reason: str = "full sweep") -> int:
    """One row per subscription of ``subscriptions`` (the push's own selection), in one statement."""
    now = timezone.now()
    sql, params = subscriptions.order_by().values("pk").query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute(f"INSERT INTO {TABLE} (subscription_id, reason, due_at, created_at) "
                       f"SELECT u.id, %s, %s, %s FROM ({sql}) AS u(id)", [reason, AT_ONCE, now, *params])
        return cursor.rowcount


def pending(*, now: dt.datetime) -> int:
    """Subscriptions with a change due (what a cycle would examine)."""
    return OdooPushChange.objects.filter(due_at__lte=now).values("subscription_id").distinct().count()


def subscriptions_of_states(states: Iterable[OdooSyncState]) -> set[Any]:
    """The live subscriptions whose push a sync state row is part of (for resync)."""
    by_kind: dict[str, list[str]] = {}
    for state in states:
        by_kind.setdefault(state.kind, []).append(state.object_id)
    live = Subscription.objects.filter(mode=SubscriptionMode.LIVE)
    found: set[Any] = set()

    def ids(qs: QuerySet[Any], field: str = "pk") -> None:
        found.update(qs.values_list(field, flat=True))

    for kind, object_ids in by_kind.items():
        if kind == SyncKind.SUBSCRIPTION:
            ids(live.filter(pk__in=object_ids))
        elif kind == SyncKind.USAGE:
            ids(RatedUsage.objects.filter(pk__in=object_ids), "subscription_id")
        elif kind == SyncKind.PLAN_FEE:
            ids(PlanFee.objects.filter(pk__in=object_ids), "subscription_id")
        elif kind == SyncKind.CUSTOMER:
            ids(live.filter(account_link__customer_id__in=object_ids))
        elif kind == SyncKind.ACCOUNT:
            ids(live.filter(account_link_id__in=AccountLink.objects.filter(pk__in=object_ids).values("pk")))
        elif kind in (SyncKind.PLAN, SyncKind.FEE_PRODUCT):
            ids(live.filter(plan_id__in=object_ids))
        elif kind == SyncKind.CHARGE:
            ids(live.filter(plan_id__in=Charge.objects.filter(pk__in=object_ids).values("plan_id")))
    return found
