from django.urls import path

from .views import (
    WebhookEndpointDetailView,
    WebhookEndpointListView,
    WebhookEndpointRotateSecretView,
    WebhookPlainPublicKeyView,
    WebhookPublicKeyView,
)

urlpatterns = [
    path("webhooks/json_public_key", WebhookPublicKeyView.as_view(), name="webhooks-json-public-key"),
    path("webhooks/public_key", WebhookPlainPublicKeyView.as_view(), name="webhooks-public-key"),
    path("webhook_endpoints", WebhookEndpointListView.as_view(), name="webhook-endpoints"),
    path("webhook_endpoints/<str:lago_id>", WebhookEndpointDetailView.as_view(), name="webhook-endpoint"),
    path(
        "webhook_endpoints/<str:lago_id>/rotate_secret",
        WebhookEndpointRotateSecretView.as_view(),
        name="webhook-endpoint-rotate-secret",
    ),
]
