from django.urls import path

from . import views

urlpatterns = [
    path("customers", views.CustomerListView.as_view(), name="customers"),
    path("customers/<str:external_id>", views.CustomerDetailView.as_view(), name="customer"),
    path("customers/<str:external_id>/subscriptions", views.CustomerSubscriptionsView.as_view(),
         name="customer-subscriptions"),
    path("customers/<str:external_id>/current_usage", views.CustomerCurrentUsageView.as_view(),
         name="customer-current-usage"),
]
