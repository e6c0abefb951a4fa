from django.contrib import admin
from django.http import HttpRequest

from .models import RecurringTransactionRule, Wallet, WalletTransaction


class WalletTransactionInline(admin.TabularInline):
    model = WalletTransaction
    fields = ("created_at", "transaction_type", "transaction_status", "source", "status", "credit_amount", "amount",
              "subscription", "window_end", "invoice_id", "settled_at")
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = False

    def has_add_permission(self, request: HttpRequest, obj: Wallet | None = None) -> bool:
        return False


class RecurringTransactionRuleInline(admin.TabularInline):
    model = RecurringTransactionRule
    fields = ("created_at", "status", "trigger", "interval", "threshold_credits", "method", "paid_credits",
              "granted_credits", "target_ongoing_balance", "started_at", "expiration_at", "terminated_at")
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = False

    def has_add_permission(self, request: HttpRequest, obj: Wallet | None = None) -> bool:
        return False


@admin.register(Wallet)
class WalletAdmin(admin.ModelAdmin):
    list_display = ["id", "service", "account_link", "status", "currency", "rate_amount", "expiration_at"]
    list_filter = ["status", "service"]
    readonly_fields = ["service", "account_link", "currency", "rate_amount", "status", "terminated_at",
                       "created_at", "updated_at"]
    inlines = [RecurringTransactionRuleInline, WalletTransactionInline]

    # A wallet changes through the API (its balance is what its transactions say): never added or deleted here.
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Wallet | None = None) -> bool:
        return False
