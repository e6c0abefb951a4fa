"""``wallet.depleted_ongoing_balance``: sent once when the ongoing balance (balance minus the usage not
invoiced yet) reaches 0, and again only after it was positive in between."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from tests.odoo_bridge.conftest import Catalog
from wallets import services, tasks
from wallets.selectors import balances
from webhooks.models import WebhookEvent

pytestmark = pytest.mark.django_db


def depleted() -> list[dict]:
    return [json.loads(bytes(e.body)) for e in WebhookEvent.objects.filter(
        webhook_type="wallet.depleted_ongoing_balance").order_by("created_at")]


def test_depleted_ongoing_balance_is_announced_once_per_depletion(service):
    catalog = Catalog(service)
    sub = catalog.subscription()
    wallet = services.create_wallet(service=service, link=sub.account_link,
                                    data={"rate_amount": Decimal("0.5"), "granted_credits": Decimal("10")})
    catalog.rate(sub, catalog.api_charge, units="100", amount="4.000000", state="open")
    assert balances([wallet])[wallet.pk].usage_amount == Decimal("4")  # 5.00 of credits - 4.00 of usage: positive
    assert tasks.expire_wallets() == {"terminated": 0, "depleted": 0}

    catalog.rate(sub, catalog.api_charge, units="125", amount="5.000000", state="open")
    assert tasks.expire_wallets()["depleted"] == 1
    assert tasks.expire_wallets()["depleted"] == 0  # once
    [body] = depleted()
    assert body["object_type"] == "wallet" and body["wallet"]["ongoing_balance_cents"] == 0

    services.create_transactions(wallet=wallet, data={"granted_credits": Decimal("4")})  # positive again
    assert tasks.expire_wallets()["depleted"] == 0
    catalog.rate(sub, catalog.api_charge, units="200", amount="8.000000", state="open")
    assert tasks.expire_wallets()["depleted"] == 1
    assert [b["wallet"]["ongoing_balance_cents"] for b in depleted()] == [0, -100]
