"""Settings that tune the database work of the hot paths, read in a fresh process as
``manage.py`` would read them."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT, subprocess_environment

PRINT = ("import json; from django.conf import settings; print(json.dumps({"
         "'prepare_threshold': settings.DATABASES['default'].get('OPTIONS', {}).get('prepare_threshold', 'unset'),"
         "'rating_shards': settings.RATING_SHARDS}))")


def settings_of(**env: str) -> dict:
    result = subprocess.run([sys.executable, "manage.py", "shell", "-c", PRINT], cwd=REPO_ROOT, check=True,
                            capture_output=True, text=True, env=subprocess_environment(**env), timeout=60)
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("value, expected", [(None, 5), ("12", 12), ("off", None)])
def test_prepared_statements_threshold_on_postgresql(value, expected):
    env = {"DATABASE_PREPARE_THRESHOLD": value} if value is not None else {}
    assert settings_of(**env)["prepare_threshold"] == expected


def test_rating_runs_one_slice_per_worker_process_on_postgresql_and_one_on_sqlite(tmp_path):
    assert settings_of()["rating_shards"] == 2
    assert settings_of(RATING_SHARDS="5")["rating_shards"] == 5
    sqlite = settings_of(DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}", DJANGO_DEBUG="1")
    assert sqlite == {"prepare_threshold": "unset", "rating_shards": 1}


def test_an_empty_database_url_is_the_embedded_default(tmp_path):
    embedded = settings_of(DATABASE_URL="", REDIS_URL="", VAR_DIR=str(tmp_path))
    assert embedded == {"prepare_threshold": "unset", "rating_shards": 1}
    assert (tmp_path / "celery-broker").is_dir()
