"""The console's writes: the dashboard rollup, the audit log, long-running ops jobs and the
subscription actions (always through the owning app's services)."""
from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import Any

from django.db import connections, transaction
from django.db.models import Count
from django.db.models.functions import TruncHour
from django.utils import timezone

from console.models import AuditEntry, DashboardRefresh, EventHourlyRollup, OpsJob, OpsJobKind, OpsJobStatus
from identity.models import AccountLink
from metering import lifecycle
from metering.models import Subscription, UsageEvent
from migration.reconciliation import reconcile_service
from odoo_bridge.models import OdooSyncState
from odoo_bridge.sync import resync
from webhooks import services as webhook_services

logger = logging.getLogger("console")

# The first refresh counts this much history; later ones recount from an hour before the last.
ROLLUP_BACKFILL = timedelta(days=8)
# An ingest transaction commits well within this: events it stamped earlier are still recounted.
ROLLUP_RECOUNT_MARGIN = timedelta(hours=1)
JOB_CHUNK = 200
# Snapshot keys never stored in the audit log in clear.
SECRET_FIELD_MARKERS = ("secret", "password", "key_hash", "api_key", "token")


# ------------------------------------------------------------------ dashboard rollup
@transaction.atomic
def refresh_event_rollup(*, now: datetime | None = None, worker: str = "") -> int:
    """Recount the recent hours of ingested events per service; returns the hours written.

    Recounting (delete + insert) rather than adding makes it idempotent and exact even when
    an ingest transaction commits after the previous refresh (its rows are stamped earlier)."""
    now = now or timezone.now()
    state, _ = DashboardRefresh.objects.select_for_update().get_or_create(pk=1)
    if state.refreshed_at is None:
        start = now - ROLLUP_BACKFILL
    else:
        start = min(state.refreshed_at, now) - ROLLUP_RECOUNT_MARGIN
    start = start.replace(minute=0, second=0, microsecond=0)
    rows = (UsageEvent.objects.filter(created_at__gte=start).annotate(hour=TruncHour("created_at"))
            .values("service_id", "hour").annotate(events=Count("id")).order_by())
    EventHourlyRollup.objects.filter(hour__gte=start).delete()
    written = EventHourlyRollup.objects.bulk_create(
        [EventHourlyRollup(service_id=r["service_id"], hour=r["hour"], events=r["events"]) for r in rows])
    state.refreshed_at = now
    state.rolled_up_from = start
    if worker:
        state.worker = worker[:200]
        state.worker_seen_at = now
    state.save()
    return len(written)


def rollup_is_stale(*, now: datetime, max_age: timedelta = timedelta(minutes=2)) -> bool:
    state = DashboardRefresh.objects.filter(pk=1).only("refreshed_at").first()
    return state is None or state.refreshed_at is None or now - state.refreshed_at > max_age


# ------------------------------------------------------------------ audit log
def mask_value(name: str, value: Any) -> Any:
    if any(marker in name.lower() for marker in SECRET_FIELD_MARKERS) and value:
        text = str(value)
        return f"…{text[-4:]}" if len(text) > 12 else "…"
    return value


def snapshot(objects: Iterable[Any]) -> dict[str, dict[str, Any]]:
    """Concrete field values of ``objects`` by primary key, secrets masked, JSON-safe."""
    result: dict[str, dict[str, Any]] = {}
    for obj in objects:
        values: dict[str, Any] = {}
        for model_field in obj._meta.concrete_fields:
            value = getattr(obj, model_field.attname)
            if isinstance(value, (bytes, memoryview)):
                value = f"<{len(bytes(value))} bytes>"
            elif value is not None and not isinstance(value, (str, int, bool, float, list, dict)):
                value = str(value)
            values[model_field.attname] = mask_value(model_field.attname, value)
        result[str(obj.pk)] = values
    return result


def record_audit(*, user: Any, action: str, path: str, target: str = "", object_ids: list[str] | None = None,
                 before: dict[str, Any] | None = None, after: dict[str, Any] | None = None,
                 parameters: dict[str, Any] | None = None, status_code: int = 0) -> AuditEntry:
    return AuditEntry.objects.create(
        user=user if getattr(user, "pk", None) else None, username=getattr(user, "get_username", lambda: "")(),
        action=action[:200], target=target[:200], object_ids=object_ids or [], before=before or {},
        after=after or {}, parameters={k: mask_value(k, v) for k, v in (parameters or {}).items()},
        path=path[:500], status_code=status_code)


# ------------------------------------------------------------------ subscription actions
def change_plan(*, subscription: Subscription, plan_code: str) -> Subscription:
    """A plan change exactly as the API makes it (Lago: POST /subscriptions with another plan)."""
    result = lifecycle.create_subscription(service=subscription.service, data={
        "external_customer_id": subscription.account_link.external_id, "plan_code": plan_code,
        "external_id": subscription.external_id,
    })
    return result.subscription


def terminate(*, subscription: Subscription) -> Subscription:
    return lifecycle.terminate_subscription(subscription=subscription)


# ------------------------------------------------------------------ long-running jobs
def start_job(*, kind: str, parameters: dict[str, Any], total: int, started_by: str) -> OpsJob:
    return OpsJob.objects.create(kind=kind, parameters=parameters, total=total, started_by=started_by)


def _progress(job_id: int) -> Callable[[int, str], None]:
    """Writes progress through its own autocommit connection, so the page sees it move while
    the job's work is still inside a transaction."""
    def write(done: int, message: str = "") -> None:
        conn = connections.create_connection("default")
        try:
            conn.set_autocommit(True)
            with conn.cursor() as cursor:
                cursor.execute(f"UPDATE {OpsJob._meta.db_table} SET done = %s, message = %s, status = %s "
                               "WHERE id = %s", [done, message, OpsJobStatus.RUNNING, job_id])
        finally:
            conn.close()
    return write


def run_job(*, job_id: int) -> OpsJob:
    job = OpsJob.objects.get(pk=job_id)
    if job.status in (OpsJobStatus.SUCCEEDED, OpsJobStatus.FAILED):
        return job  # redelivered after it finished
    progress = _progress(job.pk)
    progress(0, "started")
    try:
        message = _JOB_RUNNERS[job.kind](job, progress)
        status = OpsJobStatus.SUCCEEDED
    except Exception as exc:  # the job page shows why; the worker log keeps the traceback
        logger.exception("ops job #%s (%s) failed", job.pk, job.kind)
        message, status = f"{type(exc).__name__}: {exc}", OpsJobStatus.FAILED
    job.refresh_from_db()
    job.status = status
    job.message = message
    if status == OpsJobStatus.SUCCEEDED:
        job.done = job.total
    job.finished_at = timezone.now()
    job.save(update_fields=["status", "message", "done", "finished_at"])
    return job


def _chunks(ids: list[Any]) -> Iterable[list[Any]]:
    for start in range(0, len(ids), JOB_CHUNK):
        yield ids[start:start + JOB_CHUNK]


def _run_replay(job: OpsJob, progress: Callable[[int, str], None]) -> str:
    ids = job.parameters.get("delivery_ids", [])
    queued = done = 0
    for chunk in _chunks(ids):
        queued += webhook_services.replay_deliveries(delivery_ids=chunk)
        done += len(chunk)
        progress(done, f"{queued} queued")
    skipped = len(ids) - queued
    return f"Queued {queued} deliveries for redelivery" + (f"; {skipped} being sent were left alone." if skipped
                                                           else ".")


def _run_resync(job: OpsJob, progress: Callable[[int, str], None]) -> str:
    ids = job.parameters.get("state_ids", [])
    count = done = 0
    for chunk in _chunks(ids):
        count += resync(OdooSyncState.objects.filter(pk__in=chunk))
        done += len(chunk)
        progress(done, f"{count} reset")
    return f"{count} object(s) will be searched and rewritten on the next push cycle."


def _run_reconcile(job: OpsJob, progress: Callable[[int, str], None]) -> str:
    progress(0, "reading the source's billed periods")
    result = reconcile_service(service_code=job.parameters.get("service_code", "nexacloud"))
    return f"Reconciled: {result.as_dict()}"


_JOB_RUNNERS: dict[str, Callable[[OpsJob, Callable[[int, str], None]], str]] = {
    OpsJobKind.REPLAY: _run_replay,
    OpsJobKind.RESYNC: _run_resync,
    OpsJobKind.RECONCILE: _run_reconcile,
}


class PaymentMethodNotShared(Exception):
    """Why the accounts given cannot share a payment method (shown to the operator)."""


@transaction.atomic
def share_payment_method(*, accounts: list[AccountLink]) -> AccountLink:
    """Ops link one client's stored payment method to its other services' accounts (#17 F1).

    A card stays with the account that stored it unless ops link it here: the accounts must
    be of one unified client, exactly one of them holding a ``stripe_customer_id``; the
    others get it. Returns the source account."""
    if len({a.customer_id for a in accounts}) != 1 or len(accounts) < 2:
        raise PaymentMethodNotShared("Choose at least two accounts of one client.")
    holders = {a.stripe_customer_id for a in accounts if a.stripe_customer_id}
    if len(holders) != 1:
        raise PaymentMethodNotShared("Exactly one payment method among the chosen accounts is needed.")
    source = next(a for a in accounts if a.stripe_customer_id)
    for account in accounts:
        if account.stripe_customer_id != source.stripe_customer_id:
            account.stripe_customer_id = source.stripe_customer_id
            account.save(update_fields=["stripe_customer_id", "updated_at"])
    return source

