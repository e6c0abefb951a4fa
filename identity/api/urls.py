from django.urls import path

from . import docs, views

urlpatterns = [
    path("schema", docs.SchemaView.as_view(), name="api-schema"),
    path("docs", docs.DocsView.as_view(), name="api-docs"),
    path("docs/redoc", docs.RedocView.as_view(), name="api-redoc"),
    path("customers", views.CustomerListView.as_view(), name="customers"),
    path("customers/<str:external_id>", views.CustomerDetailView.as_view(), name="customer"),
    path("customers/<str:external_id>/subscriptions", views.CustomerSubscriptionsView.as_view(),
         name="customer-subscriptions"),
    path("customers/<str:external_id>/current_usage", views.CustomerCurrentUsageView.as_view(),
         name="customer-current-usage"),
]
