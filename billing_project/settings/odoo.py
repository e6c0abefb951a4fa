"""Settings of the odoo area (owned by its engineer)."""
from .env import env  # noqa: F401

ODOO_BEAT_SCHEDULE: dict = {}

ODOO_URL = env.str("ODOO_URL", default="")
ODOO_DB = env.str("ODOO_DB", default="")
ODOO_USER = env.str("ODOO_USER", default="")
ODOO_API_KEY = env.str("ODOO_API_KEY", default="")
