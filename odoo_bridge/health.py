from django.conf import settings


def check_odoo() -> dict:
    if not settings.ODOO_URL:
        return {"ok": True, "configured": False}
    return {"ok": False, "configured": True, "error": "not implemented"}
