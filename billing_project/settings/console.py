"""Settings of the ops console (Django admin): login throttling, staff passwords, sessions."""
from datetime import timedelta

from .env import env

CONSOLE_BEAT_SCHEDULE: dict = {
    # Refreshes the dashboard's pre-aggregated figures and records that a worker is alive.
    "console-refresh-dashboard": {
        "task": "console.tasks.refresh_dashboard",
        "schedule": env.int("CONSOLE_REFRESH_SECONDS", default=60),
    },
}

# A staff session lasts one working day.
SESSION_COOKIE_AGE = 12 * 3600

AUTHENTICATION_BACKENDS = [
    # django-axes first: a locked-out username/address never reaches the password check.
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = env.int("AXES_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = timedelta(minutes=env.int("AXES_COOLOFF_MINUTES", default=30))
# Lock the pair, so one attacker cannot lock every operator out from a shared address.
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 12}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
