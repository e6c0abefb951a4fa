"""The connection to Odoo as the cycles see it: settings, the stored state, cycle locks.

``open_client`` is the one way in for push, pull and the migration gateway: it refuses
to send anything while the connection is *broken* for the same credentials (ten failed
logins would lock the bot user's IP out for everyone behind it) and records whether
Odoo answered. ``advisory_locks`` serializes cycles and subscriptions across workers.

The Odoo configuration check (``check_config``, at connect) says what ops must configure in Odoo
for windows to be invoiced right:

- **Price precision** (`decimal.precision` "Product Price"): our unit rates need at most that many
  decimals to go to Odoo as quantity x rate; a finer rate still bills the exact amount (quantity 1 at
  the pre-rated amount, rounded once), so this is a warning, with the digits the rates need.
- **The recurring-invoice cron** (`sale_subscription.account_analytic_cron_for_invoice`): it must be
  active, and its daily run must come after the window close + grace + two sync intervals (the
  freeze is rated, then pushed) in EVERY billing timezone in use (``BILLING_TIMEZONE`` and the
  snapshot of each live active subscription), with the worst grace of the subscriptions there (each
  its customer's or service's invoice grace period, else ``RATING_GRACE_SECONDS``): windows close at local midnights, while Odoo
  compares ``next_invoice_date`` with the server's date, which is UTC (``fields.Date.today()``). A
  window of date D closing at D 00:00 in ``America/Toronto`` (05:00 UTC) is due from the cron's run of
  UTC day D: a run at 04:00 UTC invoices the order before the window's usage is there (not lost: it
  goes on the next invoice, a period late). Each timezone is checked over the coming year (DST), and
  the ones at risk are reported (``timezone_invoicing_risks``).

The report is stored on ``OdooConnectionState.config_report`` and shown by ``/ops/health``. It is
refreshed at most once per ``CHECK_EVERY`` (3 RPCs), never raises: a field the bot user may not
read is reported as an error of the check.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import zoneinfo
from decimal import Decimal
from typing import Any, Iterable, Iterator

from django.conf import settings
from django.db import connection
from django.db.models import Count
from django.utils import timezone

from identity.models import Service
from metering.models import (
    Charge, ChargeModel, Subscription, SubscriptionMode, SubscriptionStatus, effective_grace,
)

from .client import (
    OdooAccessDenied,
    OdooClient,
    OdooConfigurationError,
    OdooError,
    OdooRemoteError,
    OdooRetryableError,
    OdooSettings,
    get_client,
    reset_client,
)
from .models import ConnectionStatus, OdooConnectionState

ADVISORY_NAMESPACE_SUBSCRIPTION = 0x0D00  # pg_advisory locks: (namespace, hashtext(subscription id))
ADVISORY_NAMESPACE_CYCLE = 0x0D01


class CycleAborted(Exception):
    """Stop the cycle: Odoo is unreachable or refuses our credentials."""


def odoo_settings() -> OdooSettings:
    """The ODOO_* settings as the client needs them (declared in billing_project/settings/odoo.py)."""
    return OdooSettings(url=settings.ODOO_URL, db=settings.ODOO_DB, user=settings.ODOO_USER,
                        api_key=settings.ODOO_API_KEY, timeout_seconds=settings.ODOO_TIMEOUT_SECONDS,
                        transport=settings.ODOO_TRANSPORT)


def portal_base_url() -> str:
    """Where customers reach Odoo's portal (``ODOO_PORTAL_URL``, else ``ODOO_URL``), without a trailing slash."""
    return (settings.ODOO_PORTAL_URL or settings.ODOO_URL).rstrip("/")


def connection_state() -> OdooConnectionState:
    state, _ = OdooConnectionState.objects.get_or_create(pk=1)
    return state


def mark_connection(*, status: str, settings_: OdooSettings, error: str = "", client: OdooClient | None = None,
                    now: dt.datetime | None = None) -> None:
    now = now or timezone.now()
    state = connection_state()
    state.status = status
    state.credentials_fingerprint = settings_.key_fingerprint()
    if status == ConnectionStatus.OK:
        state.last_ok_at = now
        state.broken_at = None
        if client is not None:
            f = client.fields
            state.server_version = f.server_version
            state.price_digits, state.quantity_digits = f.price_digits, f.quantity_digits
            state.line_uom_field, state.line_taxes_field = f.line_uom, f.line_taxes
    else:
        state.last_error, state.last_error_at = error[:2000], now
        if status == ConnectionStatus.BROKEN:
            state.broken_at = now
    state.save()


def connection_is_broken(settings_: OdooSettings) -> bool:
    """Broken stays broken for the same credentials; new credentials get one fresh try."""
    state = OdooConnectionState.objects.filter(pk=1).first()
    return bool(state and state.status == ConnectionStatus.BROKEN
                and state.credentials_fingerprint == settings_.key_fingerprint())


def record_connection_failure(exc: OdooError, *, settings_: OdooSettings | None) -> None:
    """What a failed call mid-cycle says about the connection; shared by push and pull.

    Judged by class, not by Odoo's exception name: JSON-2 answers a bad key with
    ``werkzeug.exceptions.Unauthorized``. A business error says nothing about the connection.
    """
    if isinstance(exc, OdooAccessDenied):
        if settings_ is not None:
            mark_connection(status=ConnectionStatus.BROKEN, settings_=settings_, error=str(exc))
        reset_client()
    elif exc.retryable and settings_ is not None:
        mark_connection(status=ConnectionStatus.DOWN, settings_=settings_, error=str(exc))


def reset_connection() -> None:
    OdooConnectionState.objects.filter(pk=1).update(status=ConnectionStatus.UNKNOWN, broken_at=None)
    reset_client()


def open_client(settings_: OdooSettings | None = None) -> OdooClient:
    """The process client, with connection state bookkeeping. Raises CycleAborted."""
    settings_ = settings_ or odoo_settings()
    if not settings_.configured:
        raise CycleAborted("Odoo is not configured (ODOO_URL, ODOO_DB, ODOO_USER, ODOO_API_KEY)")
    if connection.vendor != "postgresql":  # advisory locks below; see README "embedded default"
        raise CycleAborted("Odoo sync needs PostgreSQL (set DATABASE_URL); the embedded SQLite default does not sync")
    if connection_is_broken(settings_):
        raise CycleAborted("connection broken (access denied); fix the credentials or reset it in the admin")
    try:
        client = get_client(settings_)
    except OdooAccessDenied as exc:
        mark_connection(status=ConnectionStatus.BROKEN, settings_=settings_, error=str(exc))
        reset_client()
        raise CycleAborted(f"access denied: {exc}") from exc
    except (OdooRetryableError, OdooConfigurationError, OdooRemoteError) as exc:
        mark_connection(status=ConnectionStatus.DOWN, settings_=settings_, error=str(exc))
        raise CycleAborted(f"Odoo unreachable: {exc}") from exc
    mark_connection(status=ConnectionStatus.OK, settings_=settings_, client=client)
    refresh_config_report(client)
    return client


def refresh_config_report(client: OdooClient, *, force: bool = False) -> dict:
    """The Odoo configuration report (``config_check``), refreshed at most once per ``CHECK_EVERY``."""
    state = connection_state()
    now = timezone.now()
    checked = state.config_report.get("checked_at") if state.config_report else None
    if force or not checked or now - dt.datetime.fromisoformat(checked) >= CHECK_EVERY:
        state.config_report = check_config(client, now=now)
        state.save(update_fields=["config_report", "updated_at"])
    return state.config_report


@contextlib.contextmanager
def advisory_locks(namespace: int, keys: Iterable[str]) -> Iterator[set[str]]:
    """Session-level try-locks, taken in one statement; yields the keys acquired.

    A key not acquired is being pushed by another worker right now: skipped this cycle.
    """
    wanted = sorted(set(keys))
    acquired: list[str] = []
    try:
        if wanted:
            with connection.cursor() as cursor:
                cursor.execute("SELECT k FROM unnest(%s::text[]) AS k WHERE pg_try_advisory_lock(%s, hashtext(k))",
                               [wanted, namespace])
                acquired = [row[0] for row in cursor.fetchall()]
        yield set(acquired)
    finally:
        if acquired:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s, hashtext(k)) FROM unnest(%s::text[]) AS k",
                               [namespace, acquired])


# -- the Odoo configuration check
CHECK_EVERY = dt.timedelta(hours=1)
INVOICING_CRON = ("sale_subscription", "account_analytic_cron_for_invoice")


def rate_digits_needed() -> int:
    """The most decimals a unit-priced charge's rate has (0.0075 -> 4)."""
    needed = 0
    for amount in Charge.objects.filter(charge_model=ChargeModel.STANDARD, amount__isnull=False).values_list(
            "amount", flat=True).distinct():
        exponent = Decimal(amount or 0).normalize().as_tuple().exponent
        needed = max(needed, -exponent if isinstance(exponent, int) and exponent < 0 else 0)
    return needed


def earliest_invoicing_time() -> dt.time:
    """Time of day (billing timezone) after which the cron may run: close + the deployment's default
    grace + two sync intervals (the per-timezone check, ``timezone_invoicing_risks``, takes each
    subscription's own grace)."""
    delay = dt.timedelta(seconds=getattr(settings, "RATING_GRACE_SECONDS", 0)
                         + 2 * settings.ODOO_SYNC_INTERVAL_SECONDS)
    return (dt.datetime(2000, 1, 1) + delay).time()


def billing_timezones_in_use() -> dict[str, tuple[int, set[dt.timedelta]]]:
    """``BILLING_TIMEZONE`` (new subscriptions of customers without a timezone) and the billing
    timezone of every live active subscription, with how many subscriptions use each and the
    graces they close after (``Subscription.grace``). ``BILLING_TIMEZONE`` also gets the graces
    a new subscription may take: the deployment default and every service's setting."""
    default_graces = {effective_grace(None)} | {
        dt.timedelta(days=days or 0) for days in Service.objects.filter(invoice_grace_period__isnull=False)
        .values_list("invoice_grace_period", flat=True).distinct()}
    zones: dict[str, tuple[int, set[dt.timedelta]]] = {settings.BILLING_TIMEZONE: (0, default_graces)}
    for row in (Subscription.objects.filter(mode=SubscriptionMode.LIVE, status=SubscriptionStatus.ACTIVE)
                .values("billing_timezone", "grace_period").annotate(n=Count("id")).order_by()):
        count, graces = zones.get(row["billing_timezone"], (0, set()))
        zones[row["billing_timezone"]] = (count + row["n"], graces | {effective_grace(row["grace_period"])})
    return zones


DAY_SECONDS = 24 * 3600


def latest_ready_seconds(zone: dt.tzinfo, *, today: dt.date, grace: dt.timedelta, delay: dt.timedelta) -> int:
    """Seconds after 00:00 UTC of Odoo's invoicing date at which the windows closing in ``zone`` are
    in Odoo, the latest over the coming year (every local midnight, so DST is covered).

    A window ending at local midnight ``close`` gets ``next_invoice_date`` = the local date of
    ``close + grace`` (``mapping.order_next_invoice_date``); Odoo's cron bills it on its first run on
    that UTC date. Its lines are in Odoo at ``close + delay`` (grace + two sync intervals)."""
    worst = -DAY_SECONDS
    for offset in range(367):
        day = today + dt.timedelta(days=offset)
        close = dt.datetime(day.year, day.month, day.day, tzinfo=zone)
        invoice_date = (close + grace).astimezone(zone).date()
        due_from = dt.datetime(invoice_date.year, invoice_date.month, invoice_date.day, tzinfo=dt.timezone.utc)
        worst = max(worst, int(((close + delay) - due_from).total_seconds()))
    return worst


def _clock(seconds: int) -> str:
    return f"{dt.timedelta(seconds=max(seconds, 0))}".rjust(8, "0") if seconds < DAY_SECONDS else "never"


def timezone_invoicing_risks(*, cron_utc: dt.time, today: dt.date) -> list[dict[str, Any]]:
    """Per billing timezone in use: when the cron may run at the earliest (UTC time of day) and
    whether its run at ``cron_utc`` comes too early there, for the worst of the graces its
    subscriptions close after (``grace_seconds``: that grace)."""
    sync = dt.timedelta(seconds=2 * settings.ODOO_SYNC_INTERVAL_SECONDS)
    at = cron_utc.hour * 3600 + cron_utc.minute * 60 + cron_utc.second
    rows = []
    for name, (count, graces) in sorted(billing_timezones_in_use().items()):
        try:
            zone: dt.tzinfo = zoneinfo.ZoneInfo(name)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            rows.append({"timezone": name, "subscriptions": count, "earliest_utc": "unknown", "at_risk": True,
                         "grace_seconds": int(max(graces).total_seconds())})
            continue
        ready, grace = max((latest_ready_seconds(zone, today=today, grace=g, delay=g + sync), g)
                           for g in sorted(graces))
        rows.append({"timezone": name, "subscriptions": count, "earliest_utc": _clock(ready),
                     "at_risk": ready >= DAY_SECONDS or at < ready, "grace_seconds": int(grace.total_seconds())})
    return rows


def check_config(client: OdooClient, *, now: dt.datetime) -> dict[str, Any]:
    report: dict[str, Any] = {"checked_at": now.isoformat(), "warnings": []}
    warnings: list[str] = report["warnings"]
    try:
        found = client.search_read("decimal.precision", [["name", "=", "Product Price"]], ["digits"])
        digits = found[0]["digits"] if found else client.fields.price_digits
    except OdooError:
        digits = client.fields.price_digits  # fields_get of price_unit says the same
    needed = rate_digits_needed()
    report["price_digits"], report["rate_digits_needed"] = digits, needed
    if needed > digits:
        warnings.append(f"Product Price precision is {digits} digits, rates need {needed}: those lines go as "
                        f"quantity 1 at the pre-rated amount (raise Settings > Technical > Decimal Accuracy)")
    tz = zoneinfo.ZoneInfo(settings.BILLING_TIMEZONE)
    earliest = earliest_invoicing_time()
    cron: dict[str, Any] = {"earliest_time": f"{earliest:%H:%M:%S}", "timezone": settings.BILLING_TIMEZONE}
    report["invoicing_cron"] = cron
    try:
        cron_id = client.xmlid(*INVOICING_CRON)
        [rec] = client.search_read("ir.cron", [["id", "=", cron_id], ["active", "in", [True, False]]],  # archived too
                                   ["active", "nextcall", "interval_number", "interval_type"])
    except (OdooError, ValueError) as exc:
        cron["error"] = str(exc)[:300]
        warnings.append("the invoicing cron could not be read (sale_subscription installed? bot user rights?)")
        return report
    cron.update(active=rec["active"], nextcall=rec["nextcall"] or None,
                interval=f'{rec["interval_number"]} {rec["interval_type"]}')
    if not rec["active"]:
        warnings.append("the recurring-invoice cron is not active: Odoo invoices nothing by itself")
    if rec["nextcall"]:
        nextcall = dt.datetime.strptime(rec["nextcall"], "%Y-%m-%d %H:%M:%S").replace(tzinfo=dt.timezone.utc)
        cron["nextcall_local"] = nextcall.astimezone(tz).isoformat()
        zones = timezone_invoicing_risks(cron_utc=nextcall.time(), today=now.astimezone(dt.timezone.utc).date())
        cron["timezones"] = zones
        cron["at_risk"] = [z["timezone"] for z in zones if z["at_risk"]]
        ready = [z["earliest_utc"] for z in zones if z["earliest_utc"] not in ("never", "unknown")]
        cron["earliest_utc"] = max(ready) if ready else None
        if cron["at_risk"]:
            worst = max((z["earliest_utc"] for z in zones if z["at_risk"]), key=lambda v: (v == "never", v))
            where = ", ".join(f'{z["timezone"]} ({z["subscriptions"]} subscriptions, from {z["earliest_utc"]} UTC)'
                              for z in zones if z["at_risk"])
            fix = (f"set its next execution after {worst[:5]} UTC" if worst not in ("never", "unknown")
                   else "no daily time fits: lower the grace (the services' and customers' invoice grace "
                        "period, RATING_GRACE_SECONDS)")
            warnings.append(f"the invoicing cron runs at {nextcall:%H:%M} UTC (Odoo's invoicing date is UTC's), "
                            f"before {worst[:5]} UTC, when the windows closing at local midnight are in Odoo in: "
                            f"{where}: the day's invoices miss the windows that just closed (billed a period "
                            f"later); {fix}")
    return report
