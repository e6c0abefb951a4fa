"""An in-memory LiveOrderGateway for tests (records what go-live asked Odoo to do)."""

from __future__ import annotations

from migration.golive import LiveOrder


class RecordingGateway:
    """Idempotent like the real one must be: one order and one token per subscription."""

    calls: list[tuple] = []
    orders: dict[str, LiveOrder] = {}
    fail_with: Exception | None = None

    @classmethod
    def reset(cls) -> None:
        cls.calls, cls.orders, cls.fail_with = [], {}, None

    def push_live_order(self, *, subscription, stripe_customer_id: str, stripe_payment_method_id: str) -> LiveOrder:
        type(self).calls.append(("push", subscription.external_id, stripe_customer_id, stripe_payment_method_id))
        if type(self).fail_with is not None:
            raise type(self).fail_with
        n = len(type(self).orders) + 1
        return type(self).orders.setdefault(subscription.external_id, LiveOrder(sale_order_id=1000 + n,
                                                                                payment_token_id=500 + n))

    def return_to_shadow(self, *, subscription) -> None:
        type(self).calls.append(("revert", subscription.external_id))
        if type(self).fail_with is not None:
            raise type(self).fail_with
        type(self).orders.pop(subscription.external_id, None)
