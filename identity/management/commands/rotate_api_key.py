from django.core.management.base import BaseCommand, CommandError

from identity import keys
from identity.management.output import print_issued_key
from identity.models import Service


class Command(BaseCommand):
    help = "Issue an additional API key for a service (old keys keep working until revoked)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("code", help="Service code")
        parser.add_argument("--json", dest="as_json", action="store_true",
                            help='Print {"service": CODE, "api_key": KEY}')

    def handle(self, *args, code: str, as_json: bool, **options) -> None:
        try:
            service = Service.objects.get(code=code)
        except Service.DoesNotExist:
            raise CommandError(f"No service {code!r}.") from None
        issued = keys.issue_key(service=service, name="rotated")
        print_issued_key(self, service=service, plaintext=issued.plaintext, as_json=as_json)
