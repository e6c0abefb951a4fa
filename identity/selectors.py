"""Reads of customers, always scoped to the calling service's own accounts (never the unified Customer)."""
from __future__ import annotations

from django.db.models import Q, QuerySet

from identity.models import AccountLink, Service


def invoice_grace_days(*, link: AccountLink) -> int | None:
    """The account's invoice grace period in days: the customer's own when set, else its
    service's (organization's); None when neither is set (the deployment default applies)."""
    if link.invoice_grace_period is not None:
        return link.invoice_grace_period
    return link.service.invoice_grace_period


def active_links(*, service: Service) -> QuerySet[AccountLink]:
    return AccountLink.objects.filter(service=service, deleted_at__isnull=True).prefetch_related("metadata")


def get_link(*, service: Service, external_id: str) -> AccountLink | None:
    return active_links(service=service).filter(external_id=external_id).first()


def list_links(
    *, service: Service, external_id: str | None = None, search_term: str | None = None,
    currencies: list[str] | None = None, countries: list[str] | None = None,
) -> QuerySet[AccountLink]:
    links = active_links(service=service)
    if external_id:
        links = links.filter(external_id=external_id)
    if search_term:
        links = links.filter(
            Q(external_id__icontains=search_term) | Q(name__icontains=search_term)
            | Q(firstname__icontains=search_term) | Q(lastname__icontains=search_term)
            | Q(legal_name__icontains=search_term) | Q(external_email__icontains=search_term)
        )
    if currencies:
        links = links.filter(currency__in=currencies)
    if countries:
        links = links.filter(country__in=countries)
    return links.order_by("-created_at", "id")
