from django.contrib import admin
from django.urls import URLPattern, URLResolver, include, path, re_path

from billing_kit.http import json_not_found
from billing_kit.lago_surface import LAGO_COLLECTIONS, LagoUnsupportedView
from billing_project import health

api_v1: list[URLPattern | URLResolver] = [
    path("", include("identity.api.urls")),
    path("", include("metering.api.urls")),
    path("", include("webhooks.api.urls")),
    path("", include("wallets.api.urls")),
    path("", include("coupons.api.urls")),
    path("", include("odoo_bridge.api.urls")),
    # Last: any other path of Lago's API is a 405 naming its resource (not a bare 404).
    re_path(r"^(?:%s)(?:/[\s\S]*[^/])?$" % "|".join(sorted(LAGO_COLLECTIONS)), LagoUnsupportedView.as_view(),
            name="lago-unsupported"),
]

urlpatterns = [
    path("health", health.LagoHealthView.as_view(), name="health"),
    path("ops/health", health.OpsHealthView.as_view(), name="ops-health"),
    path("api/v1/", include(api_v1)),
    path("admin/", admin.site.urls),
]

handler404 = json_not_found
