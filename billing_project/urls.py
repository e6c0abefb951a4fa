from django.contrib import admin
from django.urls import include, path

from billing_kit.http import json_not_found
from billing_project import health

api_v1 = [
    path("", include("identity.api.urls")),
    path("", include("metering.api.urls")),
    path("", include("webhooks.api.urls")),
    path("", include("odoo_bridge.api.urls")),
]

urlpatterns = [
    path("health", health.LagoHealthView.as_view(), name="health"),
    path("ops/health", health.OpsHealthView.as_view(), name="ops-health"),
    path("api/v1/", include(api_v1)),
    path("admin/", admin.site.urls),
]

handler404 = json_not_found
