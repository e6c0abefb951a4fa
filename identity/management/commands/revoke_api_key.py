from django.core.management.base import BaseCommand, CommandError

from identity import keys
from identity.models import ApiKey


class Command(BaseCommand):
    help = "Revoke an API key by its public prefix (e.g. fb_1a2b3c4d)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("prefix")

    def handle(self, *args, prefix: str, **options) -> None:
        try:
            api_key = keys.revoke_key(prefix=prefix)
        except ApiKey.DoesNotExist:
            raise CommandError(f"No API key with prefix {prefix!r}.") from None
        self.stdout.write(f"Revoked {api_key.prefix} of service {api_key.service.code}.")
