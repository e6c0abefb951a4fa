"""The SQLite leg: tests/sqlite in a second pytest process on the embedded default.

The embedded default (no ``DATABASE_URL``, no ``REDIS_URL``: a SQLite file and a
file-system Celery broker) is what ``scripts/run`` gives a new user, and it has code paths
of its own (ingest's and rating's ORM paths, the outbox without PostgreSQL locks). Django
is configured once per process, so those tests run in their own pytest process; this test
is how the README's test command (``scripts/test``) runs them, and it fails when they fail.

One SQLite-leg test on its own:
``FUSION_BILLING_TEST_LEG=sqlite scripts/test tests/sqlite/test_ingest.py``.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT, SQLITE_LEG_REPORT

SUMMARY = re.compile(r"^=*\s*(?P<counts>\d+ passed.*?)\s*=*$")


@pytest.mark.slow
def test_the_sqlite_leg_passes(tmp_path):
    env = {**os.environ, "FUSION_BILLING_TEST_LEG": "sqlite", "VAR_DIR": str(tmp_path / "var"),
           "PYTHONPATH": str(REPO_ROOT)}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/sqlite"],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600,
    )
    output = result.stdout + result.stderr
    last = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else ""
    SQLITE_LEG_REPORT.append(f"SQLite leg (tests/sqlite, embedded default): {last.strip('= ')}")
    assert result.returncode == 0, output[-30_000:]
    match = SUMMARY.match(last)
    # It ran tests and nothing but passes (no skips, no deselection, no "no tests ran").
    assert match and re.fullmatch(r"\d+ passed(, \d+ warnings?)? in [\d.]+s( \([\d:]+\))?", match["counts"]), \
        output[-30_000:]
