from django.contrib import admin

from .models import Invoice, InvoiceLine


class InvoiceLineInline(admin.TabularInline):
    model = InvoiceLine
    extra = 0
    can_delete = False
    readonly_fields = ("name", "quantity", "unit_amount", "amount", "total_amount", "subscription", "charge",
                       "odoo_line_id")
    fields = readonly_fields


@admin.register(Invoice)
class InvoiceAdmin(admin.ModelAdmin):
    list_display = ("__str__", "service", "customer", "status", "payment_status", "total_display",
                    "issuing_date", "odoo_move_id")
    list_filter = ("service", "status", "payment_status", "currency")
    search_fields = ("number", "customer__email", "customer__name")
    readonly_fields = [f.name for f in Invoice._meta.fields]
    inlines = [InvoiceLineInline]

    @admin.display(description="total", ordering="total_amount")
    def total_display(self, invoice: Invoice) -> str:
        return f"{invoice.currency} {invoice.total_amount:,}"

    def has_add_permission(self, request) -> bool:
        return False
