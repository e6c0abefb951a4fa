from django.urls import path, re_path

from billing_kit.lago_surface import LagoUnsupportedView

from . import add_ons, customers, plan_resources, views

urlpatterns = [
    path("customers/<str:external_id>", customers.CustomerDetailView.as_view(), name="customer"),
    path("customers/<str:external_id>/subscriptions", customers.CustomerSubscriptionsView.as_view(),
         name="customer-subscriptions"),
    path("customers/<str:external_id>/current_usage", customers.CustomerCurrentUsageView.as_view(),
         name="customer-current-usage"),
    path("customers/<str:external_id>/projected_usage", customers.CustomerProjectedUsageView.as_view(),
         name="customer-projected-usage"),
    path("customers/<str:external_id>/past_usage", customers.CustomerPastUsageView.as_view(),
         name="customer-past-usage"),
    path("billable_metrics", views.BillableMetricListView.as_view(), name="billable-metrics"),
    re_path(r"^billable_metrics/evaluate_expression$", LagoUnsupportedView.as_view(),
            name="billable-metric-evaluate-expression"),
    # Lago: a code may contain any character, a newline too ("[\s\S]", as "." stops at one).
    re_path(r"^billable_metrics/(?P<code>[\s\S]+)$", views.BillableMetricDetailView.as_view(),
            name="billable-metric"),
    path("plans", views.PlanListView.as_view(), name="plans"),
    # Lago's sub-resources come before the plan itself, whose code may contain "/".
    re_path(r"^plans/(?P<plan_code>[^/]+)/charges$", plan_resources.PlanChargeListView.as_view(),
            name="plan-charges"),
    re_path(r"^plans/(?P<plan_code>[^/]+)/charges/(?P<charge_code>[^/]+)$",
            plan_resources.PlanChargeDetailView.as_view(), name="plan-charge"),
    re_path(r"^plans/(?P<plan_code>[^/]+)/metadata$", plan_resources.PlanMetadataView.as_view(),
            name="plan-metadata"),
    re_path(r"^plans/(?P<plan_code>[^/]+)/metadata/(?P<key>[^/]+)$", plan_resources.PlanMetadataKeyView.as_view(),
            name="plan-metadata-key"),
    re_path(r"^plans/(?P<plan_code>[^/]+)/(?:charges/[^/]+/filters|fixed_charges|entitlements)(?:/[\s\S]*)?$",
            LagoUnsupportedView.as_view(), name="plan-unsupported"),
    re_path(r"^plans/(?P<code>[\s\S]+)$", views.PlanDetailView.as_view(), name="plan"),
    path("add_ons", add_ons.AddOnListView.as_view(), name="add-ons"),
    re_path(r"^add_ons/(?P<code>[\s\S]+)$", add_ons.AddOnDetailView.as_view(), name="add-on"),
    path("subscriptions", views.SubscriptionListView.as_view(), name="subscriptions"),
    path("subscriptions/<str:external_id>", views.SubscriptionDetailView.as_view(), name="subscription"),
    path("subscriptions/<str:external_id>/lifetime_usage", views.SubscriptionLifetimeUsageView.as_view(),
         name="subscription-lifetime-usage"),
    path("events", views.EventCreateView.as_view(), name="events"),
    path("events/batch", views.EventBatchView.as_view(), name="events-batch"),
    path("events/estimate_fees", views.EventEstimateFeesView.as_view(), name="events-estimate-fees"),
    path("events/<str:transaction_id>", views.EventDetailView.as_view(), name="event"),
]
