import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "billing_project.settings")

app = Celery("billing_project")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.update(
    # Celery's default gives up re-connecting after 100 attempts and the worker exits: an
    # outage of a few minutes would then stop every queue for good. Retry forever instead.
    broker_connection_max_retries=None,
    # Tasks are idempotent (claims, outbox rows) so a message restored on connection loss
    # may run again; cancelling running tasks instead would cut webhook sends mid-request.
    worker_cancel_long_running_tasks_on_connection_loss=False,
)
app.autodiscover_tasks()


def _guard_channels_of_closed_connections() -> None:
    """Make kombu's Redis channels report a closed connection as a connection error (#17 F0).

    When the broker goes away, the worker's consumer closes its connection: kombu drops
    the channel's redis pool and sets the transport's ``client`` to None. A late
    acknowledgement (``task_acks_late``) of a message received on that channel, run
    afterwards, asks the channel for a client; the channel rebuilds its pool from
    ``transport.client.hostname`` and raises ``AttributeError`` — not one of the
    transport's ``connection_errors`` — so ``Message.ack_log_error`` does not catch it
    and the worker dies with "Unrecoverable error". Raised as redis' ``ConnectionError``
    instead, the ack is logged and skipped; the message was already restored to its queue
    when the channel closed, so it runs again, and every task here is idempotent.
    """
    try:
        from kombu.transport import redis as kombu_redis
        from redis.exceptions import ConnectionError as RedisConnectionError
    except ImportError:  # the embedded file-system broker does not need redis
        return
    original = kombu_redis.Channel._connparams
    if getattr(original, "closed_connection_guard", False):
        return

    def _connparams(self, asynchronous=False):  # noqa: ANN001, ANN202
        transport = self.connection
        if transport is None or getattr(transport, "client", None) is None:
            raise RedisConnectionError("the broker connection of this channel was closed")
        return original(self, asynchronous=asynchronous)

    _connparams.closed_connection_guard = True  # type: ignore[attr-defined]
    setattr(kombu_redis.Channel, "_connparams", _connparams)  # noqa: B010 - a patch, kept visible


_guard_channels_of_closed_connections()
