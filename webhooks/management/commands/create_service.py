import json

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from identity import keys
from identity.management.output import print_issued_key
from identity.models import Service
from webhooks import services as webhook_services


# The command lives in webhooks, above identity in the dependency order, because it can
# also create the service's first webhook endpoint.
class Command(BaseCommand):
    help = "Create a service (a source app) and its first API key; the key is printed once."

    def add_arguments(self, parser) -> None:
        parser.add_argument("code", help="Service code, e.g. nexacloud")
        parser.add_argument("--name", required=True, help="Human-readable name")
        parser.add_argument("--currency", default="CAD", help="Default currency (ISO 4217)")
        parser.add_argument("--json", dest="as_json", action="store_true",
                            help='Print {"service": CODE, "api_key": KEY}')
        parser.add_argument(
            "--webhook-url", default=None,
            help="Also create a webhook endpoint (all event types); its signing secret is printed once",
        )

    def handle(self, *args, code: str, name: str, currency: str, as_json: bool,
               webhook_url: str | None = None, **options) -> None:
        if Service.objects.filter(code=code).exists():
            raise CommandError(f"Service {code!r} already exists; use rotate_api_key for a new key.")
        with transaction.atomic():
            service = Service.objects.create(code=code, name=name, default_currency=currency.upper())
            issued = keys.issue_key(service=service, name="initial")
            issued_endpoint = None
            if webhook_url:
                try:
                    issued_endpoint = webhook_services.create_endpoint(service=service, url=webhook_url)
                except webhook_services.EndpointInvalid as exc:
                    raise CommandError(f"--webhook-url refused: {exc.message or exc}") from None
        if issued_endpoint is None:
            print_issued_key(self, service=service, plaintext=issued.plaintext, as_json=as_json)
        elif as_json:
            self.stdout.write(json.dumps({
                "service": service.code, "api_key": issued.plaintext,
                "webhook_endpoint_id": str(issued_endpoint.endpoint.id), "webhook_secret": issued_endpoint.secret,
            }))
        else:
            print_issued_key(self, service=service, plaintext=issued.plaintext, as_json=False)
            self.stdout.write(f"Webhook endpoint: {issued_endpoint.endpoint.id} -> {issued_endpoint.endpoint.url}")
            self.stdout.write(f"Webhook signing secret (shown once, store it now): {issued_endpoint.secret}")

