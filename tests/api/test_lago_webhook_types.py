"""Webhook types Lago sends for features that exist here: subscription.termination_alert."""
from __future__ import annotations

import datetime as dt
import json

import pytest
from django.utils import timezone

from metering import tasks
from metering.services import send_termination_alerts
from webhooks.models import WebhookEvent

from .conftest import create_subscription

pytestmark = pytest.mark.django_db


def alerts():
    return [json.loads(bytes(e.body)) for e in
            WebhookEvent.objects.filter(webhook_type="subscription.termination_alert").order_by("created_at")]


def ending_in(api_client, external_id, days):
    create_subscription(api_client, external_id=external_id, customer=f"cus_{external_id}")
    ending_at = (timezone.now() + dt.timedelta(days=days)).strftime("%Y-%m-%dT%H:%M:%SZ")
    response = api_client.put(f"/api/v1/subscriptions/{external_id}", {"subscription": {"ending_at": ending_at}},
                              format="json")
    assert response.status_code == 200, response.content


def test_termination_alert_15_and_45_days_before_ending_at_once_a_day(api_client, catalogue):
    ending_in(api_client, "in_15", 15)
    ending_in(api_client, "in_45", 45)
    ending_in(api_client, "in_30", 30)
    assert tasks.send_termination_alerts() == 2
    sent = alerts()
    assert sorted(a["subscription"]["external_id"] for a in sent) == ["in_15", "in_45"]
    assert sent[0]["object_type"] == "subscription" and sent[0]["subscription"]["ending_at"]
    assert tasks.send_termination_alerts() == 0  # once a day
    # the next day: 14 and 44 days away, nothing; 15 days later the 45-day one is at 30... and so on
    assert send_termination_alerts(now=timezone.now() + dt.timedelta(days=1)) == 0
    assert send_termination_alerts(now=timezone.now() + dt.timedelta(days=30)) == 1  # in_45 is 15 days away
    assert [a["subscription"]["external_id"] for a in alerts()][-1] == "in_45"


def test_termination_alert_days_are_configurable(api_client, catalogue, settings):
    settings.SUBSCRIPTION_TERMINATION_ALERT_DAYS = [1]
    ending_in(api_client, "tomorrow", 1)
    ending_in(api_client, "in_15", 15)
    assert send_termination_alerts() == 1
    assert [a["subscription"]["external_id"] for a in alerts()] == ["tomorrow"]
