"""Celery tasks of wallets (beat): expiry and the depleted ongoing balance notice."""
from __future__ import annotations

from celery import shared_task

from wallets import services


@shared_task(name="wallets.tasks.expire_wallets", ignore_result=True)
def expire_wallets() -> dict[str, int]:
    """Terminate the wallets whose ``expiration_at`` has come (their credits voided), then send
    ``wallet.depleted_ongoing_balance`` where the ongoing balance reached 0."""
    return {"terminated": services.terminate_expired_wallets(),
            "depleted": services.announce_depleted_ongoing_balances()}
