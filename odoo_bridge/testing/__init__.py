"""Test doubles for the Odoo bridge: a protocol-faithful fake Odoo server.

- `server.FakeOdoo`: the HTTP server (JSON-RPC + Odoo 19 JSON-2), fault injection, call counters.
- `store.Store`: the records and the ORM semantics (`Store(installed_modules=...)` for sale_stock /
  sale_timesheet delivered-quantity methods).
- `business`: public methods callable over RPC (`action_confirm`, `set_close`, `action_post`, ...)
  and what Odoo or a person does by itself (`register_payment`, `reverse_invoice`).
- `invoicing`: how Odoo invoices (reference/odoo.md §3.4-§3.7): the recurring-invoice cron
  (`run_invoicing_cron`, also `ir.cron.method_direct_trigger` on
  `sale_subscription.account_analytic_cron_for_invoice`), the expiration cron (`run_expiration_cron`),
  the public wizard `sale.advance.payment.inv` (`create_invoices`), prepaid and postpaid
  (`invoice_policy='delivery'`) recurring lines, `qty_invoiced` computed from invoice lines.
- `ledger`: money assertions over the books, in Decimal: `invoiced_quantity(store, order_id,
  product_id)`, `invoiced_totals(store, order_id)` (out_invoice minus out_refund, per product),
  `billed_periods(store, order_id, product_id)`, `invoices(store, order_id)` (lines and deferred
  periods). Also on `FakeOdoo` as `fake.invoiced_quantity(...)`, `fake.invoiced_totals(...)`,
  `fake.invoices(...)`.
"""

from .server import Fault, FakeOdoo

__all__ = ["FakeOdoo", "Fault"]
