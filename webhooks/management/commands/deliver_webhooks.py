from django.core.management.base import BaseCommand

from webhooks import delivery, retry


class Command(BaseCommand):
    help = "Deliver every webhook that is due now, once, in this process (no broker needed)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--limit", type=int, default=None, help="Stop after this many deliveries")

    def handle(self, *args, limit: int | None, **options) -> None:
        results = delivery.deliver_all_due(max_deliveries=limit)
        counts = {action: 0 for action in (retry.SUCCEEDED, retry.RETRY, retry.DEAD, retry.DISABLE_ENDPOINT)}
        for result in results:
            counts[result.action] += 1
        self.stdout.write(
            f"attempted {len(results)}: {counts[retry.SUCCEEDED]} succeeded, {counts[retry.RETRY]} will retry, "
            f"{counts[retry.DEAD]} dead-lettered, {counts[retry.DISABLE_ENDPOINT]} disabled their endpoint"
        )
