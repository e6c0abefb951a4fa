from django.urls import path, re_path

from . import customers, views

urlpatterns = [
    path("customers/<str:external_id>", customers.CustomerDetailView.as_view(), name="customer"),
    path("customers/<str:external_id>/subscriptions", customers.CustomerSubscriptionsView.as_view(),
         name="customer-subscriptions"),
    path("customers/<str:external_id>/current_usage", customers.CustomerCurrentUsageView.as_view(),
         name="customer-current-usage"),
    path("billable_metrics", views.BillableMetricListView.as_view(), name="billable-metrics"),
    # Lago: a code may contain any character.
    re_path(r"^billable_metrics/(?P<code>.+)$", views.BillableMetricDetailView.as_view(), name="billable-metric"),
    path("plans", views.PlanListView.as_view(), name="plans"),
    re_path(r"^plans/(?P<code>.+)$", views.PlanDetailView.as_view(), name="plan"),
    path("subscriptions", views.SubscriptionListView.as_view(), name="subscriptions"),
    path("subscriptions/<str:external_id>", views.SubscriptionDetailView.as_view(), name="subscription"),
    path("events", views.EventCreateView.as_view(), name="events"),
    path("events/batch", views.EventBatchView.as_view(), name="events-batch"),
    path("events/<str:transaction_id>", views.EventDetailView.as_view(), name="event"),
]
