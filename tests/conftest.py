from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection
from hypothesis import settings as hypothesis_settings
from rest_framework.test import APIClient

from identity import keys
from identity.authentication import clear_cache as clear_api_key_cache
from identity.models import Service

from tests import fast_flush
from tests.environment import SQLITE_LEG

REPO_ROOT = Path(__file__).resolve().parent.parent
SQLITE_LEG_DIR = REPO_ROOT / "tests" / "sqlite"
# Filled by tests/test_sqlite_leg.py: the SQLite leg's own pytest summary, echoed at the end.
SQLITE_LEG_REPORT: list[str] = []


def pytest_ignore_collect(collection_path, config):
    """Each leg collects its own tests: tests/sqlite only on the SQLite leg, the rest only on
    the PostgreSQL leg (which runs the SQLite leg through tests/test_sqlite_leg.py)."""
    path = Path(collection_path).resolve()
    in_sqlite_leg = path == SQLITE_LEG_DIR or SQLITE_LEG_DIR in path.parents
    if SQLITE_LEG:
        outside = not in_sqlite_leg and path not in SQLITE_LEG_DIR.parents
        return True if outside else None
    return True if in_sqlite_leg else None


def _owns_the_run(config) -> bool:
    """pytest itself, or the xdist controller; not one of its workers."""
    return not SQLITE_LEG and not hasattr(config, "workerinput")


def pytest_configure(config):
    if _owns_the_run(config):
        from tests import test_sqlite_leg

        test_sqlite_leg.prepare_leg_folder()  # before the workers start: they inherit its name


def pytest_collection_finish(session):
    """Without workers: start the SQLite leg's process early when its test is part of the run."""
    if _owns_the_run(session.config) and not session.config.option.collectonly:
        _start_sqlite_leg_if_collected(node_ids=[item.nodeid for item in session.items])


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_node_collection_finished(node, ids):
    """With workers: the controller starts it when a worker has collected its test."""
    _start_sqlite_leg_if_collected(node_ids=ids)


def _start_sqlite_leg_if_collected(*, node_ids) -> None:
    from tests import test_sqlite_leg

    if test_sqlite_leg.NODE_ID in node_ids:
        test_sqlite_leg.start_sqlite_leg()


def pytest_sessionfinish(session):
    if _owns_the_run(session.config):
        from tests import test_sqlite_leg

        test_sqlite_leg.stop_sqlite_leg()


def pytest_terminal_summary(terminalreporter):
    for line in SQLITE_LEG_REPORT:
        terminalreporter.write_line(line)

fast_flush.install()
# Staff users' passwords: PBKDF2's 1,000,000 iterations cost about a third of a second per
# hash or login check; tests need a password to work, not to resist brute force (the
# production hashers are Django's defaults, untouched).
settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

hypothesis_settings.register_profile("default", deadline=None, max_examples=200)
hypothesis_settings.load_profile("default")


@pytest.fixture(autouse=True)
def _forget_cached_api_keys():
    """A key cached by one test must not authenticate in the next (ids and keys are reused)."""
    clear_api_key_cache()
    yield
    clear_api_key_cache()


@pytest.fixture(autouse=True)
def _fresh_ops_health_probes():
    """/ops/health caches its probes per process: each test sees its own state."""
    from billing_project import health

    health.clear_cache()
    yield
    health.clear_cache()


def make_api_client(api_key: str | None) -> APIClient:
    client = APIClient()
    if api_key:
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {api_key}")
    return client


@pytest.fixture
def service(db) -> Service:
    return Service.objects.create(code="nexacloud", name="NexaCloud")


@pytest.fixture
def api_key(service) -> str:
    return keys.issue_key(service=service, name="test").plaintext


@pytest.fixture
def api_client(api_key) -> APIClient:
    return make_api_client(api_key)


@pytest.fixture
def other_service(db) -> Service:
    return Service.objects.create(code="nexadesk", name="NexaDesk")


@pytest.fixture
def other_api_key(other_service) -> str:
    return keys.issue_key(service=other_service, name="test").plaintext


@pytest.fixture
def other_api_client(other_api_key) -> APIClient:
    return make_api_client(other_api_key)


def database_url_for_subprocesses() -> str:
    """URL of the database the tests run on, for processes started by a test."""
    db = connection.settings_dict
    user = db.get("USER") or "postgres"
    host = db.get("HOST") or "127.0.0.1"
    port = db.get("PORT") or 5432
    return f"postgres://{user}@{host}:{port}/{db['NAME']}"


def subprocess_environment(**overrides: str) -> dict[str, str]:
    env = {**os.environ, "DATABASE_URL": database_url_for_subprocesses(), "PYTHONPATH": str(REPO_ROOT)}
    env.update(overrides)
    return env


class CeleryWorker:
    """A real ``celery worker`` process on the test broker, reading the test database."""

    def __init__(self, *, queues: str, concurrency: int, env: dict[str, str]) -> None:
        self.name = f"test-{uuid.uuid4().hex[:8]}@localhost"
        self.log_path = Path(f"/tmp/celery-{self.name.split('@')[0]}.log")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "billing_project", "worker", "-Q", queues,
             "-c", str(concurrency), "-n", self.name, "--without-gossip", "--without-mingle",
             "--include", "tests.worker_tasks", "--loglevel", "INFO"],
            cwd=REPO_ROOT, env=env, stdout=self.log_path.open("wb"), stderr=subprocess.STDOUT,
        )

    def wait_ready(self, timeout: float = 60) -> None:
        from billing_project.celery import app

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"celery worker exited early:\n{self.log()}")
            if app.control.ping(destination=[self.name], timeout=0.5):
                return
        raise RuntimeError(f"celery worker not ready after {timeout}s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def kill(self) -> None:
        """SIGKILL the worker and its pool children, as a crashed host would."""
        subprocess.run(["pkill", "-KILL", "-f", self.name], check=False)
        self.process.kill()
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()
        subprocess.run(["pkill", "-KILL", "-f", self.name], check=False)


@pytest.fixture
def start_celery_worker(transactional_db):
    """Factory: ``start_celery_worker(queues=..., concurrency=..., env={...})``.

    Tasks queued on the test Redis database from earlier runs are purged first.
    """
    import redis

    redis.Redis.from_url(os.environ["REDIS_URL"]).flushdb()
    workers: list[CeleryWorker] = []

    def start(*, queues: str = ",".join(settings.CELERY_WORKER_QUEUES), concurrency: int = 1,
              env: dict[str, str] | None = None) -> CeleryWorker:
        worker = CeleryWorker(queues=queues, concurrency=concurrency, env=subprocess_environment(**(env or {})))
        workers.append(worker)
        worker.wait_ready()
        return worker

    yield start
    for worker in workers:
        worker.stop()


@pytest.fixture
def celery_worker(start_celery_worker) -> CeleryWorker:
    return start_celery_worker()
