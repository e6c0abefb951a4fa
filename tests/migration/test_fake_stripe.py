"""The fake Stripe server answers the real ``stripe`` library."""

from __future__ import annotations

import pytest
import stripe


def _client(fake, key=None):
    return stripe.StripeClient(key or fake.api_key, base_addresses={"api": fake.url}, max_network_retries=0)


def test_customer_and_default_payment_method(fake_stripe):
    fake_stripe.add_ready_customer("cus_alice", "pm_alice")
    client = _client(fake_stripe)
    customer = client.v1.customers.retrieve("cus_alice")
    assert customer.invoice_settings.default_payment_method == "pm_alice"
    method = client.v1.payment_methods.retrieve("pm_alice")
    assert method.customer == "cus_alice" and method.card.last4 == "4242"
    assert ("GET", "/v1/customers/cus_alice") in fake_stripe.requests


def test_unknown_ids_raise_invalid_request_404(fake_stripe):
    client = _client(fake_stripe)
    with pytest.raises(stripe.InvalidRequestError) as info:
        client.v1.customers.retrieve("cus_nobody")
    assert info.value.http_status == 404 and info.value.code == "resource_missing"
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.payment_methods.retrieve("pm_nothing")


def test_wrong_key_and_outage(fake_stripe):
    fake_stripe.add_customer("cus_x")
    with pytest.raises(stripe.AuthenticationError):
        _client(fake_stripe, key="sk_test_wrong").v1.customers.retrieve("cus_x")
    fake_stripe.state.fail_with_500 = True
    with pytest.raises(stripe.APIError):
        _client(fake_stripe).v1.customers.retrieve("cus_x")


def test_deleted_customer(fake_stripe):
    fake_stripe.add_customer("cus_gone", deleted=True)
    customer = _client(fake_stripe).v1.customers.retrieve("cus_gone")
    assert customer.to_dict().get("deleted") is True
