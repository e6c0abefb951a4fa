from celery import shared_task

from identity.services import purge_idempotency_keys as purge


@shared_task(name="identity.tasks.purge_idempotency_keys")
def purge_idempotency_keys() -> int:
    return purge()

