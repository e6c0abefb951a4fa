from django.apps import AppConfig
from django.contrib.admin.apps import AdminConfig


class FusionAdminConfig(AdminConfig):
    """The admin app, with the ops console's site as ``admin.site``: every app's
    ``admin.register`` lands on it, so its guards (action permissions, audit log) cover all."""

    default_site = "console.sites.ConsoleAdminSite"


class ConsoleConfig(AppConfig):
    name = "console"
    verbose_name = "Ops console"
    default_auto_field = "django.db.models.BigAutoField"
