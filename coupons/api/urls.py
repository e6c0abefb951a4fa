from django.urls import path, re_path

from . import views

urlpatterns = [
    path("coupons", views.CouponListView.as_view(), name="coupons"),
    # Lago: a code may contain any character, a newline too ("[\s\S]", as "." stops at one).
    re_path(r"^coupons/(?P<code>[\s\S]+)$", views.CouponDetailView.as_view(), name="coupon"),
    path("applied_coupons", views.AppliedCouponListView.as_view(), name="applied-coupons"),
    path("customers/<str:external_id>/applied_coupons", views.CustomerAppliedCouponListView.as_view(),
         name="customer-applied-coupons"),
    path("customers/<str:external_id>/applied_coupons/<str:applied_coupon_id>",
         views.CustomerAppliedCouponView.as_view(), name="customer-applied-coupon"),
]
