"""The webhooks outbox on the embedded SQLite default: written in the caller's transaction,
delivered by ``deliver_webhooks`` to a real local receiver, retried when it fails."""
from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import call_command
from django.db import transaction
from django.utils import timezone
from standardwebhooks.webhooks import Webhook

from identity.services import upsert_customer
from webhooks import services
from webhooks.models import WebhookDelivery, WebhookEvent
from webhooks.testing.receiver import Fault, WebhookReceiver

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def receiver():
    with WebhookReceiver() as r:
        yield r


def deliver_webhooks() -> str:
    out = StringIO()
    call_command("deliver_webhooks", stdout=out)
    return out.getvalue()


def test_a_customer_created_through_the_api_is_delivered_signed(api_client, service, receiver):
    secret = services.create_endpoint(service=service, url=receiver.url()).secret
    response = api_client.post("/api/v1/customers", {"customer": {"external_id": "cus-1", "name": "Acme"}},
                               format="json")
    assert response.status_code == 200, response.content
    (event,) = WebhookEvent.objects.all()
    assert event.webhook_type == "customer.created"

    assert "attempted 1: 1 succeeded" in deliver_webhooks()
    (request,) = receiver.received()
    payload = Webhook(secret).verify(request.body, request.headers)
    assert payload["webhook_type"] == "customer.created" and payload["customer"]["external_id"] == "cus-1"
    delivery = WebhookDelivery.objects.get()
    assert delivery.status == WebhookDelivery.SUCCEEDED and delivery.attempts.count() == 1
    assert "attempted 0" in deliver_webhooks()  # nothing is sent twice


def test_a_failed_delivery_is_retried_with_the_same_webhook_id(service, receiver):
    services.create_endpoint(service=service, url=receiver.url())
    receiver.add_faults("/hook", Fault.error(500))
    services.record_event(service=service, webhook_type="invoice.created", object_type="invoice",
                          payload={"lago_id": "inv-1", "total_amount_cents": 1999})

    assert "1 will retry" in deliver_webhooks()
    delivery = WebhookDelivery.objects.get()
    assert delivery.status == WebhookDelivery.PENDING and delivery.attempts_count == 1
    assert delivery.last_status_code == 500 and delivery.next_attempt_at > timezone.now()
    assert "attempted 0" in deliver_webhooks()  # not due yet

    WebhookDelivery.objects.update(next_attempt_at=timezone.now())
    assert "1 succeeded" in deliver_webhooks()
    first, second = receiver.received()
    assert first.header("webhook-id") == second.header("webhook-id")
    assert WebhookDelivery.objects.get().status == WebhookDelivery.SUCCEEDED


def test_the_outbox_row_is_written_in_the_callers_transaction(service, receiver):
    services.create_endpoint(service=service, url=receiver.url())
    with pytest.raises(RuntimeError), transaction.atomic():
        upsert_customer(service=service, data={"external_id": "cus-rolled-back", "name": "Gone"})
        assert WebhookEvent.objects.count() == 1
        raise RuntimeError("the caller fails after the write")
    assert not WebhookEvent.objects.exists() and not WebhookDelivery.objects.exists()
    assert "attempted 0" in deliver_webhooks()
    assert receiver.received() == []
