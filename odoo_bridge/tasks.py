"""Celery tasks (queue ``odoo``): thin wrappers over the sync services."""

from __future__ import annotations

from celery import shared_task

from .pull import announce_overdue_invoices, pull_invoices
from .sync import full_sweep, push_cycle


@shared_task(name="odoo_bridge.tasks.push_to_odoo", ignore_result=True)
def push_to_odoo() -> dict:
    report = push_cycle()
    return {"aborted": report.aborted, "orders_created": report.orders_created, "failed": report.failed}


@shared_task(name="odoo_bridge.tasks.push_full_sweep", ignore_result=True)
def push_full_sweep() -> dict:
    """The safety net (daily): every subscription in the change log; the push cycles work through it."""
    return {"subscriptions": full_sweep()}


@shared_task(name="odoo_bridge.tasks.pull_from_odoo", ignore_result=True)
def pull_from_odoo() -> dict:
    report = pull_invoices()
    overdue = announce_overdue_invoices()
    return {"aborted": report.aborted, "invoices_created": report.invoices_created, "events": report.events,
            "overdue_announced": overdue}

