"""Lago's invoice actions, realised in Odoo through public methods only.

Each action is **synchronous**: its answer is Odoo's state after the call (the invoice re-read
from Odoo and mirrored, with the webhook events the pull would record), so an Odoo that cannot
be reached is a ``503 odoo_unavailable`` the client may retry, and an Odoo refusal is Lago's
``405`` code for the action with Odoo's message. Nothing is queued: a lost answer from Odoo
leaves Odoo's state for the next pull to mirror.

- ``download``: the PDF on Odoo's customer portal, ``get_portal_url(report_type="pdf",
  download=True)`` (portal.mixin, public; it makes the record's access token once, so the link
  works without a login), stored as the invoice's ``file_url``.
- credit note ``download``: the same for a credit note (its refund move's portal PDF), ``file_url`` of
  the credit note.
- ``payment_url``: the invoice's portal page (``get_portal_url()``), where Odoo offers the
  customer to pay it with the company's payment providers.
- ``void``: ``account.move.button_cancel`` (Odoo 17: posted → draft → cancelled, refused for an
  entry with a payment or in a hashed journal). Lago voids finalized invoices not paid only.
- ``finalize``: ``action_post`` of a draft; any other invoice is answered as it is (Lago).
- ``refresh``: the invoice mirrored again from Odoo now.
- Customer ``portal_url``: Odoo's customer portal, its invoices page (``/my/invoices``), where the
  customer signs in with the portal user ops granted them.
"""

from __future__ import annotations

from typing import Any

from billing_kit.errors import ErrorCode, NotAllowed, ServiceUnavailable, ValidationFailed
from identity.models import AccountLink

from .client import OdooClient, OdooError, OdooRemoteError
from .connection import CycleAborted, odoo_settings, open_client, portal_base_url, record_connection_failure
from .models import CreditNote, Invoice, InvoicePaymentStatus, InvoiceStatus
from .pull import pull_move

MODEL = "account.move"


def _client() -> OdooClient:
    try:
        return open_client()
    except CycleAborted as exc:
        raise ServiceUnavailable(error=f"Service Unavailable: Odoo: {exc}") from exc


def _call(client: OdooClient, method: str, args: list, kwargs: dict | None = None, *,
          refused: str = ErrorCode.METHOD_NOT_ALLOWED) -> Any:
    """One Odoo call; a refusal (UserError...) is a 405 with ``refused`` and Odoo's message."""
    try:
        return client.call(MODEL, method, args, kwargs or {})
    except OdooRemoteError as exc:
        raise NotAllowed(refused, error_details={"odoo": exc.message}) from exc
    except OdooError as exc:
        record_connection_failure(exc, settings_=odoo_settings())
        raise ServiceUnavailable(error=f"Service Unavailable: Odoo: {exc}") from exc


def _mirrored(client: OdooClient, invoice: Invoice) -> Invoice:
    try:
        pull_move(client=client, move_id=invoice.odoo_move_id)
    except OdooError as exc:
        record_connection_failure(exc, settings_=odoo_settings())
        raise ServiceUnavailable(error=f"Service Unavailable: Odoo: {exc}") from exc
    invoice.refresh_from_db()
    return invoice


def download(*, invoice: Invoice) -> Invoice:
    if invoice.status == InvoiceStatus.DRAFT:
        raise NotAllowed("is_draft")  # Lago: a draft has no PDF
    if not invoice.file_url:
        client = _client()
        path = _call(client, "get_portal_url", [[invoice.odoo_move_id]], {"report_type": "pdf", "download": True})
        invoice.file_url = portal_base_url() + str(path)
        invoice.save(update_fields=["file_url", "updated_at"])
    return invoice


def download_credit_note(*, note: CreditNote) -> CreditNote:
    """Lago's credit note download: the refund's PDF on Odoo's portal, as an invoice's (portal.mixin)."""
    if not note.file_url:
        client = _client()
        path = _call(client, "get_portal_url", [[note.odoo_move_id]], {"report_type": "pdf", "download": True})
        note.file_url = portal_base_url() + str(path)
        note.save(update_fields=["file_url", "updated_at"])
    return note


def payment_url(*, invoice: Invoice) -> str:
    if (invoice.status != InvoiceStatus.FINALIZED
            or invoice.payment_status == InvoicePaymentStatus.SUCCEEDED):
        raise ValidationFailed({"base": ["invalid_status"]})  # Lago: drafts, voided or paid invoices
    path = _call(_client(), "get_portal_url", [[invoice.odoo_move_id]])
    return portal_base_url() + str(path)


def void(*, invoice: Invoice) -> Invoice:
    if (invoice.status != InvoiceStatus.FINALIZED
            or invoice.payment_status == InvoicePaymentStatus.SUCCEEDED):
        raise NotAllowed("not_voidable")  # Lago: only finalized invoices that are not paid
    client = _client()
    _call(client, "button_cancel", [[invoice.odoo_move_id]], refused="not_voidable")
    return _mirrored(client, invoice)


def finalize(*, invoice: Invoice) -> Invoice:
    if invoice.status != InvoiceStatus.DRAFT:
        return invoice  # Lago answers a finalized invoice as it is
    client = _client()
    _call(client, "action_post", [[invoice.odoo_move_id]], refused="not_finalizable")
    return _mirrored(client, invoice)


def refresh(*, invoice: Invoice) -> Invoice:
    return _mirrored(_client(), invoice)


def customer_portal_url(*, link: AccountLink) -> str:
    """The same page for every customer: Odoo's portal knows the customer by its portal login (Odoo has
    no public per-partner token link); ``link`` is the calling service's account, already checked."""
    if not portal_base_url():  # without Odoo there is no portal: the feature is off, as an unserved path
        raise NotAllowed("customer_portal_url_not_supported")
    return portal_base_url() + "/my/invoices"
