"""``python manage.py rate_usage [--service CODE] [--subscription EXTERNAL_ID]``."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from identity.models import Service
from metering import rating
from metering.models import Subscription


class Command(BaseCommand):
    help = "Rate usage of open billing windows now (and close the windows that have ended)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--service", metavar="CODE", help="only this service's subscriptions")
        parser.add_argument(
            "--subscription", metavar="EXTERNAL_ID",
            help="only the subscription(s) with this external id (combine with --service to disambiguate)",
        )
        parser.add_argument("--chunk-size", type=int, default=rating.DEFAULT_CHUNK_SIZE)

    def handle(self, *args: Any, service: str | None = None, subscription: str | None = None,
               chunk_size: int = rating.DEFAULT_CHUNK_SIZE, **options: Any) -> None:
        if chunk_size <= 0:
            raise CommandError("--chunk-size must be positive")
        if service is not None and not Service.objects.filter(code=service).exists():
            raise CommandError(f"unknown service {service!r}")
        subscription_ids = None
        if subscription is not None:
            matches = Subscription.objects.filter(external_id=subscription)
            if service is not None:
                matches = matches.filter(service__code=service)
            subscription_ids = list(matches.values_list("id", flat=True))
            if not subscription_ids:
                raise CommandError(f"no subscription with external id {subscription!r}")
        summary = rating.rate_open_windows(
            service_code=service, subscription_ids=subscription_ids, chunk_size=chunk_size
        )
        self.stdout.write(
            f"rated {summary.subscriptions} subscription(s): {summary.rows_created} created, "
            f"{summary.rows_updated} updated, {summary.windows_closed} window(s) closed "
            f"in {summary.seconds:.2f}s"
        )
