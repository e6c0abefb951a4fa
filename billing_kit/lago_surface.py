"""Lago paths Fusion Billing does not serve answer a Lago-shaped 405 that names the
resource (``wallet_not_supported``, ``invoice_download_not_supported``…), never a 404 that
names another resource or a 500. The collections are those of lago-python-client 1.55.0
(tests/api/test_lago_surface.py walks every method of the client)."""
from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework.request import Request

from .errors import NotAllowed
from .views import ServiceAPIView

LAGO_COLLECTIONS = frozenset({
    "activity_logs", "add_ons", "alerts", "analytics", "api_logs", "applied_coupons", "billable_metrics",
    "billing_entities", "charges", "coupons", "credit_notes", "customers", "entitlements", "events", "features",
    "fees",
    "filters", "fixed_charges", "gross_revenues", "invoice_collections", "invoiced_usages", "invoices",
    "metadata", "mrrs", "order_forms", "orders", "organizations", "overdue_balances", "payment_methods",
    "payment_receipts", "payment_requests", "payments", "plans", "privileges", "quote_versions", "quotes",
    "subscriptions", "taxes", "usages", "versions", "wallet_transactions", "wallets", "webhook_endpoints",
    "webhooks", "estimated_credit_note",
})

# Actions on a collection itself (``billable_metrics/evaluate_expression``), in an id position.
COLLECTION_ACTIONS = frozenset({"evaluate_expression", "estimate", "preview", "estimate_instant_fees",
                                "batch_estimate_instant_fees"})

_IRREGULAR = {"taxes": "tax", "metadata": "metadata", "analytics": "analytics",
              "estimated_credit_note": "estimated_credit_note"}


def singular(collection: str) -> str:
    if collection in _IRREGULAR:
        return _IRREGULAR[collection]
    if collection.endswith("ies"):
        return collection[:-3] + "y"
    return collection[:-1] if collection.endswith("s") else collection


def unsupported_code(path: str) -> str:
    """``<resource>[_<action>]_not_supported`` for a path under ``/api/v1/``.

    Lago's paths alternate names and ids (``customers/{id}/wallets/{id}``): the resource is
    the innermost collection in a name position, the action a last name that is not a
    collection (``invoices/{id}/download``). Ids are never read as names."""
    segments = [s for s in path.split("/") if s]
    names = segments[0::2]
    collections = [n for n in names if n in LAGO_COLLECTIONS]
    resource = singular(collections[-1]) if collections else "resource"
    last = segments[-1] if segments else ""
    in_name_position = len(segments) % 2 == 1
    action = (last if collections and ((in_name_position and last not in LAGO_COLLECTIONS)
                                       or (not in_name_position and last in COLLECTION_ACTIONS)) else "")
    return f"{resource}_{action}_not_supported" if action else f"{resource}_not_supported"


class LagoUnsupportedView(ServiceAPIView):
    """Every method: 405 ``<resource>_not_supported`` (after authentication, as Lago's 401
    comes first)."""

    def _refuse(self, request: Request, *args: Any, **kwargs: Any) -> Any:
        raise NotAllowed(unsupported_code(request.path.split("/api/v1/", 1)[-1]))

    get = post = put = patch = delete = extend_schema(exclude=True)(_refuse)
