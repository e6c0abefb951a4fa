"""Writes of Lago's add-ons (``/add_ons``), scoped to the calling service.

An add-on is a catalogue price: billing one is a one-off invoice (``POST /invoices``,
``odoo_bridge.one_off``), which snapshots its name and price, so an update or a delete
never changes an invoice already made.
"""
from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from billing_kit.errors import ErrorCode, ValidationFailed
from billing_kit.formatting import from_cents
from identity.models import Service
from metering.models import AddOn


def create_add_on(*, service: Service, data: dict[str, Any]) -> AddOn:
    currency = data["amount_currency"]
    try:
        with transaction.atomic():
            return AddOn.objects.create(
                service=service, code=data["code"], name=data["name"],
                invoice_display_name=data.get("invoice_display_name") or "",
                description=data.get("description") or "",
                amount=from_cents(data["amount_cents"], currency), amount_currency=currency)
    except IntegrityError:
        raise ValidationFailed({"code": [ErrorCode.VALUE_ALREADY_EXIST]}) from None


def update_add_on(*, add_on: AddOn, data: dict[str, Any]) -> AddOn:
    currency = data.get("amount_currency") or add_on.amount_currency
    for field in ("code", "name"):
        if data.get(field):
            setattr(add_on, field, data[field])
    for field in ("invoice_display_name", "description"):
        if field in data:
            setattr(add_on, field, data[field] or "")
    add_on.amount_currency = currency
    if data.get("amount_cents") is not None:
        add_on.amount = from_cents(data["amount_cents"], currency)
    else:
        add_on.amount = Decimal(add_on.amount)
    try:
        with transaction.atomic():
            add_on.save()
    except IntegrityError:
        raise ValidationFailed({"code": [ErrorCode.VALUE_ALREADY_EXIST]}) from None
    return add_on


def delete_add_on(*, add_on: AddOn) -> AddOn:
    """Lago's soft delete: the code can be used again; invoices keep what they billed."""
    add_on.deleted_at = timezone.now()
    add_on.save(update_fields=["deleted_at", "updated_at"])
    return add_on
