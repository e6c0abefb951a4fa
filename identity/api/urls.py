from django.urls import path

from billing_kit import docs

from . import views
from .organization import OrganizationView

urlpatterns = [
    path("organizations", OrganizationView.as_view(), name="organization"),
    path("schema", docs.SchemaView.as_view(), name="api-schema"),
    path("docs", docs.DocsView.as_view(), name="api-docs"),
    path("docs/redoc", docs.RedocView.as_view(), name="api-redoc"),
    path("customers", views.CustomerListView.as_view(), name="customers"),
]
