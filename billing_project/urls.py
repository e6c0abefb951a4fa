from django.contrib import admin
from django.urls import include, path

from billing_project.api import health
from billing_project.api.organization import OrganizationView
from billing_project.api.errors import json_not_found

api_v1 = [
    path("organizations", OrganizationView.as_view(), name="organization"),
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
