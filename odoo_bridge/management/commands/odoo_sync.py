"""``python manage.py odoo_sync [--push] [--pull]``: one sync cycle (both when neither flag is given)."""

from __future__ import annotations

from django.core.management.base import BaseCommand

from odoo_bridge.pull import pull_invoices
from odoo_bridge.sync import push_cycle


class Command(BaseCommand):
    help = "Run one Odoo sync cycle: push customers, plans, subscriptions and usage; pull invoices."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--push", action="store_true", help="push our objects to Odoo")
        parser.add_argument("--pull", action="store_true", help="pull invoices from Odoo")

    def handle(self, *args, push: bool = False, pull: bool = False, **options) -> None:
        both = not push and not pull
        failed = False
        if push or both:
            report = push_cycle()
            self.stdout.write(
                f"push: {report.subscriptions_seen} subscription(s) seen, {report.partners_created} partner(s) "
                f"created, {report.orders_created} order(s) created, {report.orders_closed} closed, "
                f"{report.lines_created} line(s) created, {report.lines_updated} updated, {report.failed} failed, "
                f"{report.round_trips} RPC round trip(s)")
            if report.aborted:
                failed = True
                self.stderr.write(f"push stopped: {report.aborted}")
        if pull or both:
            report = pull_invoices()
            self.stdout.write(
                f"pull: {report.moves_seen} move(s) read, {report.invoices_created} invoice(s) created, "
                f"{report.invoices_updated} updated, {report.events} webhook event(s), cursor {report.cursor or '-'}")
            if report.aborted:
                failed = True
                self.stderr.write(f"pull stopped: {report.aborted}")
        if failed:
            raise SystemExit(1)
