"""CI runs the test command in a fresh clone with nothing beside it (.ci/run)."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT, database_url_for_subprocesses


@pytest.fixture(scope="module")
def mypy_cache(tmp_path_factory) -> str:
    """One mypy cache for both runs below, outside their TMPDIR, seeded with this checkout's
    (the one ``scripts/test`` has just filled): a cold mypy in each clone took most of their
    time. mypy revalidates every cached module against its source (by hash when the clone's
    mtimes differ), so the cache saves work and changes no verdict; the clone is still all
    the run has of the repository."""
    cache = tmp_path_factory.mktemp("fresh-clone") / "mypy_cache"
    if (REPO_ROOT / ".mypy_cache").is_dir():
        shutil.copytree(REPO_ROOT / ".mypy_cache", cache)
    return str(cache)


@pytest.mark.slow
def test_ci_runs_the_test_command_in_a_fresh_clone_in_an_empty_folder(tmp_path, mypy_cache):
    """The contract tests read files of the repository: in a clone with nothing beside it they
    still pass (they failed there when the contract lived in a folder beside the checkout)."""
    # Another database than the one this run is using (its test database would be replaced).
    # In one process (-n 0): it inherits this worker's Redis database, whose worker waits for it.
    database_url = database_url_for_subprocesses() + "_fresh_clone"
    env = {**os.environ, "TMPDIR": str(tmp_path), "VENV": sys.prefix, "DATABASE_URL": database_url,
           "MYPY_CACHE_DIR": mypy_cache}
    env.pop("PYTHONPATH", None)
    result = subprocess.run([".ci/run", "-p", "no:cacheprovider", "-n", "0",
                             "tests/migration/test_contract.py"],
                            cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True,
                          check=True).stdout.strip()
    clone = re.search(rf"fresh clone of {head} at (\S+)/repo \(nothing beside it\)", output)
    assert clone and clone.group(1).startswith(str(tmp_path)), output
    assert re.search(r"^\d+ passed in ", result.stdout, re.MULTILINE), output
    assert list(tmp_path.iterdir()) == []  # the clone is gone


def test_ci_does_not_pass_when_no_test_ran(tmp_path, mypy_cache):
    env = {**os.environ, "TMPDIR": str(tmp_path), "VENV": sys.prefix, "MYPY_CACHE_DIR": mypy_cache}
    result = subprocess.run([".ci/run", "-p", "no:cacheprovider", "-n", "0", "-k", "no_test_is_named_like_this",
                             "tests/migration/test_contract.py"],
                            cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 5, result.stdout + result.stderr  # pytest's "no tests ran", passed through
    assert list(tmp_path.iterdir()) == []
