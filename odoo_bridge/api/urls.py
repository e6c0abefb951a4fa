from django.urls import path

from .views import (
    CreditNoteDetailView,
    CreditNoteListView,
    CustomerInvoiceListView,
    InvoiceDetailView,
    InvoiceListView,
)

urlpatterns: list = [
    path("invoices", InvoiceListView.as_view(), name="invoice-list"),
    path("invoices/<str:lago_id>", InvoiceDetailView.as_view(), name="invoice-detail"),
    path("credit_notes", CreditNoteListView.as_view(), name="credit-note-list"),
    path("credit_notes/<str:lago_id>", CreditNoteDetailView.as_view(), name="credit-note-detail"),
    path("customers/<str:external_id>/invoices", CustomerInvoiceListView.as_view(), name="customer-invoice-list"),
]
