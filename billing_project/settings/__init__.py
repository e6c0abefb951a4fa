"""Settings, one module per concern, all read from the environment.

Each area module defines its own ``<AREA>_BEAT_SCHEDULE``; they are merged here so that
django-celery-beat installs them into the database, where staff can edit them.
"""
from .core import *  # noqa: F401,F403
from .database import *  # noqa: F401,F403
from .celery import *  # noqa: F401,F403
from .cache import *  # noqa: F401,F403
from .api import *  # noqa: F401,F403
from .rating import *  # noqa: F401,F403
from .events import *  # noqa: F401,F403
from .webhooks import *  # noqa: F401,F403
from .odoo import *  # noqa: F401,F403
from .migration import *  # noqa: F401,F403
from .console import *  # noqa: F401,F403
from .security import *  # noqa: F401,F403

CELERY_BEAT_SCHEDULE = {
    **API_BEAT_SCHEDULE,  # noqa: F405
    **RATING_BEAT_SCHEDULE,  # noqa: F405
    **EVENTS_BEAT_SCHEDULE,  # noqa: F405
    **WEBHOOKS_BEAT_SCHEDULE,  # noqa: F405
    **ODOO_BEAT_SCHEDULE,  # noqa: F405
    **MIGRATION_BEAT_SCHEDULE,  # noqa: F405
    **CONSOLE_BEAT_SCHEDULE,  # noqa: F405
}

SILENCED_SYSTEM_CHECKS = [*SILENCED_SYSTEM_CHECKS, *SECURITY_SILENCED_SYSTEM_CHECKS]  # noqa: F405
