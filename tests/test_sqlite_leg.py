"""The SQLite leg: tests/sqlite in a second pytest process on the embedded default.

The embedded default (no ``DATABASE_URL``, no ``REDIS_URL``: a SQLite file and a
file-system Celery broker) is what ``scripts/run`` gives a new user, and it has code paths
of its own (ingest's and rating's ORM paths, the outbox without PostgreSQL locks). Django
is configured once per process, so those tests run in their own pytest process; this test
is how the README's test command (``scripts/test``) runs them, and it fails when they fail.
The leg's process starts as soon as the session has collected this test and runs beside the
PostgreSQL leg (it needs neither PostgreSQL nor Redis); the test waits for its result.

One SQLite-leg test on its own:
``FUSION_BILLING_TEST_LEG=sqlite scripts/test tests/sqlite/test_ingest.py``.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile

import pytest

from tests.conftest import REPO_ROOT, SQLITE_LEG_REPORT

SUMMARY = re.compile(r"^=*\s*(?P<counts>\d+ passed.*?)\s*=*$")


NODE_ID = "tests/test_sqlite_leg.py::test_the_sqlite_leg_passes"
# The leg's process, started when the session's tests are collected (conftest's
# pytest_collection_finish) so that it runs on the second core beside the PostgreSQL leg.
_leg: dict[str, subprocess.Popen[str]] = {}
_var_dirs: list[str] = []


def start_sqlite_leg() -> None:
    if "process" in _leg:
        return
    _var_dirs.append(tempfile.mkdtemp(prefix="fusion-billing-sqlite-leg-"))
    env = {**os.environ, "FUSION_BILLING_TEST_LEG": "sqlite", "VAR_DIR": _var_dirs[-1], "PYTHONPATH": str(REPO_ROOT)}
    _leg["process"] = subprocess.Popen(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/sqlite"],
        cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def stop_sqlite_leg() -> None:
    process = _leg.pop("process", None)
    if process is not None and process.poll() is None:
        process.kill()
        process.communicate()
    while _var_dirs:
        shutil.rmtree(_var_dirs.pop(), ignore_errors=True)


@pytest.mark.slow
@pytest.mark.timeout(660)  # the leg's own limit below is 600 s
def test_the_sqlite_leg_passes():
    start_sqlite_leg()  # not started yet when this test was selected by -k or a keyword
    process = _leg["process"]
    try:
        stdout, stderr = process.communicate(timeout=600)
    finally:
        stop_sqlite_leg()
    output = stdout + stderr
    last = stdout.strip().splitlines()[-1] if stdout.strip() else ""
    SQLITE_LEG_REPORT.append(f"SQLite leg (tests/sqlite, embedded default): {last.strip('= ')}")
    assert process.returncode == 0, output[-30_000:]
    match = SUMMARY.match(last)
    # It ran tests and nothing but passes (no skips, no deselection, no "no tests ran").
    assert match and re.fullmatch(r"\d+ passed(, \d+ warnings?)? in [\d.]+s( \([\d:]+\))?", match["counts"]), \
        output[-30_000:]
