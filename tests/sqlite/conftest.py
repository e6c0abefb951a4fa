"""The SQLite leg: the embedded default (no DATABASE_URL, no REDIS_URL) as scripts/run runs it.

Collected only with ``FUSION_BILLING_TEST_LEG=sqlite`` (``tests/test_sqlite_leg.py`` starts
it from the main run). The test database is the embedded default's own file
(``$VAR_DIR/fusion_billing.sqlite3``), so processes started by a test (``scripts/run``,
``manage.py``) work on the very file the test reads.
"""
from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from django.conf import settings

from tests.conftest import REPO_ROOT
from tests.environment import EMBEDDED_DEFAULT_UNSET, SQLITE_LEG

if SQLITE_LEG and os.environ.get("PYTEST_XDIST_WORKER"):
    raise RuntimeError("the SQLite leg's tests share the embedded default's database file and broker folder: "
                       "run them in one process (-n 0, as scripts/test does for FUSION_BILLING_TEST_LEG=sqlite)")
if not SQLITE_LEG:  # named explicitly on the PostgreSQL leg (which otherwise never collects it)
    raise RuntimeError("tests/sqlite is the SQLite leg: run FUSION_BILLING_TEST_LEG=sqlite scripts/test "
                       "tests/sqlite/... (plain scripts/test runs the whole leg through tests/test_sqlite_leg.py)")


@pytest.fixture(scope="session", autouse=True)
def _on_the_embedded_default():
    """Never let this leg run on anything but the embedded default."""
    db = settings.DATABASES["default"]
    assert db["ENGINE"] == "django.db.backends.sqlite3"
    assert Path(db["NAME"]) == Path(os.environ["VAR_DIR"]).resolve() / "fusion_billing.sqlite3"
    assert settings.CELERY_BROKER_URL == "filesystem://"


@pytest.fixture(scope="session")
def django_db_modify_db_settings():
    """The test database is the embedded default's file itself (not an in-memory copy)."""
    db = settings.DATABASES["default"]
    db["TEST"] = {**db.get("TEST", {}), "NAME": db["NAME"]}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def embedded_environment(**overrides: str) -> dict[str, str]:
    """The environment of a new user's shell: nothing configured, this leg's VAR_DIR."""
    env = {k: v for k, v in os.environ.items() if k not in EMBEDDED_DEFAULT_UNSET}
    env.update(VAR_DIR=os.environ["VAR_DIR"], PYTHONPATH=str(REPO_ROOT), **overrides)
    return env


@dataclass
class RunningService:
    """``scripts/run`` started as a new user would (plus a free PORT)."""

    port: int
    log_path: Path
    process: subprocess.Popen
    base_url: str = field(init=False)

    def __post_init__(self) -> None:
        self.base_url = f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, timeout: float = 120) -> None:  # ok-float: seconds
        deadline = time.monotonic() + timeout
        web = False
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"scripts/run exited {self.process.returncode}:\n{self.log()}")
            if not web:
                try:
                    with urllib.request.urlopen(self.base_url + "/health", timeout=2) as response:
                        web = response.status == 200
                except (urllib.error.URLError, OSError):
                    pass
            # The worker (with beat) says so when it consumes its queues.
            if web and re.search(r"celery@\S+ ready\.", self.log()):
                return
            time.sleep(0.2)
        raise AssertionError(f"scripts/run not ready after {timeout}s:\n{self.log()}")

    def processes_left(self) -> list[str]:
        """Processes of the script's session still alive (it is the leader of its own)."""
        ps = subprocess.run(["ps", "-o", "pid=,stat=,args=", "-s", str(self.process.pid)], capture_output=True,
                            text=True)
        return [line for line in ps.stdout.splitlines() if line.split()[1:2] != ["Z"]]

    def stop(self) -> None:
        """As ``kill <pid>`` or Ctrl-C would: the script stops the web server and the worker."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                pass
        if not self.processes_left():
            return
        try:  # anything of its session still alive
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait(timeout=10)


@pytest.fixture
def scripts_run(transactional_db, tmp_path):
    """Factory: start ``scripts/run`` (web + Celery worker with beat) on this leg's SQLite file."""
    started: list[RunningService] = []

    def start(**env: str) -> RunningService:
        port = free_port()
        log_path = tmp_path / f"scripts-run-{port}.log"
        process = subprocess.Popen(
            ["scripts/run"], cwd=REPO_ROOT, stdout=log_path.open("wb"), stderr=subprocess.STDOUT,
            env=embedded_environment(VENV=sys.prefix, PORT=str(port), **env), start_new_session=True,
        )
        service = RunningService(port=port, log_path=log_path, process=process)
        started.append(service)
        service.wait_ready()
        return service

    yield start
    for service in started:
        service.stop()


def post_json(url: str, body: dict, *, api_key: str, timeout: float = 60) -> tuple[int, dict]:  # ok-float
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST", headers={
        "Authorization": f"Bearer {api_key}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")
