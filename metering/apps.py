from typing import Any

from django.apps import AppConfig


class MeteringConfig(AppConfig):
    name = "metering"
    verbose_name = "Metering: catalogue, subscriptions, usage and rating"

    def ready(self) -> None:
        from identity.models import invoice_grace_period_changed

        invoice_grace_period_changed.connect(_apply_invoice_grace, dispatch_uid="metering.apply_invoice_grace")


def _apply_invoice_grace(sender: Any, *, service: Any, link: Any, **kwargs: Any) -> None:
    """Identity, below metering, says a grace setting changed: the subscriptions follow it."""
    from metering.services.subscriptions import apply_invoice_grace

    apply_invoice_grace(service=service, link=link)
