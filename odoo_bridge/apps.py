from django.apps import AppConfig


class OdooBridgeConfig(AppConfig):
    name = "odoo_bridge"
    verbose_name = "Odoo bridge: sync state and invoice mirror"
