from django.urls import path

from .views import WebhookEndpointDetailView, WebhookEndpointListView, WebhookEndpointRotateSecretView

urlpatterns = [
    path("webhook_endpoints", WebhookEndpointListView.as_view(), name="webhook-endpoints"),
    path("webhook_endpoints/<str:lago_id>", WebhookEndpointDetailView.as_view(), name="webhook-endpoint"),
    path(
        "webhook_endpoints/<str:lago_id>/rotate_secret",
        WebhookEndpointRotateSecretView.as_view(),
        name="webhook-endpoint-rotate-secret",
    ),
]
