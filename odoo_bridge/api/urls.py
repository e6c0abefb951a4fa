from django.urls import path

from .views import CustomerInvoiceListView, InvoiceCreateView, InvoiceDetailView

urlpatterns: list = [
    path("invoices", InvoiceCreateView.as_view(), name="invoice-list"),
    path("invoices/<str:lago_id>", InvoiceDetailView.as_view(), name="invoice-detail"),
    path("customers/<str:external_id>/invoices", CustomerInvoiceListView.as_view(), name="customer-invoice-list"),
]
