"""Loaded with ``-p`` before Django is configured: test defaults for the environment.

The suite runs on the real local PostgreSQL and Redis; anything already set in the
environment wins (CI, or an engineer pointing at another database).
"""
import os

os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/fusion_billing")
os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/1")
os.environ.setdefault("SECRET_KEY", "test-only-" + "x" * 40)
os.environ.setdefault("ALLOWED_HOSTS", "localhost,127.0.0.1,testserver")
os.environ.setdefault("SESSION_COOKIE_SECURE", "false")
os.environ.setdefault("CSRF_COOKIE_SECURE", "false")
os.environ.setdefault("WEBHOOK_ALLOW_HTTP_HOSTS", "127.0.0.1,localhost")
