from celery import shared_task

from identity.services import purge_idempotency_keys as purge


@shared_task(name="identity.tasks.purge_idempotency_keys")
def purge_idempotency_keys() -> int:
    return purge()


@shared_task(name="identity.tasks.activate_due_subscriptions")
def activate_due_subscriptions() -> int:
    """Start pending subscriptions whose subscription_at has come (emits subscription.started)."""
    from metering.services import activate_due_subscriptions as activate

    return activate()
