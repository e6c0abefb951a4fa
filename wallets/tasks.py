"""Celery tasks of wallets (beat): expiry, the depleted ongoing balance notice and recurring top-ups."""
from __future__ import annotations

from celery import shared_task

from wallets import services


@shared_task(name="wallets.tasks.expire_wallets", ignore_result=True)
def expire_wallets() -> dict[str, int]:
    """Terminate the wallets whose ``expiration_at`` has come (their credits voided), then send
    ``wallet.depleted_ongoing_balance`` where the ongoing balance reached 0."""
    return {"terminated": services.terminate_expired_wallets(),
            "depleted": services.announce_depleted_ongoing_balances()}


@shared_task(name="wallets.tasks.run_recurring_top_ups", ignore_result=True)
def run_recurring_top_ups() -> dict[str, int]:
    """Lago's recurring transaction rules: expired rules end, due interval rules top up (once per due date,
    however often this runs or is retried), threshold rules crossed by new usage top up (once per crossing)."""
    return {"rules_expired": services.terminate_expired_rules(),
            "interval": services.run_interval_rules(),
            "threshold": services.run_threshold_rules()}
