from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from identity.models import Service
from metering.demo import seed_demo


class Command(BaseCommand):
    help = "Create a demo service, metric, plan with a charge, customer and subscription; print a key."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--base-url", default="http://127.0.0.1:8000")
        parser.add_argument("--with-history", action="store_true",
                            help="Also a second customer with recent hourly usage, rated (for the ops console).")
        parser.add_argument("--if-empty", action="store_true",
                            help="Do nothing if any service exists (scripts/run seeds a fresh database only).")

    def handle(self, *args: Any, base_url: str, with_history: bool, if_empty: bool, **options: Any) -> None:
        if if_empty and Service.objects.exists():
            self.stdout.write("Services exist: no demo data seeded.")
            return
        seed = seed_demo(history=with_history)
        sub = seed.subscription
        self.stdout.write(f"Demo service: {seed.service.code}")
        self.stdout.write(f"API key (shown once): {seed.api_key}")
        self.stdout.write("Try next:")
        self.stdout.write(f"  curl -H 'Authorization: Bearer {seed.api_key}' {base_url}/api/v1/customers/demo-customer")
        self.stdout.write(
            f"  curl -H 'Authorization: Bearer {seed.api_key}' -H 'Content-Type: application/json' "
            f"-d '{{\"event\": {{\"transaction_id\": \"tx-1\", \"external_subscription_id\": \"{sub.external_id}\", "
            f"\"code\": \"cpu_seconds\", \"properties\": {{\"cpu_seconds\": 7200}}}}}}' {base_url}/api/v1/events"
        )
        self.stdout.write(f"  open {base_url}/admin/ (python manage.py createsuperuser first)")
