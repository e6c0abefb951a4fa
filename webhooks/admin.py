from django.contrib import admin

from .models import WebhookEvent


@admin.register(WebhookEvent)
class WebhookEventAdmin(admin.ModelAdmin):
    list_display = ("webhook_type", "service", "object_type", "created_at")
    list_filter = ("service", "webhook_type")
    readonly_fields = ("id", "service", "webhook_type", "object_type", "created_at")
    exclude = ("body",)
