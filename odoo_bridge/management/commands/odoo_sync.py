"""``python manage.py odoo_sync [--push] [--pull] [--full]``: one sync cycle (both when neither flag is given).

The push examines the subscriptions of the change log until none is due (no time budget,
unlike beat's cycles); ``--full`` first puts every subscription in it (the full sweep).
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from odoo_bridge.pull import pull_invoices
from odoo_bridge.sync import push_cycle


class Command(BaseCommand):
    help = "Run one Odoo sync cycle: push customers, plans, subscriptions and usage; pull invoices."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--push", action="store_true", help="push our objects to Odoo")
        parser.add_argument("--pull", action="store_true", help="pull invoices from Odoo")
        parser.add_argument("--full", action="store_true",
                            help="full sweep: examine every subscription, not only the changed ones")

    def handle(self, *args: Any, push: bool = False, pull: bool = False, full: bool = False,
               **options: Any) -> None:
        push = push or full
        both = not push and not pull
        failed = False
        if push or both:
            pushed = push_cycle(full=full, budget_seconds=None)
            self.stdout.write(
                f"push: {pushed.swept} subscription(s) swept, {pushed.changes_taken} change(s) taken, "
                f"{pushed.subscriptions_seen} subscription(s) seen, {pushed.partners_created} partner(s) "
                f"created, {pushed.orders_created} order(s) created, {pushed.orders_closed} closed, "
                f"{pushed.lines_created} line(s) created, {pushed.lines_updated} updated, {pushed.failed} failed, "
                f"{pushed.round_trips} RPC round trip(s)")
            if pushed.aborted:
                failed = True
                self.stderr.write(f"push stopped: {pushed.aborted}")
        if pull or both:
            pulled = pull_invoices()
            self.stdout.write(
                f"pull: {pulled.moves_seen} move(s) read, {pulled.invoices_created} invoice(s) created, "
                f"{pulled.invoices_updated} updated, {pulled.events} webhook event(s), cursor {pulled.cursor or '-'}")
            if pulled.aborted:
                failed = True
                self.stderr.write(f"pull stopped: {pulled.aborted}")
        if failed:
            raise SystemExit(1)
