"""In-memory imitation of the Odoo ORM for the fake server.

Only what the bridge and its tests need, but with Odoo's observable
semantics (reference/odoo.md §1.6 and §5): ``false`` for empty values,
many2one read as ``[id, display_name]``, x2many command triplets, float
fields rounded to their digits on write, ``ValidationError`` for a missing
required field, ``ValueError`` for an unknown field, ``UserError`` for a
line removed from a confirmed order.
"""

from __future__ import annotations

import calendar
import datetime as dt
import itertools
import threading
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Callable, Iterable


# base `res.partner._commercial_fields()` (the fields the fake models): owned by the commercial entity
COMMERCIAL_FIELDS = ("vat",)


class OdooException(Exception):
    """An exception that the server serializes into Odoo's error envelope."""

    odoo_name = "odoo.exceptions.UserError"

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class UserError(OdooException):
    odoo_name = "odoo.exceptions.UserError"


class ValidationError(OdooException):
    odoo_name = "odoo.exceptions.ValidationError"


class AccessError(OdooException):
    odoo_name = "odoo.exceptions.AccessError"


class AccessDenied(OdooException):
    odoo_name = "odoo.exceptions.AccessDenied"

    def __init__(self, message: str = "Access Denied"):
        super().__init__(message)


class MissingError(OdooException):
    odoo_name = "odoo.exceptions.MissingError"


class PythonValueError(OdooException):
    odoo_name = "builtins.ValueError"


class PythonAttributeError(OdooException):
    odoo_name = "builtins.AttributeError"


class PythonKeyError(OdooException):
    odoo_name = "builtins.KeyError"


class ConcurrencyError(OdooException):
    odoo_name = "psycopg2.errors.SerializationFailure"

    def __init__(self, message: str = "could not serialize access due to concurrent update"):
        super().__init__(message)


@dataclass
class FieldSpec:
    type: str
    string: str = ""
    relation: str | None = None
    inverse: str | None = None
    required: bool = False
    readonly: bool = False
    selection: list[tuple[str, str]] | None = None
    default: Any = None
    compute: Callable[["Store", str, dict], Any] | None = None
    related: tuple[str, str] | None = None
    digits: tuple[int, int] | None = None

    @property
    def stored(self) -> bool:
        return self.compute is None and self.related is None and self.type != "one2many"


@dataclass
class ModelSpec:
    name: str
    description: str
    fields: dict[str, FieldSpec]
    order: str = "id"
    rec_name: str = "name"


def _today() -> dt.date:
    return dt.datetime.now(dt.timezone.utc).date()


def add_period(day: dt.date, *, value: int, unit: str) -> dt.date:
    if unit == "day":
        return day + dt.timedelta(days=value)
    if unit == "week":
        return day + dt.timedelta(weeks=value)
    months = value * (12 if unit == "year" else 1)
    month_index = day.month - 1 + months
    year = day.year + month_index // 12
    month = month_index % 12 + 1
    last = calendar.monthrange(year, month)[1]
    return dt.date(year, month, min(day.day, last))


def _round(value: Any, digits: int) -> float:
    quantum = Decimal(1).scaleb(-digits)
    return float(Decimal(str(value or 0)).quantize(quantum, rounding=ROUND_HALF_UP))  # ok-float: Odoo money is float on the wire


class Store:
    """All records of one fake database, guarded by one lock (one 'transaction' per call)."""

    def __init__(self, *, major_version: int, price_digits: int, quantity_digits: int, currency_digits: int = 2,
                 clock: Callable[[], dt.datetime] | None = None, installed_modules: Iterable[str] = ()):
        self.major_version = major_version
        # Community modules that change sale behaviour when installed next to sale_subscription:
        # 'sale_stock' (goods lines get qty_delivered_method='stock_move'), 'sale_timesheet'
        # (service_type='timesheet' -> 'timesheet'). Default: neither, like the reference database.
        self.installed_modules = frozenset(installed_modules)
        self.price_digits = price_digits
        self.quantity_digits = quantity_digits
        self.currency_digits = currency_digits
        self.clock = clock or (lambda: dt.datetime.now(dt.timezone.utc))
        self.lock = threading.RLock()
        self.models: dict[str, ModelSpec] = {}
        self.records: dict[str, dict[int, dict]] = {}
        self._ids = itertools.count(1)
        self._sequences: dict[str, itertools.count] = {}
        self.xmlids: dict[tuple[str, str], tuple[str, int]] = {}
        self.writes_to_invoiced_lines = 0
        self._inverses: dict[tuple[str, str], list[tuple[str, str]]] = {}
        self._define_models()
        for spec in self.models.values():
            self.records[spec.name] = {}
            for fname, f in spec.fields.items():
                if f.type == "one2many":
                    self._inverses.setdefault((f.relation, f.inverse), []).append((spec.name, fname))
        self._seed()

    # ------------------------------------------------------------------ schema
    @property
    def uom_field(self) -> str:
        return "product_uom_id" if self.major_version >= 19 else "product_uom"

    @property
    def line_tax_field(self) -> str:
        return "tax_ids" if self.major_version >= 19 else "tax_id"

    def _define_models(self) -> None:
        F = FieldSpec
        v = self.major_version
        price = (16, self.price_digits)
        qty = (16, self.quantity_digits)
        audit = {
            "create_date": F("datetime", "Created on", readonly=True),
            "write_date": F("datetime", "Last Updated on", readonly=True),
            "display_name": F("char", "Display Name", readonly=True, compute=lambda s, m, r: s.display_name(m, r)),
        }

        def model(name, description, fields, order="id", rec_name="name"):
            fields = {**fields, **audit}
            self.models[name] = ModelSpec(name, description, fields, order, rec_name)

        model("res.users", "User", {
            "name": F("char", "Name", required=True), "login": F("char", "Login", required=True),
            "partner_id": F("many2one", "Related Partner", relation="res.partner"),
        })
        model("res.country", "Country", {"name": F("char", "Country Name", required=True),
                                         "code": F("char", "Country Code")})
        model("res.country.state", "Country state", {
            "name": F("char", "State Name", required=True), "code": F("char", "State Code", required=True),
            "country_id": F("many2one", "Country", relation="res.country", required=True)})
        model("res.currency", "Currency", {
            "name": F("char", "Currency", required=True), "symbol": F("char", "Symbol"),
            "decimal_places": F("integer", "Decimal Places"), "rounding": F("float", "Rounding Factor"),
            "active": F("boolean", "Active", default=True)})
        # product `product.pricelist`: sale orders take their currency from it (sale `_compute_currency_id`)
        model("product.pricelist", "Pricelist", {
            "name": F("char", "Pricelist Name", required=True),
            "currency_id": F("many2one", "Currency", relation="res.currency", required=True,
                             default=lambda s, vals: s.xmlid_id("base", "CAD")),
            "sequence": F("integer", "Sequence", default=16),
            "active": F("boolean", "Active", default=True)}, order="sequence asc, id asc")
        model("uom.uom", "Product Unit of Measure", {"name": F("char", "Unit of Measure", required=True)})
        model("res.partner", "Contact", {
            "name": F("char", "Name", required=True), "email": F("char", "Email"), "phone": F("char", "Phone"),
            "ref": F("char", "Reference"), "vat": F("char", "Tax ID"), "lang": F("char", "Language"),
            "is_company": F("boolean", "Is a Company", default=False),
            "company_name": F("char", "Company Name"),
            "parent_id": F("many2one", "Related Company", relation="res.partner"),
            "street": F("char", "Street"), "street2": F("char", "Street2"), "city": F("char", "City"),
            "zip": F("char", "Zip"),
            "state_id": F("many2one", "State", relation="res.country.state"),
            "country_id": F("many2one", "Country", relation="res.country"),
            "customer_rank": F("integer", "Customer Rank", default=0),
            "active": F("boolean", "Active", default=True),
            # base `res.partner.type`; 17 dropped 'private'
            "type": F("selection", "Address Type", default="contact", selection=[
                ("contact", "Contact"), ("invoice", "Invoice Address"), ("delivery", "Delivery Address"),
                ("other", "Other Address")]),
            "child_ids": F("one2many", "Contact", relation="res.partner", inverse="parent_id"),
            "property_account_position_id": F("many2one", "Fiscal Position", relation="account.fiscal.position"),
            "commercial_partner_id": F("many2one", "Commercial Entity", relation="res.partner", readonly=True,
                                       compute=lambda s, m, r: s.commercial_partner(r["id"])),
        }, order="name, id")
        # account `account.fiscal.position` (+ its tax mapping); auto-applied by the delivery address
        model("account.fiscal.position", "Fiscal Position", {
            "name": F("char", "Fiscal Position", required=True), "sequence": F("integer", "Sequence", default=10),
            "auto_apply": F("boolean", "Detect Automatically", default=False),
            "vat_required": F("boolean", "VAT required", default=False),
            "country_id": F("many2one", "Country", relation="res.country"),
            "state_ids": F("many2many", "Federal States", relation="res.country.state"),
            "tax_ids": F("one2many", "Tax Mapping", relation="account.fiscal.position.tax", inverse="position_id"),
            "active": F("boolean", "Active", default=True)})
        model("account.fiscal.position.tax", "Tax Mapping of Fiscal Position", {
            "position_id": F("many2one", "Fiscal Position", relation="account.fiscal.position", required=True),
            "tax_src_id": F("many2one", "Tax on Product", relation="account.tax", required=True),
            "tax_dest_id": F("many2one", "Tax to Apply", relation="account.tax")}, rec_name="position_id")
        model("account.tax", "Tax", {
            "name": F("char", "Tax Name", required=True), "amount": F("float", "Amount", digits=(16, 4)),
            "amount_type": F("selection", "Tax Computation", selection=[("percent", "Percentage of Price"),
                                                                         ("fixed", "Fixed")], default="percent"),
            "type_tax_use": F("selection", "Tax Type", selection=[("sale", "Sales"), ("purchase", "Purchases"),
                                                                   ("none", "None")], default="sale"),
            "active": F("boolean", "Active", default=True)})
        product_types = ([("consu", "Goods"), ("service", "Service"), ("product", "Storable Product")] if v == 17
                         else [("consu", "Goods"), ("service", "Service"), ("combo", "Combo")])
        template_fields = {
            "name": F("char", "Name", required=True), "default_code": F("char", "Internal Reference"),
            "type": F("selection", "Product Type", selection=product_types, default="consu", required=True),
            "list_price": F("float", "Sales Price", digits=price, default=1.0),
            "recurring_invoice": F("boolean", "Subscription Product", default=False),
            "invoice_policy": F("selection", "Invoicing Policy", selection=[("order", "Ordered quantities"),
                                                                             ("delivery", "Delivered quantities")],
                                default="order"),
            "service_type": F("selection", "Track Service", selection=[("manual", "Manually set quantities on order")]
                              + ([("timesheet", "Timesheets on tasks")] if "sale_timesheet" in self.installed_modules
                                 else []),
                              default="manual"),
            "taxes_id": F("many2many", "Customer Taxes", relation="account.tax"),
            "active": F("boolean", "Active", default=True),
        }
        model("product.template", "Product", {
            **template_fields,
            "product_variant_ids": F("one2many", "Products", relation="product.product", inverse="product_tmpl_id"),
            "product_variant_id": F("many2one", "Product", relation="product.product", readonly=True,
                                    compute=lambda s, m, r: (s.records[m][r["id"]].get("_o2m_product_variant_ids")
                                                             or [False])[0]),
        }, order="name, id")
        model("product.product", "Product Variant", {
            "product_tmpl_id": F("many2one", "Product Template", relation="product.template", required=True),
            **{name: FieldSpec(**{**f.__dict__, "required": False, "related": ("product_tmpl_id", name)})
               for name, f in template_fields.items() if name != "active"},
            "active": F("boolean", "Active", default=True),
        }, order="default_code, name, id")
        model("sale.subscription.plan", "Subscription Plan", {
            "name": F("char", "Name", required=True, default="Monthly"),
            "billing_period_value": F("integer", "Duration", required=True, default=1),
            "billing_period_unit": F("selection", "Unit", required=True, default="month",
                                     selection=[("week", "Weeks"), ("month", "Months"), ("year", "Years")]),
            "auto_close_limit": F("integer", "Automatic Closing", default=15),
            "active": F("boolean", "Active", default=True)})
        model("sale.order.close.reason", "Subscription Close Reason", {"name": F("char", "Reason", required=True)})
        model("payment.token", "Payment Token", {
            "partner_id": F("many2one", "Partner", relation="res.partner", required=True),
            "provider_ref": F("char", "Provider Reference", required=True),
            "payment_details": F("char", "Payment Details"), "active": F("boolean", "Active", default=True)})
        # payment (+ account_payment's invoice_ids): a charge attempt; `state` moves as the provider answers
        model("payment.transaction", "Payment Transaction", {
            "reference": F("char", "Reference", required=True),
            "state": F("selection", "Status", default="draft", readonly=True, selection=[
                ("draft", "Draft"), ("pending", "Pending"), ("authorized", "Authorized"), ("done", "Confirmed"),
                ("cancel", "Canceled"), ("error", "Error")]),
            "state_message": F("text", "Message", readonly=True),
            "provider_code": F("char", "Provider Code", readonly=True, default="stripe"),
            "amount": F("float", "Amount", required=True),
            "partner_id": F("many2one", "Customer", relation="res.partner", required=True),
            "token_id": F("many2one", "Payment Token", relation="payment.token"),
            "invoice_ids": F("many2many", "Invoices", relation="account.move"),
            "last_state_change": F("datetime", "Last State Change Date", readonly=True),
        }, rec_name="reference")
        states = [("draft", "Quotation"), ("sent", "Quotation Sent"), ("sale", "Sales Order"), ("cancel", "Cancelled")]
        sub_states = [("1_draft", "Quotation"), ("2_renewal", "Renewal Quotation"), ("3_progress", "In Progress"),
                      ("4_paused", "Paused"), ("5_renewed", "Renewed"), ("6_churn", "Churned"), ("7_upsell", "Upsell")]
        model("sale.order", "Sales Order", {
            "name": F("char", "Order Reference", required=True, readonly=True,
                      default=lambda s, vals: s.next_sequence("sale.order", "S{:05d}")),
            "partner_id": F("many2one", "Customer", relation="res.partner", required=True),
            "client_order_ref": F("char", "Customer Reference"),
            "state": F("selection", "Status", selection=states, default="draft", readonly=True),
            "date_order": F("datetime", "Order Date", required=True,
                            default=lambda s, vals: s.now_string()),
            # sale 17: the pricelist (default: the company's, in its currency) and the currency it gives
            # (`_compute_currency_id`: the pricelist's, else the company's); invoices take the order's
            "pricelist_id": F("many2one", "Pricelist", relation="product.pricelist",
                              default=lambda s, vals: s.xmlid_id("product", "list0")),
            "currency_id": F("many2one", "Currency", relation="res.currency", readonly=True,
                             compute=lambda s, m, r: s.order_currency(r)),
            "plan_id": F("many2one", "Recurring Plan", relation="sale.subscription.plan"),
            "subscription_state": F("selection", "Subscription Status", selection=sub_states),
            "is_subscription": F("boolean", "Recurring", readonly=True,
                                 compute=lambda s, m, r: bool(r.get("plan_id"))
                                 and r.get("subscription_state") != "7_upsell"),
            "start_date": F("date", "Start Date"), "next_invoice_date": F("date", "Date of Next Invoice"),
            "end_date": F("date", "End Date"),
            "last_invoice_date": F("date", "Last invoice date", readonly=True,
                                   compute=lambda s, m, r: s.order_last_invoice_date(r)),
            "close_reason_id": F("many2one", "Close Reason", relation="sale.order.close.reason"),
            "payment_token_id": F("many2one", "Payment Token", relation="payment.token"),
            # sale: the invoice and delivery addresses default to `address_get` of the customer; the
            # fiscal position (so the taxes of new lines) follows the delivery address
            "partner_invoice_id": F("many2one", "Invoice Address", relation="res.partner", required=True,
                                    default=lambda s, vals: s.address_get(vals.get("partner_id"), "invoice")),
            "partner_shipping_id": F("many2one", "Delivery Address", relation="res.partner", required=True,
                                     default=lambda s, vals: s.address_get(vals.get("partner_id"), "delivery")),
            "fiscal_position_id": F("many2one", "Fiscal Position", relation="account.fiscal.position",
                                    default=lambda s, vals: s.order_fiscal_position(vals)),
            # technical flags of the recurring-invoice domain (reference §3.1, §3.6 step 1)
            "payment_exception": F("boolean", "Contract in exception", default=False),
            "pending_transaction": F("boolean", "Pending transaction", default=False),
            "is_batch": F("boolean", "Is batch", default=False),
            "is_invoice_cron": F("boolean", "Is a Subscription invoiced in cron", default=False),
            "invoice_ids": F("many2many", "Invoices", relation="account.move", readonly=True,
                             compute=lambda s, m, r: s.order_invoice_ids(r["id"])),
            "invoice_count": F("integer", "Invoice Count", readonly=True,
                               compute=lambda s, m, r: len(s.order_invoice_ids(r["id"]))),
            "order_line": F("one2many", "Order Lines", relation="sale.order.line", inverse="order_id"),
            "locked": F("boolean", "Locked", default=False),
            "amount_untaxed": F("float", "Untaxed Amount", readonly=True,
                                compute=lambda s, m, r: s.order_amounts(r["id"])[0]),
            "amount_total": F("float", "Total", readonly=True, compute=lambda s, m, r: s.order_amounts(r["id"])[1]),
            "recurring_total": F("float", "Total Recurring", readonly=True,
                                 compute=lambda s, m, r: s.order_amounts(r["id"])[2]),
        }, order="date_order desc, id desc")
        model("sale.order.line", "Sales Order Line", {
            "order_id": F("many2one", "Order Reference", relation="sale.order", required=True),
            "product_id": F("many2one", "Product", relation="product.product"),
            "name": F("text", "Description", required=True,
                      default=lambda s, vals: s.product_name(vals.get("product_id"))),
            "product_uom_qty": F("float", "Quantity", digits=qty, default=1.0),
            self.uom_field: F("many2one", "Unit of Measure", relation="uom.uom",
                              default=lambda s, vals: s.xmlid_id("uom", "product_uom_unit")),
            "price_unit": F("float", "Unit Price", digits=price, default=0.0),
            "discount": F("float", "Discount (%)", digits=(16, 2), default=0.0),
            # like Odoo's _compute_tax_id: the product's customer taxes unless given
            self.line_tax_field: F("many2many", "Taxes", relation="account.tax",
                                   default=lambda s, vals: s.line_default_taxes(vals)),
            "qty_delivered_method": F("selection", "Method to update delivered qty", readonly=True, selection=[
                ("manual", "Manual"), ("analytic", "Analytic From Expenses"), ("stock_move", "Stock Moves"),
                ("timesheet", "Timesheets")], compute=lambda s, m, r: s.line_qty_delivered_method(r)),
            "qty_delivered": F("float", "Delivery Quantity", digits=qty, default=0.0),
            # computed from the invoice lines, like sale's _compute_qty_invoiced (see line_qty_invoiced)
            "qty_invoiced": F("float", "Invoiced Quantity", digits=qty, readonly=True,
                              compute=lambda s, m, r: s.line_qty_invoiced(r)),
            "qty_to_invoice": F("float", "Quantity To Invoice", digits=qty, readonly=True,
                                compute=lambda s, m, r: s.line_qty_to_invoice(r)),
            "invoice_lines": F("many2many", "Invoice Lines", relation="account.move.line", readonly=True,
                               compute=lambda s, m, r: [ln["id"] for ln in s.sale_line_invoice_lines(r["id"])]),
            "display_type": F("selection", "Display Type", selection=[("line_section", "Section"),
                                                                      ("line_note", "Note")]),
            "recurring_invoice": F("boolean", "Recurring", readonly=True,
                                   compute=lambda s, m, r: bool(s.product_value(r.get("product_id"),
                                                                                "recurring_invoice"))),
            "price_subtotal": F("float", "Subtotal", readonly=True,
                                compute=lambda s, m, r: s.line_subtotal(r)),
            "state": F("selection", "Order Status", selection=states, readonly=True,
                       compute=lambda s, m, r: s.records["sale.order"][r["order_id"]]["state"]),
        }, order="order_id, id", rec_name="name")
        model("account.move", "Journal Entry", {
            "name": F("char", "Number", default="/", readonly=True),
            "move_type": F("selection", "Type", required=True, default="entry", selection=[
                ("entry", "Journal Entry"), ("out_invoice", "Customer Invoice"), ("out_refund", "Customer Credit Note"),
                ("in_invoice", "Vendor Bill"), ("in_refund", "Vendor Credit Note")]),
            "state": F("selection", "Status", default="draft", readonly=True,
                       selection=[("draft", "Draft"), ("posted", "Posted"), ("cancel", "Cancelled")]),
            "payment_state": F("selection", "Payment Status", default="not_paid", readonly=True, selection=[
                ("not_paid", "Not Paid"), ("in_payment", "In Payment"), ("paid", "Paid"), ("partial", "Partially Paid"),
                ("reversed", "Reversed"), ("invoicing_legacy", "Invoicing App Legacy")]),
            "partner_id": F("many2one", "Partner", relation="res.partner"),
            "commercial_partner_id": F("many2one", "Commercial Entity", relation="res.partner", readonly=True,
                                       compute=lambda s, m, r: s.commercial_partner(r.get("partner_id"))),
            # account `_compute_fiscal_position_id`: from the partner and its delivery address unless given
            "fiscal_position_id": F("many2one", "Fiscal Position", relation="account.fiscal.position",
                                    default=lambda s, vals: s.fiscal_position_for(vals.get("partner_id"))),
            "invoice_date": F("date", "Invoice/Bill Date"), "invoice_date_due": F("date", "Due Date"),
            "date": F("date", "Date", default=lambda s, vals: s.today().isoformat()),
            "currency_id": F("many2one", "Currency", relation="res.currency",
                             default=lambda s, vals: s.xmlid_id("base", "CAD")),
            "invoice_line_ids": F("one2many", "Invoice lines", relation="account.move.line", inverse="move_id"),
            "amount_untaxed": F("float", "Untaxed Amount", readonly=True,
                                compute=lambda s, m, r: s.move_amounts(r["id"])[0]),
            "amount_tax": F("float", "Tax", readonly=True, compute=lambda s, m, r: s.move_amounts(r["id"])[1]),
            "amount_total": F("float", "Total", readonly=True, compute=lambda s, m, r: s.move_amounts(r["id"])[2]),
            "amount_residual": F("float", "Amount Due", readonly=True,
                                 compute=lambda s, m, r: s.move_residual(r)),
            "amount_paid": F("float", "Paid", default=0.0, readonly=True),
            "invoice_origin": F("char", "Origin"), "ref": F("char", "Reference"),
            "payment_reference": F("char", "Payment Reference"),
            "reversed_entry_id": F("many2one", "Reversal of", relation="account.move"),
            # portal.mixin: the customer portal page of an invoice and its access token (account: /my/invoices/<id>)
            "access_token": F("char", "Security Token"),
            "access_url": F("char", "Portal Access URL", readonly=True,
                            compute=lambda s, m, r: f"/my/invoices/{r['id']}"),
            # account_payment: the transactions paying it (the same relation as payment.transaction.invoice_ids)
            "transaction_ids": F("many2many", "Transactions", relation="payment.transaction", readonly=True,
                                 compute=lambda s, m, r: [t["id"] for t in s.records["payment.transaction"].values()
                                                          if r["id"] in (t.get("invoice_ids") or [])]),
            # account's inalterability hash: set when posted in a journal in strict mode (no reset to draft)
            "inalterable_hash": F("char", "Inalterability Hash", readonly=True),
        }, order="date desc, name desc, id desc")
        model("account.move.line", "Journal Item", {
            "move_id": F("many2one", "Journal Entry", relation="account.move", required=True),
            "product_id": F("many2one", "Product", relation="product.product"),
            "name": F("char", "Label"),
            "quantity": F("float", "Quantity", digits=qty, default=1.0),
            "price_unit": F("float", "Unit Price", digits=price, default=0.0),
            "discount": F("float", "Discount (%)", digits=(16, 2), default=0.0),
            # account `_compute_tax_ids`: the product's customer taxes mapped by the move's fiscal position
            "tax_ids": F("many2many", "Taxes", relation="account.tax",
                         default=lambda s, vals: s.move_line_default_taxes(vals)),
            "subscription_id": F("many2one", "Subscription", relation="sale.order"),
            "sale_line_ids": F("many2many", "Sales Order Lines", relation="sale.order.line"),
            "deferred_start_date": F("date", "Start Date"), "deferred_end_date": F("date", "End Date"),
            "display_type": F("selection", "Display Type", default="product", selection=[
                ("product", "Product"), ("line_section", "Section"), ("line_note", "Note")]),
            "price_subtotal": F("float", "Subtotal", readonly=True, compute=lambda s, m, r: s.line_subtotal(r)),
            "price_total": F("float", "Total", readonly=True, compute=lambda s, m, r: s.move_line_total(r)),
        }, order="move_id, id")
        # base `decimal.precision`: the digits of Float fields declared with digits='Product Price' etc.
        model("decimal.precision", "Decimal Precision", {
            "name": F("char", "Usage", required=True), "digits": F("integer", "Digits", required=True, default=2),
        })
        model("ir.cron", "Scheduled Actions", {
            "name": F("char", "Name", required=True), "code": F("text", "Python Code"),
            "user_id": F("many2one", "Scheduler User", relation="res.users"),
            "active": F("boolean", "Active", default=True),
            "interval_number": F("integer", "Interval Number", default=1),
            "interval_type": F("selection", "Interval Unit", default="months", selection=[
                ("minutes", "Minutes"), ("hours", "Hours"), ("days", "Days"), ("weeks", "Weeks"),
                ("months", "Months")]),
            "nextcall": F("datetime", "Next Execution Date"), "lastcall": F("datetime", "Last Execution Date"),
        })
        # the public invoicing wizard of `sale` (reference §3.7 C); transient in Odoo
        model("sale.advance.payment.inv", "Sales Advance Payment Invoice", {
            "advance_payment_method": F("selection", "Create Invoice", required=True, default="delivered", selection=[
                ("delivered", "Regular invoice"), ("percentage", "Down payment (percentage)"),
                ("fixed", "Down payment (fixed amount)")]),
            "sale_order_ids": F("many2many", "Sale Order", relation="sale.order"),
            "deduct_down_payments": F("boolean", "Deduct down payments", default=True),
            "consolidated_billing": F("boolean", "Consolidated Billing", default=True),
            "amount": F("float", "Down Payment"), "fixed_amount": F("float", "Down Payment Amount (Fixed)"),
        })

    def _seed(self) -> None:
        def seed(module, name, model, vals):
            rid = self.create(model, [vals], _bypass=True)[0]
            self.xmlids[(module, name)] = (model, rid)
            return rid

        seed("base", "user_admin", "res.users", {"name": "Billing Bot", "login": "bot"})
        seed("base", "CAD", "res.currency", {"name": "CAD", "symbol": "$", "decimal_places": self.currency_digits,
                                             "rounding": 10 ** -self.currency_digits})
        seed("base", "USD", "res.currency", {"name": "USD", "symbol": "$", "decimal_places": 2, "rounding": 0.01})
        seed("base", "EUR", "res.currency", {"name": "EUR", "symbol": "€", "decimal_places": 2, "rounding": 0.01})
        seed("base", "JPY", "res.currency", {"name": "JPY", "symbol": "¥", "decimal_places": 0, "rounding": 1.0})
        seed("base", "KWD", "res.currency", {"name": "KWD", "symbol": "د.ك", "decimal_places": 3,
                                             "rounding": 0.001})
        seed("product", "list0", "product.pricelist", {"name": "Public Pricelist",
                                                         "currency_id": self.xmlid_id("base", "CAD")})
        seed("base", "ca", "res.country", {"name": "Canada", "code": "CA"})
        seed("base", "us", "res.country", {"name": "United States", "code": "US"})
        seed("base", "state_ca_on", "res.country.state",
             {"name": "Ontario", "code": "ON", "country_id": self.xmlid_id("base", "ca")})
        seed("base", "state_ca_ab", "res.country.state",
             {"name": "Alberta", "code": "AB", "country_id": self.xmlid_id("base", "ca")})
        seed("uom", "product_uom_unit", "uom.uom", {"name": "Units"})
        seed("product", "decimal_price", "decimal.precision", {"name": "Product Price", "digits": self.price_digits})
        seed("uom", "decimal_product_uom", "decimal.precision",
             {"name": "Product Unit of Measure", "digits": self.quantity_digits})
        seed("account", "1_hst_sale_tax_13", "account.tax", {"name": "13% HST", "amount": 13.0})
        seed("account", "1_gst_sale_tax_5", "account.tax", {"name": "5% GST", "amount": 5.0})
        # l10n_ca `fiscal_position_template_on`: Ontario addresses pay HST instead of GST (reference §3.10)
        seed("account", "1_fiscal_position_template_on", "account.fiscal.position", {
            "name": "Ontario (ON)", "auto_apply": True, "country_id": self.xmlid_id("base", "ca"),
            "state_ids": [[6, 0, [self.xmlid_id("base", "state_ca_on")]]],
            "tax_ids": [[0, 0, {"tax_src_id": self.xmlid_id("account", "1_gst_sale_tax_5"),
                                "tax_dest_id": self.xmlid_id("account", "1_hst_sale_tax_13")}]]})
        seed("sale_subscription", "subscription_plan_month", "sale.subscription.plan",
             {"name": "Monthly", "billing_period_value": 1, "billing_period_unit": "month"})
        seed("sale_subscription", "subscription_plan_year", "sale.subscription.plan",
             {"name": "Yearly", "billing_period_value": 1, "billing_period_unit": "year"})
        for xml, reason in (("close_reason_1", "Subscription is too expensive"),
                            ("close_reason_end_of_contract", "End of contract"),
                            ("close_reason_auto_close_limit_reached", "Automatic closing"),
                            ("close_reason_unpaid_subscription", "Unpaid subscription")):
            seed("sale_subscription", xml, "sale.order.close.reason", {"name": reason})
        admin = self.xmlid_id("base", "user_admin")
        seed("sale_subscription", "account_analytic_cron_for_invoice", "ir.cron", {
            "name": "Sale Subscription: generate recurring invoices and payments", "user_id": admin,
            "code": "model._cron_recurring_create_invoice()", "interval_number": 1, "interval_type": "days"})
        seed("sale_subscription", "account_analytic_cron", "ir.cron", {
            "name": "Sale Subscription: subscriptions expiration", "user_id": admin,
            "code": "model._cron_subscription_expiration()", "interval_number": 1, "interval_type": "weeks"})

    # ----------------------------------------------------------------- helpers
    def now_string(self) -> str:
        return self.clock().astimezone(dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")

    def today(self) -> dt.date:
        return self.clock().astimezone(dt.timezone.utc).date()

    def next_sequence(self, key: str, pattern: str) -> str:
        counter = self._sequences.setdefault(key, itertools.count(1))
        return pattern.format(next(counter))

    def xmlid_id(self, module: str, name: str) -> int:
        return self.xmlids[(module, name)][1]

    def model(self, name: str) -> ModelSpec:
        spec = self.models.get(name)
        if spec is None:
            raise PythonKeyError(name)
        return spec

    def display_name(self, model: str, rec: dict) -> str | bool:
        if model == "product.product":
            code = self.get_value(model, rec, "default_code")
            name = self.get_value(model, rec, "name")
            return f"[{code}] {name}" if code else name
        if model == "account.move":
            return rec["name"] if rec.get("name") not in (None, "/", False) else f"Draft Invoice (* {rec['id']})"
        if model == "sale.order.line":
            order = self.records["sale.order"].get(rec.get("order_id"))
            return f"{order['name']} - {rec.get('name')}" if order else rec.get("name")
        if model == "sale.order.close.reason" or model in self.models:
            value = rec.get(self.models[model].rec_name)
            return value if value else f"{model},{rec['id']}"
        return False

    def product_name(self, product_id: int | None) -> str | bool:
        if not product_id:
            return False
        rec = self.records["product.product"].get(product_id)
        return self.display_name("product.product", rec) if rec else False

    def product_value(self, product_id: int | None, fname: str) -> Any:
        if not product_id or product_id not in self.records["product.product"]:
            return False
        return self.get_value("product.product", self.records["product.product"][product_id], fname)

    def get_value(self, model: str, rec: dict, fname: str) -> Any:
        """Raw value: many2one → int|False, x2many → list of ids."""
        if fname == "id":
            return rec["id"]
        f = self.models[model].fields[fname]
        if f.related:
            via, target = f.related
            parent_id = rec.get(via)
            if not parent_id:
                return False
            parent_model = self.models[model].fields[via].relation
            return self.get_value(parent_model, self.records[parent_model][parent_id], target)
        if f.compute:
            return f.compute(self, model, rec)
        if f.type == "one2many":
            return list(rec.get("_o2m_" + fname, []))
        value = rec.get(fname, False)
        if f.type == "many2many":
            return list(value or [])
        return False if value is None else value

    # ------------------------------------------------ partners: commercial entity, addresses, fiscal position
    def _commercial_sync_from_company(self, rec: dict) -> None:
        """base `_commercial_sync_from_company`: a contact given a parent takes its commercial entity's
        commercial fields (the VAT number), whatever it was created or written with."""
        commercial = self.records["res.partner"].get(self.commercial_partner(rec["id"]))
        if commercial is not None and commercial["id"] != rec["id"]:
            for fname in COMMERCIAL_FIELDS:
                rec[fname] = commercial.get(fname, False)

    def _commercial_sync_to_children(self, rec: dict) -> None:
        """base `_commercial_sync_to_children`: a commercial entity's commercial fields, when written,
        overwrite those of every contact below it."""
        partners = self.records["res.partner"]
        to_scan = list(rec.get("_o2m_child_ids", []))
        while to_scan:
            child = partners[to_scan.pop()]
            if child.get("is_company"):
                continue
            for fname in COMMERCIAL_FIELDS:
                child[fname] = rec.get(fname, False)
            to_scan.extend(child.get("_o2m_child_ids", []))

    def commercial_partner(self, partner_id: int | None) -> int | bool:
        """base `_compute_commercial_partner`: the partner itself if it is a company or has no parent,
        else its parent's commercial partner."""
        partners = self.records["res.partner"]
        rec = partners.get(partner_id) if partner_id else None
        while rec is not None and not rec.get("is_company") and rec.get("parent_id"):
            rec = partners.get(rec["parent_id"])
        return rec["id"] if rec is not None else False

    def address_get(self, partner_id: int | None, adr_type: str) -> int | bool:
        """base `address_get([adr_type])`: the first contact of that type found depth-first among the
        partner's descendants (not companies), then its ancestors' up to the commercial entity; else its
        'contact', else the partner itself."""
        partners = self.records["res.partner"]
        if not partner_id or partner_id not in partners:
            return False
        wanted = {adr_type, "contact"}
        found: dict[str, int] = {}
        visited: set[int] = set()
        current: dict | None = partners[partner_id]
        while current is not None:
            to_scan = [current]
            while to_scan:
                record = to_scan.pop(0)
                visited.add(record["id"])
                kind = record.get("type") or "contact"
                if kind in wanted and kind not in found:
                    found[kind] = record["id"]
                if len(found) == len(wanted):
                    return found[adr_type]
                children = [partners[c] for c in record.get("_o2m_child_ids", [])
                            if c not in visited and not partners[c].get("is_company")]
                to_scan = children + to_scan
            if current.get("is_company") or not current.get("parent_id"):
                break
            current = partners.get(current["parent_id"])
        return found.get(adr_type) or found.get("contact") or partner_id

    def fiscal_position_for(self, partner_id: int | None, delivery_id: int | None = None) -> int | bool:
        """account `_get_fiscal_position(partner, delivery)`: a fiscal position set on the delivery address
        or the partner wins; else the auto-applied one matching the delivery address's country and state
        (a position naming states before one for the whole country; VAT-required ones first when the
        partner has a VAT number)."""
        partners = self.records["res.partner"]
        partner = partners.get(partner_id) if partner_id else None
        if partner is None:
            return False
        delivery = partners.get(delivery_id) if delivery_id else None
        delivery = delivery or partner
        manual = delivery.get("property_account_position_id") or partner.get("property_account_position_id")
        if manual:
            return manual
        commercial = partners.get(self.commercial_partner(partner["id"])) or partner
        vat_options = [True, False] if commercial.get("vat") else [False]
        positions = sorted((p for p in self.records["account.fiscal.position"].values()
                            if p.get("active", True) and p.get("auto_apply")),
                           key=lambda p: (p.get("sequence") or 0, p["id"]))
        for vat_required in vat_options:
            matching = [p for p in positions if bool(p.get("vat_required")) == vat_required
                        and (not p.get("country_id") or p["country_id"] == delivery.get("country_id"))]
            with_state = [p for p in matching if p.get("state_ids") and delivery.get("state_id") in p["state_ids"]]
            without_state = [p for p in matching if not p.get("state_ids")]
            for group in (with_state, [p for p in without_state if p.get("country_id")],
                          [p for p in without_state if not p.get("country_id")]):
                if group:
                    return group[0]["id"]
        return False

    def order_fiscal_position(self, vals: dict) -> int | bool:
        partner_id = vals.get("partner_id")
        shipping = vals.get("partner_shipping_id") or self.address_get(partner_id, "delivery")
        return self.fiscal_position_for(partner_id, shipping)

    def map_taxes(self, position_id: int | None, tax_ids: list[int]) -> list[int]:
        """account `map_tax`: each tax replaced by the position's mapping (removed when mapped to nothing)."""
        if not position_id:
            return list(tax_ids)
        mapping = [m for m in self.records["account.fiscal.position.tax"].values() if m["position_id"] == position_id]
        result: list[int] = []
        for tax in tax_ids:
            targets = [m.get("tax_dest_id") for m in mapping if m["tax_src_id"] == tax]
            for dest in targets or [tax]:
                if dest and dest not in result:
                    result.append(dest)
        return result

    def line_default_taxes(self, vals: dict) -> list[int]:
        """sale `_compute_tax_id`: the product's customer taxes mapped by the order's fiscal position."""
        taxes = list(self.product_value(vals.get("product_id"), "taxes_id") or [])
        order = self.records["sale.order"].get(vals.get("order_id")) or {}
        return self.map_taxes(order.get("fiscal_position_id"), taxes)

    def move_line_default_taxes(self, vals: dict) -> list[int]:
        """account `_compute_tax_ids` of a customer invoice line: the product's `taxes_id` mapped by the
        move's fiscal position (explicit `tax_ids` win, as the sale flow and reversals send them)."""
        move = self.records["account.move"].get(vals.get("move_id")) or {}
        if move.get("move_type") not in ("out_invoice", "out_refund") or not vals.get("product_id"):
            return []
        taxes = list(self.product_value(vals.get("product_id"), "taxes_id") or [])
        return self.map_taxes(move.get("fiscal_position_id"), taxes)

    def order_currency(self, order: dict) -> int | bool:
        """sale `_compute_currency_id`: the pricelist's currency, else the company's (CAD)."""
        pricelist = self.records["product.pricelist"].get(order.get("pricelist_id") or 0)
        return (pricelist or {}).get("currency_id") or self.xmlid_id("base", "CAD")

    def line_currency(self, rec: dict) -> int | bool:
        """The currency of an order line (its order's) or of a journal item (its move's)."""
        if rec.get("move_id"):
            return (self.records["account.move"].get(rec["move_id"]) or {}).get("currency_id") or False
        order = self.records["sale.order"].get(rec.get("order_id") or 0)
        return self.order_currency(order) if order else False

    def currency_round(self, value: Any, currency_id: int | bool | None = None) -> float:
        """Rounded to the currency's decimal places (`res.currency.round`); the company's when not given."""
        currency = self.records["res.currency"].get(currency_id or 0) if currency_id else None
        digits = int(currency["decimal_places"]) if currency else self.currency_digits
        return _round(value, digits)

    def line_subtotal(self, rec: dict) -> float:
        qty = rec.get("product_uom_qty", rec.get("quantity", 0)) or 0
        price = Decimal(str(rec.get("price_unit") or 0)) * Decimal(str(qty))
        price *= 1 - Decimal(str(rec.get("discount") or 0)) / 100
        return self.currency_round(price, self.line_currency(rec))

    def _taxes_of(self, rec: dict, fname: str) -> list[dict]:
        return [self.records["account.tax"][t] for t in rec.get(fname) or []]

    def line_tax(self, rec: dict, fname: str) -> Decimal:
        subtotal = Decimal(str(self.line_subtotal(rec)))
        total = Decimal(0)
        for tax in self._taxes_of(rec, fname):
            if tax["amount_type"] == "percent":
                total += subtotal * Decimal(str(tax["amount"])) / 100
            else:
                total += Decimal(str(tax["amount"]))
        return Decimal(str(self.currency_round(total, self.line_currency(rec))))

    def move_line_total(self, rec: dict) -> float:
        return self.currency_round(Decimal(str(self.line_subtotal(rec))) + self.line_tax(rec, "tax_ids"),
                                   self.line_currency(rec))

    def order_amounts(self, order_id: int) -> tuple[float, float, float]:
        order = self.records["sale.order"][order_id]
        untaxed = tax = recurring = Decimal(0)
        for line_id in order.get("_o2m_order_line", []):
            line = self.records["sale.order.line"][line_id]
            sub = Decimal(str(self.line_subtotal(line)))
            untaxed += sub
            tax += self.line_tax(line, self.line_tax_field)
            if self.product_value(line.get("product_id"), "recurring_invoice"):
                recurring += sub
        cur = self.order_currency(order)
        return (self.currency_round(untaxed, cur), self.currency_round(untaxed + tax, cur),
                self.currency_round(recurring, cur))

    def move_amounts(self, move_id: int) -> tuple[float, float, float]:
        move = self.records["account.move"][move_id]
        untaxed = tax = Decimal(0)
        for line_id in move.get("_o2m_invoice_line_ids", []):
            line = self.records["account.move.line"][line_id]
            if line.get("display_type", "product") != "product":
                continue
            untaxed += Decimal(str(self.line_subtotal(line)))
            tax += self.line_tax(line, "tax_ids")
        cur = move.get("currency_id")
        return self.currency_round(untaxed, cur), self.currency_round(tax, cur), self.currency_round(untaxed + tax, cur)

    def move_residual(self, rec: dict) -> float:
        if rec.get("state") != "posted" or rec.get("payment_state") == "reversed":
            return 0.0 if rec.get("state") != "draft" else self.move_amounts(rec["id"])[2]
        total = Decimal(str(self.move_amounts(rec["id"])[2]))
        return self.currency_round(max(total - Decimal(str(rec.get("amount_paid") or 0)), Decimal(0)),
                                   rec.get("currency_id"))

    # ------------------------------------- subscription periods, invoiced and invoiceable quantities
    def order_period(self, order: dict) -> tuple[int, str] | None:
        """(billing_period_value, billing_period_unit) of the order's plan, or None without a plan."""
        plan = self.records["sale.subscription.plan"].get(order.get("plan_id"))
        return (plan["billing_period_value"], plan["billing_period_unit"]) if plan else None

    @staticmethod
    def shift(day: dt.date, period: tuple[int, str], times: int) -> dt.date:
        return add_period(day, value=period[0] * times, unit=period[1])

    def order_last_invoice_date(self, order: dict) -> str | bool:
        """EE `last_invoice_date` = next_invoice_date - plan.billing_period (reference §3.1)."""
        period, nid = self.order_period(order), order.get("next_invoice_date")
        if not period or not nid:
            return False
        return self.shift(dt.date.fromisoformat(nid), period, -1).isoformat()

    def current_period(self, order: dict) -> tuple[dt.date, dt.date] | None:
        """[last_invoice_date, next_invoice_date - 1]: the period in progress. A postpaid line bills it at
        next_invoice_date (it has then elapsed); a prepaid line billed it in advance at its start."""
        period, nid = self.order_period(order), order.get("next_invoice_date")
        if not period or not nid:
            return None
        end = dt.date.fromisoformat(nid)
        return self.shift(end, period, -1), end - dt.timedelta(days=1)

    def coming_period(self, order: dict) -> tuple[dt.date, dt.date] | None:
        """[next_invoice_date, next_invoice_date + period - 1]: what a prepaid line bills at next_invoice_date."""
        period, nid = self.order_period(order), order.get("next_invoice_date")
        if not period or not nid:
            return None
        start = dt.date.fromisoformat(nid)
        return start, self.shift(start, period, 1) - dt.timedelta(days=1)

    def is_recurring_line(self, rec: dict) -> bool:
        """A subscription line: its product is a subscription product and the order has a plan (§3.4)."""
        order = self.records["sale.order"].get(rec.get("order_id")) or {}
        return bool(order.get("plan_id")) and bool(self.product_value(rec.get("product_id"), "recurring_invoice"))

    def is_postpaid_line(self, rec: dict) -> bool:
        """EE19 `_is_postpaid_line`: the product invoices delivered quantities (§3.4)."""
        return self.product_value(rec.get("product_id"), "invoice_policy") == "delivery"

    def line_qty_delivered_method(self, rec: dict) -> str:
        """sale's `_compute_qty_delivered_method` (+ sale_stock / sale_timesheet when installed).

        Base `sale` answers 'manual' for every line that is not an expense (the fake has no expenses).
        Odoo never *refuses* a write of `qty_delivered` (stored, readonly=False); on a non-manual line its
        own compute overwrites the value whenever the pickings/timesheets change. The fake keeps what was
        written and exposes the method so that a caller can check it is 'manual' before relying on it.
        """
        ptype = self.product_value(rec.get("product_id"), "type")
        if "sale_stock" in self.installed_modules and ptype in ("consu", "product"):
            return "stock_move"
        if ("sale_timesheet" in self.installed_modules and ptype == "service"
                and self.product_value(rec.get("product_id"), "service_type") == "timesheet"):
            return "timesheet"
        return "manual"

    def sale_line_invoice_lines(self, line_id: int) -> list[dict]:
        """`sale.order.line.invoice_lines`: invoice lines whose `sale_line_ids` contain the line."""
        return [ml for ml in self.records["account.move.line"].values() if line_id in (ml.get("sale_line_ids") or [])]

    def sale_line_invoiced(self, line_id: int, *, period: tuple[dt.date, dt.date] | None = None,
                           posted_only: bool = False) -> Decimal:
        """sale's `_prepare_qty_invoiced`: out_invoice quantities minus out_refund quantities of every move
        that is not cancelled (drafts count: a draft invoice already "invoices" its quantity). With
        `period`, only invoice lines whose deferred period starts inside it (a subscription period)."""
        total = Decimal(0)
        lo, hi = (period[0].isoformat(), period[1].isoformat()) if period else ("", "")
        for ml in self.sale_line_invoice_lines(line_id):
            move = self.records["account.move"].get(ml.get("move_id"))
            if move is None:
                continue
            if posted_only and move["state"] != "posted":
                continue
            if move["state"] == "cancel" and move.get("payment_state") != "invoicing_legacy":
                continue
            if period is not None and not (ml.get("deferred_start_date") and lo <= ml["deferred_start_date"] <= hi):
                continue
            sign = {"out_invoice": 1, "out_refund": -1}.get(move["move_type"], 0)
            total += sign * Decimal(str(ml.get("quantity") or 0))
        return total

    def line_qty_invoiced(self, rec: dict) -> float:
        """`qty_invoiced`. Non-recurring lines: community `sale` (every invoice ever, refunds subtract).
        Recurring lines of a running subscription: only what was invoiced for the period in progress
        (`current_period`), so that each period starts from zero while `qty_delivered` is never reset
        (reference §3.4; the period scoping is inferred, EE is not public)."""
        if self.is_recurring_line(rec):
            period = self.current_period(self.records["sale.order"][rec["order_id"]])
            if period is not None:
                return _round(self.sale_line_invoiced(rec["id"], period=period), self.quantity_digits)
        return _round(self.sale_line_invoiced(rec["id"]), self.quantity_digits)

    def line_qty_to_invoice(self, rec: dict) -> float:
        """sale's `_compute_qty_to_invoice`: (ordered or delivered, by invoice policy) - invoiced."""
        if rec.get("display_type"):
            return 0.0
        order = self.records["sale.order"][rec["order_id"]]
        if order["state"] != "sale":
            return 0.0
        base = rec.get("qty_delivered") if self.is_postpaid_line(rec) else rec.get("product_uom_qty")
        return _round(Decimal(str(base or 0)) - Decimal(str(self.line_qty_invoiced(rec))), self.quantity_digits)

    def order_invoice_ids(self, order_id: int) -> list[int]:
        """Moves linked to the order: through `sale_line_ids` of their lines, or `subscription_id`."""
        line_ids = set(self.records["sale.order"][order_id].get("_o2m_order_line", []))
        found = {ml["move_id"] for ml in self.records["account.move.line"].values()
                 if ml.get("move_id") and (ml.get("subscription_id") == order_id
                                           or line_ids & set(ml.get("sale_line_ids") or []))}
        return sorted(found)

    # --------------------------------------------------------- SQL constraints
    def check_sql_constraints(self, model: str, values: dict) -> None:
        """Constraints Postgres enforces; Odoo turns the IntegrityError into a ValidationError
        "The operation cannot be completed: <constraint message>" (`odoo/service/model.py`,
        `_as_validation_error`), and the whole call is rolled back."""
        if model == "sale.order":
            start, nid = values.get("start_date"), values.get("next_invoice_date")
            if start and nid and nid < start:
                raise ValidationError("The operation cannot be completed: "
                                      "The next invoice date of a sale order should be after its start date.")

    # ------------------------------------------------------------- conversion
    def _convert_in(self, model: str, fname: str, value: Any, rec_id: int | None) -> Any:
        spec = self.models[model]
        f = spec.fields.get(fname)
        if f is None:
            raise PythonValueError(f"Invalid field '{fname}' on model '{model}'")
        if value is False or value is None:
            if f.type in ("one2many", "many2many"):
                return []
            return False
        if f.type == "float":
            try:
                number = float(value)  # ok-float: wire value
            except (TypeError, ValueError):
                raise PythonValueError(f"could not convert string to float: {value!r}") from None
            return _round(number, f.digits[1]) if f.digits else number
        if f.type == "integer":
            return int(value)
        if f.type == "boolean":
            return bool(value)
        if f.type == "many2one":
            if isinstance(value, (list, tuple)):
                value = value[0]
            target = int(value)
            if target not in self.records[f.relation]:
                raise MissingError(
                    f"Record does not exist or has been deleted.\n(Record: {f.relation}({target},), User: 2)")
            return target
        if f.type == "selection":
            if value not in [k for k, _ in f.selection]:
                raise PythonValueError(f"Wrong value for {model}.{fname}: {value!r}")
            return value
        if f.type == "date":
            text = str(value)[:10]
            dt.date.fromisoformat(text)
            return text
        if f.type == "datetime":
            return str(value)[:19].replace("T", " ")
        return value

    # -------------------------------------------------------------------- CRUD
    def create(self, model: str, vals_list: list[dict], *, _bypass: bool = False) -> list[int]:
        spec = self.model(model)
        prepared: list[tuple[dict, dict]] = []
        for vals in vals_list:
            if not isinstance(vals, dict):
                raise PythonValueError("create() expects a dict or a list of dicts")
            plain, x2many = {}, {}
            for fname, value in vals.items():
                f = spec.fields.get(fname)
                if f is None:
                    raise PythonValueError(f"Invalid field '{fname}' on model '{model}'")
                if f.type in ("one2many", "many2many"):
                    x2many[fname] = value
                elif f.related:
                    x2many[fname] = value  # written through after creation
                else:
                    plain[fname] = self._convert_in(model, fname, value, None)
            for fname, f in spec.fields.items():
                if fname in plain or not f.stored:
                    continue
                if f.default is not None:
                    default = f.default(self, vals) if callable(f.default) else f.default
                    plain[fname] = default if default is not None else False
            if model == "product.product" and not plain.get("product_tmpl_id"):
                template_vals = {k: v for k, v in vals.items() if k in self.models["product.template"].fields
                                 and k != "product_variant_ids"}
                plain["product_tmpl_id"] = self.create("product.template", [template_vals], _bypass=True)[0]
                # the new template already made a variant: reuse it instead of creating a second one
                variant = self.records["product.template"][plain["product_tmpl_id"]]["_o2m_product_variant_ids"][0]
                prepared.append(({"_reuse": variant}, {}))
                continue
            missing = [fname for fname, f in spec.fields.items() if f.required and f.stored and not plain.get(fname)
                       and f.type not in ("boolean", "integer", "float")]
            if missing:
                f = spec.fields[missing[0]]
                raise ValidationError(
                    "The operation cannot be completed:\n- Create/update: a mandatory field is not set.\n"
                    "- Delete: another model requires the record being deleted. If possible, archive it instead.\n\n"
                    f"Model: {spec.description} ({model})\nField: {f.string} ({missing[0]})")
            self.check_sql_constraints(model, plain)
            prepared.append((plain, x2many))
        ids = []
        stamp = self.now_string()
        for plain, x2many in prepared:
            if "_reuse" in plain:
                ids.append(plain["_reuse"])
                continue
            rid = next(self._ids)
            rec = {"id": rid, **plain, "create_date": stamp, "write_date": stamp}
            self.records[model][rid] = rec
            self._link_inverse(model, rec, None)
            ids.append(rid)
            if x2many:
                self._write_one(model, rec, x2many, stamp)
            if model == "res.partner" and rec.get("parent_id"):
                self._commercial_sync_from_company(rec)
            if model == "product.template" and not rec.get("_o2m_product_variant_ids"):
                self.create("product.product", [{"product_tmpl_id": rid}], _bypass=True)
        return ids

    def _link_inverse(self, model: str, rec: dict, old: dict | None) -> None:
        for (child_model, m2o), parents in self._inverses.items():
            if child_model != model:
                continue
            for parent_model, o2m in parents:
                before = old.get(m2o) if old else False
                after = rec.get(m2o)
                if before == after and old is not None:
                    continue
                key = "_o2m_" + o2m
                if before and before in self.records[parent_model]:
                    lst = self.records[parent_model][before].setdefault(key, [])
                    if rec["id"] in lst:
                        lst.remove(rec["id"])
                if after and after in self.records[parent_model]:
                    self.records[parent_model][after].setdefault(key, []).append(rec["id"])

    def write(self, model: str, ids: list[int], vals: dict) -> bool:
        spec = self.model(model)
        for fname in vals:
            if fname not in spec.fields:
                raise PythonValueError(f"Invalid field '{fname}' on model '{model}'")
        records = self.browse(model, ids)
        stamp = self.now_string()
        for rec in records:  # all or nothing, like the one transaction of an RPC call
            prospective = {**rec, **{k: self._convert_in(model, k, v, rec["id"]) for k, v in vals.items()
                                     if spec.fields[k].stored and spec.fields[k].type not in ("one2many",
                                                                                             "many2many")}}
            self.check_sql_constraints(model, prospective)
        for rec in records:
            self._write_one(model, rec, vals, stamp)
        return True

    def _write_one(self, model: str, rec: dict, vals: dict, stamp: str) -> None:
        spec = self.models[model]
        if model == "sale.order.line" and ({"price_unit", "product_uom_qty"} & set(vals)) and (
                self.sale_line_invoiced(rec["id"]) > 0):
            self.writes_to_invoiced_lines += 1
        old = dict(rec)
        for fname, value in vals.items():
            f = spec.fields[fname]
            if f.related:
                via, target = f.related
                if rec.get(via):
                    parent_model = spec.fields[via].relation
                    self.write(parent_model, [rec[via]], {target: value})
                continue
            if f.compute:
                continue  # Odoo silently ignores writes to non-inverse computed fields
            if f.type == "one2many":
                self._apply_o2m(model, rec, fname, f, value)
            elif f.type == "many2many":
                rec[fname] = self._apply_m2m(f, list(rec.get(fname) or []), value)
            else:
                rec[fname] = self._convert_in(model, fname, value, rec["id"])
        rec["write_date"] = stamp
        self._link_inverse(model, rec, old)
        if model == "sale.order" and ({"partner_id", "partner_shipping_id"} & set(vals)):
            # stored computes (readonly=False) of sale: recomputed from the customer unless written too
            if "partner_id" in vals:
                for fname, kind in (("partner_invoice_id", "invoice"), ("partner_shipping_id", "delivery")):
                    if fname not in vals:
                        rec[fname] = self.address_get(rec.get("partner_id"), kind)
            if "fiscal_position_id" not in vals:
                rec["fiscal_position_id"] = self.fiscal_position_for(rec.get("partner_id"),
                                                                     rec.get("partner_shipping_id"))
        if model == "res.partner":
            if vals.get("parent_id"):
                self._commercial_sync_from_company(rec)
            if set(vals) & set(COMMERCIAL_FIELDS) and self.commercial_partner(rec["id"]) == rec["id"]:
                self._commercial_sync_to_children(rec)
        if model == "account.move.line" and rec.get("move_id"):
            self.records["account.move"][rec["move_id"]]["write_date"] = stamp

    def _commands(self, value: Any) -> list[list]:
        if value is False or value is None:
            return [[5, 0, 0]]
        if not isinstance(value, (list, tuple)):
            raise PythonValueError(f"Wrong value for x2many field: {value!r}")
        if all(isinstance(v, int) for v in value):
            return [[6, 0, list(value)]]
        return [list(c) for c in value]

    def _apply_o2m(self, model: str, rec: dict, fname: str, f: FieldSpec, value: Any) -> None:
        for cmd in self._commands(value):
            code = cmd[0]
            if code == 0:
                self.create(f.relation, [{**cmd[2], f.inverse: rec["id"]}])
            elif code == 1:
                self.write(f.relation, [cmd[1]], cmd[2])
            elif code in (2, 3):
                self.unlink(f.relation, [cmd[1]])
            elif code == 4:
                self.write(f.relation, [cmd[1]], {f.inverse: rec["id"]})
            elif code in (5, 6):
                current = list(rec.get("_o2m_" + fname, []))
                keep = set(cmd[2]) if code == 6 else set()
                stale = [i for i in current if i not in keep]
                if stale:
                    self.unlink(f.relation, stale)
                for i in keep:
                    self.write(f.relation, [i], {f.inverse: rec["id"]})
            else:
                raise PythonValueError(f"Unknown x2many command {code}")

    def _apply_m2m(self, f: FieldSpec, current: list[int], value: Any) -> list[int]:
        for cmd in self._commands(value):
            code = cmd[0]
            if code == 0:
                current.append(self.create(f.relation, [cmd[2]])[0])
            elif code == 1:
                self.write(f.relation, [cmd[1]], cmd[2])
            elif code == 2:
                self.unlink(f.relation, [cmd[1]])
                current = [i for i in current if i != cmd[1]]
            elif code == 3:
                current = [i for i in current if i != cmd[1]]
            elif code == 4:
                if cmd[1] not in current:
                    current.append(cmd[1])
            elif code == 5:
                current = []
            elif code == 6:
                current = list(cmd[2])
            for rid in current:
                if rid not in self.records[f.relation]:
                    raise MissingError(f"Record does not exist or has been deleted.\n(Record: {f.relation}({rid},))")
        return current

    def browse(self, model: str, ids: list[int]) -> list[dict]:
        table = self.records[self.model(model).name]
        missing = [i for i in ids if i not in table]
        if missing:
            raise MissingError(
                "Record does not exist or has been deleted.\n"
                f"(Record: {model}({', '.join(map(str, missing))},), User: 2)")
        return [table[i] for i in ids]

    def unlink(self, model: str, ids: list[int]) -> bool:
        records = self.browse(model, ids)
        if model == "sale.order":
            if any(r["state"] == "sale" for r in records):
                raise UserError("You can not delete a sent quotation or a confirmed sales order. "
                                "You must first cancel it.")
        if model == "sale.order.line":
            for r in records:
                if self.records["sale.order"][r["order_id"]]["state"] == "sale" and not r.get("display_type"):
                    raise UserError(
                        "Once a sales order is confirmed, you can't remove one of its lines (we need to track if "
                        "something gets invoiced or delivered).\nSet the quantity to 0 instead.")
        if model == "account.move" and any(r["state"] == "posted" for r in records):
            raise UserError("You cannot delete an entry which has been posted once.")
        for rec in records:
            spec = self.models[model]
            for fname, f in spec.fields.items():
                if f.type == "one2many":
                    children = list(rec.get("_o2m_" + fname, []))
                    if children:
                        for cid in children:
                            self.records[f.relation].pop(cid, None)
            gone = dict(rec)
            rec_copy = {**rec}
            for (child_model, m2o), _parents in self._inverses.items():
                if child_model == model:
                    rec_copy[m2o] = False
            self._link_inverse(model, rec_copy, gone)
            del self.records[model][rec["id"]]
        return True

    # ------------------------------------------------------------------ reads
    def read(self, model: str, ids: list[int], fields: list[str] | None, load: str | None = "_classic_read"
             ) -> list[dict]:
        spec = self.model(model)
        table = self.records[model]
        names = list(fields) if fields else [n for n in spec.fields]
        for name in names:
            if name != "id" and name not in spec.fields:
                raise PythonValueError(f"Invalid field '{name}' on model '{model}'")
        result = []
        for rid in ids:
            rec = table.get(rid)
            if rec is None:
                continue  # Odoo drops unknown ids from read() results
            row = {"id": rid}
            for name in names:
                if name == "id":
                    continue
                row[name] = self._convert_out(model, rec, name, load)
            result.append(row)
        return result

    def _convert_out(self, model: str, rec: dict, name: str, load: str | None) -> Any:
        f = self.models[model].fields[name]
        value = self.get_value(model, rec, name)
        if f.type == "many2one":
            if not value:
                return False
            if load == "_classic_read":
                target = self.records[f.relation].get(value)
                return [value, self.display_name(f.relation, target) if target else False]
            return value
        if f.type in ("one2many", "many2many"):
            return list(value or [])
        if f.type in ("char", "text", "date", "datetime", "selection") and value in (None, "", False):
            return False
        if f.type == "float":
            return float(value or 0.0)  # ok-float: wire value
        if f.type == "integer":
            return int(value or 0)
        return value

    def fields_get(self, model: str, allfields: list[str] | None = None, attributes: list[str] | None = None
                   ) -> dict:
        spec = self.model(model)
        out = {}
        for name, f in spec.fields.items():
            if allfields and name not in allfields:
                continue
            meta = {"type": f.type, "string": f.string or name, "required": f.required,
                    "readonly": f.readonly or bool(f.compute), "store": f.stored or f.type == "one2many",
                    "sortable": f.stored, "searchable": True, "name": name}
            if f.relation:
                meta["relation"] = f.relation
            if f.type == "one2many":
                meta["relation_field"] = f.inverse
            if f.selection is not None:
                meta["selection"] = [list(s) for s in f.selection]
            if f.digits is not None:
                meta["digits"] = list(f.digits)
            if attributes:
                meta = {k: v for k, v in meta.items() if k in attributes}
            out[name] = meta
        return out

    # ----------------------------------------------------------------- search
    def search(self, model: str, domain: list, offset: int = 0, limit: int | None = None,
               order: str | None = None) -> list[int]:
        spec = self.model(model)
        predicate = self.compile_domain(model, domain or [])
        matches = [rec for rec in self.records[model].values()
                   if (rec.get("active", True) is not False or "active" not in spec.fields
                       or self._mentions(domain, "active")) and predicate(rec)]
        for key, descending in reversed(self._parse_order(spec, order)):
            matches.sort(key=lambda r, k=key: self._sort_key(model, r, k), reverse=descending)
        ids = [r["id"] for r in matches]
        ids = ids[offset or 0:]
        if limit:
            ids = ids[:limit]
        return ids

    @staticmethod
    def _mentions(domain: list, fname: str) -> bool:
        return any(isinstance(t, (list, tuple)) and len(t) == 3 and t[0] == fname for t in domain or [])

    def _parse_order(self, spec: ModelSpec, order: str | None) -> list[tuple[str, bool]]:
        result = []
        for part in (order or spec.order).split(","):
            bits = part.strip().split()
            if not bits:
                continue
            name = bits[0]
            if name != "id" and name not in spec.fields:
                raise PythonValueError(f"Invalid field {name!r} on model {spec.name!r}")
            result.append((name, len(bits) > 1 and bits[1].lower() == "desc"))
        return result

    def _sort_key(self, model: str, rec: dict, name: str) -> tuple:
        value = self.get_value(model, rec, name)
        if value is False or value is None:
            return (0, "")
        return (1, value)

    def compile_domain(self, model: str, domain: list) -> Callable[[dict], bool]:
        items = [d for d in domain]
        stack: list[Callable[[dict], bool]] = []
        for item in reversed(items):
            if item == "&" or item == "|":
                a, b = stack.pop(), stack.pop()
                stack.append((lambda r, a=a, b=b: a(r) and b(r)) if item == "&" else
                             (lambda r, a=a, b=b: a(r) or b(r)))
            elif item == "!":
                a = stack.pop()
                stack.append(lambda r, a=a: not a(r))
            else:
                stack.append(self._compile_leaf(model, item))
        if not stack:
            return lambda r: True
        while len(stack) > 1:  # implicit '&' between leftover terms
            a, b = stack.pop(), stack.pop()
            stack.append(lambda r, a=a, b=b: a(r) and b(r))
        return stack[0]

    def _compile_leaf(self, model: str, leaf: Any) -> Callable[[dict], bool]:
        if not isinstance(leaf, (list, tuple)) or len(leaf) != 3:
            raise PythonValueError(f"Invalid leaf {leaf!r}")
        path, op, value = leaf
        if path in (1, 0, True, False):
            constant = bool(path) if op == "=" else not bool(path)
            return lambda r: constant
        spec = self.models[model]
        head, _, rest = str(path).partition(".")
        if head != "id" and head not in spec.fields:
            raise PythonValueError(f"Invalid field {model}.{head} in leaf {tuple(leaf)!r}")
        f = spec.fields.get(head)
        if rest:
            sub = self._compile_leaf(f.relation, [rest, op, value])
            table = self.records[f.relation]

            def traverse(rec, head=head, sub=sub, table=table):
                raw = self.get_value(model, rec, head)
                related = raw if isinstance(raw, list) else ([raw] if raw else [])
                return any(sub(table[i]) for i in related if i in table)
            return traverse
        ftype = f.type if f else "integer"
        if isinstance(value, (list, tuple)) and op in ("in", "not in"):
            value = set(value)
        if ftype == "many2one" and isinstance(value, str) and op in ("=", "ilike", "like", "!="):
            relation = f.relation

            def by_name(rec, relation=relation):
                rid = self.get_value(model, rec, head)
                target = self.records[relation].get(rid) if rid else None
                name = self.display_name(relation, target) if target else ""
                return _compare(name or "", op, value)
            return by_name
        if ftype in ("one2many", "many2many"):
            def x2many(rec):
                ids = self.get_value(model, rec, head)
                if value is False:
                    return (not ids) if op == "=" else bool(ids)
                if op in ("=", "in"):
                    wanted = value if isinstance(value, set) else {value}
                    return bool(wanted & set(ids))
                if op in ("!=", "not in"):
                    wanted = value if isinstance(value, set) else {value}
                    return not (wanted & set(ids))
                raise PythonValueError(f"Unsupported operator {op} on x2many")
            return x2many
        return lambda rec: _compare(self.get_value(model, rec, head), op, value)


def _compare(actual: Any, op: str, value: Any) -> bool:
    if op == "=":
        return actual == value or (value is False and actual in (None, "", False))
    if op == "!=":
        return not _compare(actual, "=", value)
    if op == "in":
        return actual in value or (False in value and actual in (None, "", False))
    if op == "not in":
        return not _compare(actual, "in", value)
    if op in ("like", "ilike", "not like", "not ilike", "=like", "=ilike"):
        text = "" if actual in (None, False) else str(actual)
        needle = str(value)
        if op.endswith("ilike"):
            text, needle = text.lower(), needle.lower()
        if op.startswith("="):
            import fnmatch
            return fnmatch.fnmatchcase(text, needle.replace("%", "*").replace("_", "?"))
        found = needle.replace("%", "") in text
        return not found if op.startswith("not") else found
    if actual in (None, False) or value is False:
        return False
    try:
        if op == "<":
            return actual < value
        if op == "<=":
            return actual <= value
        if op == ">":
            return actual > value
        if op == ">=":
            return actual >= value
    except TypeError:
        return False
    raise PythonValueError(f"Invalid operator {op!r}")
