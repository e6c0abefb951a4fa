"""The live-order gateway over the Odoo bridge (``odoo_bridge``).

Set ``MIGRATION_LIVE_ORDER_GATEWAY=migration.odoo_gateway.OdooBridgeLiveOrderGateway``.

``push_live_order`` is called by ``golive.go_live`` inside the transaction that has
just set the subscription's mode to ``live`` (so the bridge, which never pushes a
shadow subscription, now pushes it):

1. ``odoo_bridge.sync.push_cycle(subscription_ids=[…])`` pushes partner, catalog and
   the confirmed ``sale.order`` (search by ``client_order_ref`` first: idempotent);
2. the customer's ``payment.token`` for the Stripe customer (``provider_ref``) and
   payment method (``stripe_payment_method`` where the database has
   ``payment_stripe``) is searched, else created — with ``provider_id`` /
   ``payment_method_id`` when those fields exist (Odoo 16+ needs them);
3. the order gets ``payment_token_id`` so Odoo's invoicing cron charges it natively.

Field names are read from ``fields_get`` so the same code runs on Odoo 17–19 and on
the bridge's fake.
"""

from __future__ import annotations

from typing import Any

from metering.models import Subscription
from migration.golive import LiveOrder
from odoo_bridge.models import OdooSyncState, SyncKind
from odoo_bridge.sync import CycleAborted, open_client, push_cycle


class LiveOrderFailed(Exception):
    pass


class OdooBridgeLiveOrderGateway:
    def __init__(self, client: Any = None):
        self._client = client

    def client(self):
        if self._client is None:
            try:
                self._client = open_client()
            except CycleAborted as exc:
                raise LiveOrderFailed(f"Odoo unavailable: {exc}") from None
        return self._client

    def _first_id(self, model: str, domain: list) -> int | None:
        found = self.client().search_read(model, domain, ["id"], limit=1)
        return found[0]["id"] if found else None

    def _token_fields(self) -> set[str]:
        return set(self.client().call("payment.token", "fields_get", [], {"attributes": ["type"]}))

    def ensure_payment_token(self, *, partner_id: int, stripe_customer_id: str, stripe_payment_method_id: str) -> int:
        fields = self._token_fields()
        domain: list = [["partner_id", "=", partner_id], ["provider_ref", "=", stripe_customer_id]]
        if "stripe_payment_method" in fields:
            domain.append(["stripe_payment_method", "=", stripe_payment_method_id])
        existing = self._first_id("payment.token", domain)
        if existing:
            return existing
        vals: dict[str, Any] = {"partner_id": partner_id, "provider_ref": stripe_customer_id,
                                "payment_details": f"Stripe {stripe_payment_method_id}"}
        if "stripe_payment_method" in fields:
            vals["stripe_payment_method"] = stripe_payment_method_id
        if "provider_id" in fields:
            provider = self._first_id("payment.provider", [["code", "=", "stripe"]])
            if provider is None:
                raise LiveOrderFailed("Odoo has no Stripe payment provider (install payment_stripe)")
            vals["provider_id"] = provider
        if "payment_method_id" in fields:
            method = self._first_id("payment.method", [["code", "=", "card"]])
            if method is not None:
                vals["payment_method_id"] = method
        return self.client().create("payment.token", [vals])[0]

    def push_live_order(self, *, subscription: Subscription, stripe_customer_id: str,
                        stripe_payment_method_id: str) -> LiveOrder:
        report = push_cycle(client=self.client(), subscription_ids=[subscription.pk])
        if report.aborted:
            raise LiveOrderFailed(f"Odoo push aborted: {report.aborted}")
        subscription.refresh_from_db(fields=["odoo_sale_order_id", "mode"])
        account = subscription.account_link
        account.refresh_from_db(fields=["odoo_invoice_partner_id"])
        if not subscription.odoo_sale_order_id or not account.odoo_invoice_partner_id:
            state = OdooSyncState.objects.filter(kind=SyncKind.SUBSCRIPTION, object_id=str(subscription.pk)).first()
            reason = (state.last_error if state and state.last_error else "the bridge did not create the order")
            raise LiveOrderFailed(f"sale.order not pushed: {reason}")
        # The token belongs to the service account's own contact: a search by partner never finds
        # it for another service's order of the same client.
        token = self.ensure_payment_token(partner_id=account.odoo_invoice_partner_id,
                                          stripe_customer_id=stripe_customer_id,
                                          stripe_payment_method_id=stripe_payment_method_id)
        self.client().write("sale.order", [subscription.odoo_sale_order_id], {"payment_token_id": token})
        return LiveOrder(sale_order_id=subscription.odoo_sale_order_id, payment_token_id=token)

    def return_to_shadow(self, *, subscription: Subscription) -> None:
        order_id = subscription.odoo_sale_order_id
        if not order_id:
            return
        client = self.client()
        client.write("sale.order", [order_id], {"payment_token_id": False})
        client.call("sale.order", "set_close", [[order_id]], {})
