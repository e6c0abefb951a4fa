"""``python manage.py reconcile --service nexacloud [--period-start YYYY-MM-DD] [--csv FILE]``."""

from __future__ import annotations

from datetime import date

from django.core.management.base import BaseCommand, CommandError

from migration.models import Reconciliation, ReconciliationStatus
from migration.reader import SourceError
from migration.reconciliation import ReconciliationUnavailable, reconcile_service, write_csv


def _date(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise CommandError(f"--period-start must be YYYY-MM-DD, not {value!r}") from None


class Command(BaseCommand):
    help = "Reconcile Fusion Billing's shadow rating against what the source app billed."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--service", required=True, help="Service code, e.g. nexacloud")
        parser.add_argument("--period-start", default=None, help="Only this period (YYYY-MM-DD)")
        parser.add_argument("--csv", default=None, metavar="FILE", help="Write the reconciliation rows as CSV")
        parser.add_argument("--dsn", default=None, help="Source DSN (default: NEXACLOUD_DSN)")

    def handle(self, *args, service: str, period_start: str | None, csv: str | None, dsn: str | None,
               **options) -> None:
        period = _date(period_start) if period_start else None
        try:
            result = reconcile_service(service_code=service, period_start=period, dsn=dsn)
        except (ReconciliationUnavailable, SourceError) as exc:
            raise CommandError(str(exc), returncode=1) from None
        self.stdout.write(f"Reconciled {result.rows} subscription period(s) of {service}"
                          + (f" starting {period}" if period else "") + ":")
        for status, count in result.as_dict().items():
            self.stdout.write(f"  {status:<18}{count:>8}")
        if csv:
            rows = Reconciliation.objects.filter(service__code=service).select_related("service")
            if period:
                rows = rows.filter(period_start=period)
            with open(csv, "w", newline="") as stream:
                n = write_csv(rows.order_by("period_start", "external_subscription_id"), stream)
            self.stdout.write(f"Wrote {n} row(s) to {csv}")
        if result.counts.get(ReconciliationStatus.MISMATCH):
            self.stdout.write(self.style.WARNING("Mismatches found: see the reconciliation report."))
