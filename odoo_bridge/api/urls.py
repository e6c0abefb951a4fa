from django.urls import path

from .views import (
    CreditNoteDetailView,
    CreditNoteDownloadView,
    CreditNoteEstimateView,
    CreditNoteListView,
    CustomerCreditNoteListView,
    CustomerInvoiceListView,
    CustomerPortalUrlView,
    InvoiceCreateView,
    InvoiceDetailView,
    InvoiceDownloadView,
    InvoiceFinalizeView,
    InvoicePaymentUrlView,
    InvoiceRefreshView,
    InvoiceVoidView,
)

urlpatterns: list = [
    path("invoices", InvoiceCreateView.as_view(), name="invoice-list"),
    path("invoices/<str:lago_id>", InvoiceDetailView.as_view(), name="invoice-detail"),
    path("invoices/<str:lago_id>/download", InvoiceDownloadView.as_view(), name="invoice-download"),
    path("invoices/<str:lago_id>/void", InvoiceVoidView.as_view(), name="invoice-void"),
    path("invoices/<str:lago_id>/finalize", InvoiceFinalizeView.as_view(), name="invoice-finalize"),
    path("invoices/<str:lago_id>/refresh", InvoiceRefreshView.as_view(), name="invoice-refresh"),
    path("invoices/<str:lago_id>/payment_url", InvoicePaymentUrlView.as_view(), name="invoice-payment-url"),
    path("customers/<str:external_id>/portal_url", CustomerPortalUrlView.as_view(), name="customer-portal-url"),
    path("credit_notes", CreditNoteListView.as_view(), name="credit-note-list"),
    path("credit_notes/estimate", CreditNoteEstimateView.as_view(), name="credit-note-estimate"),
    path("credit_notes/<str:lago_id>", CreditNoteDetailView.as_view(), name="credit-note-detail"),
    path("credit_notes/<str:lago_id>/download", CreditNoteDownloadView.as_view(), name="credit-note-download"),
    path("customers/<str:external_id>/credit_notes", CustomerCreditNoteListView.as_view(),
         name="customer-credit-note-list"),
    path("customers/<str:external_id>/invoices", CustomerInvoiceListView.as_view(), name="customer-invoice-list"),
]
