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
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT, SQLITE_LEG_REPORT

SUMMARY = re.compile(r"^=*\s*(?P<counts>\d+ passed.*?)\s*=*$")


NODE_ID = "tests/test_sqlite_leg.py::test_the_sqlite_leg_passes"
# The process that owns the run (the xdist controller, or pytest itself without workers)
# starts the leg as soon as this test is collected, so that it runs beside the PostgreSQL
# leg; the test, in whichever worker runs it, waits for the leg's result. They share the
# leg's folder (named in the environment before the workers start): the leg writes its
# output there, and its exit status last, in one rename.
LEG_DIR_VARIABLE = "FUSION_BILLING_SQLITE_LEG_DIR"
_leg: dict[str, subprocess.Popen[bytes]] = {}
_owned_folders: list[str] = []


def prepare_leg_folder() -> None:
    """In the owning process, before any worker starts: a folder of this run's own (a run
    that a test starts inherits its parent's variable, and must not share or remove it)."""
    _owned_folders.append(tempfile.mkdtemp(prefix="fusion-billing-sqlite-leg-"))
    os.environ[LEG_DIR_VARIABLE] = _owned_folders[-1]


def _folder() -> Path:
    if LEG_DIR_VARIABLE not in os.environ:
        prepare_leg_folder()  # this test run on its own, without the session hooks
    return Path(os.environ[LEG_DIR_VARIABLE])


def start_sqlite_leg() -> None:
    folder = _folder()
    try:
        (folder / "started").open("x").close()  # atomic: one process starts the leg, once
    except FileExistsError:
        return
    var_dir = folder / "var"
    var_dir.mkdir()
    env = {**os.environ, "FUSION_BILLING_TEST_LEG": "sqlite", "VAR_DIR": str(var_dir), "PYTHONPATH": str(REPO_ROOT)}
    env.pop("PYTEST_XDIST_WORKER", None)
    script = ('"$@" > "$LEG/stdout" 2> "$LEG/stderr"; echo $? > "$LEG/status.part"; '
              'mv "$LEG/status.part" "$LEG/status"')
    _leg["process"] = subprocess.Popen(
        ["bash", "-c", script, "sqlite-leg", sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         "-n", "0", "tests/sqlite"],
        cwd=REPO_ROOT, env={**env, "LEG": str(folder)}, start_new_session=True,
    )


def stop_sqlite_leg() -> None:
    """In the owning process, at the end of the session: stop the leg if it still runs."""
    process = _leg.pop("process", None)
    if process is not None and process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    while _owned_folders:
        folder = Path(_owned_folders.pop())
        if (folder / "status").exists():
            lines = (folder / "stdout").read_text(errors="replace").strip().splitlines()
            last = lines[-1].strip("= ") if lines else "(no output)"
            SQLITE_LEG_REPORT.append(f"SQLite leg (tests/sqlite, embedded default): {last}")
        shutil.rmtree(folder, ignore_errors=True)


def wait_for_leg(timeout: float) -> tuple[int, str, str]:
    folder = _folder()
    status = folder / "status"
    deadline = time.monotonic() + timeout
    while not status.exists():
        if time.monotonic() > deadline:
            raise AssertionError(f"the SQLite leg did not finish in {timeout:.0f} s:\n"
                                 + (folder / "stdout").read_text(errors="replace")[-30_000:])
        time.sleep(0.5)
    return (int(status.read_text()), (folder / "stdout").read_text(errors="replace"),
            (folder / "stderr").read_text(errors="replace"))


@pytest.mark.slow
@pytest.mark.timeout(660)  # the leg's own limit below is 600 s
def test_the_sqlite_leg_passes():
    start_sqlite_leg()  # not started yet when this test was selected by -k or a keyword
    returncode, stdout, stderr = wait_for_leg(timeout=600)
    output = stdout + stderr
    last = stdout.strip().splitlines()[-1] if stdout.strip() else ""
    assert returncode == 0, output[-30_000:]
    match = SUMMARY.match(last)
    # It ran tests and nothing but passes (no skips, no deselection, no "no tests ran").
    assert match and re.fullmatch(r"\d+ passed(, \d+ warnings?)? in [\d.]+s( \([\d:]+\))?", match["counts"]), \
        output[-30_000:]
