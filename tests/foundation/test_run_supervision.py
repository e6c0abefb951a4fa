"""scripts/run supervises the Celery worker and beat: whichever exits is started again (#17 F0)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from celery import Celery

from tests.conftest import REPO_ROOT, subprocess_environment
from tests.webhooks.test_worker import PrivateRedis, _free_port, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


def _descendants(pid: int) -> list[int]:
    out = []
    for child in _children(pid):
        out += [child, *_descendants(child)]
    return out


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _find(root: int, needle: str) -> int | None:
    """The top-most descendant running ``needle`` (the celery main process, not its pool)."""
    for pid in _descendants(root):
        if needle in _cmdline(pid) and needle not in _cmdline(_parent(pid)):
            return pid
    return None


def _parent(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except OSError:
        return 0


@pytest.fixture
def private_redis():
    server = PrivateRedis()
    server.start()
    yield server
    server.stop()


def test_run_restarts_a_worker_or_beat_that_exits(private_redis, tmp_path):
    log = tmp_path / "run.log"
    env = subprocess_environment(
        REDIS_URL=private_redis.url, DJANGO_DEBUG="1", PORT=str(_free_port()), RESTART_DELAY="1",
        VENV=str(Path(sys.executable).parent.parent),
    )
    run = subprocess.Popen(["bash", "scripts/run"], cwd=REPO_ROOT, env=env, stdout=log.open("wb"),
                           stderr=subprocess.STDOUT, start_new_session=True)
    app = Celery("fb-run-supervision", broker=private_redis.url, set_as_current=False)
    worker_cmd, beat_cmd = "billing_project worker", "billing_project beat"
    try:
        first_worker = wait_until(lambda: _find(run.pid, worker_cmd), timeout=120)
        first_beat = wait_until(lambda: _find(run.pid, beat_cmd), timeout=60)
        wait_until(lambda: app.control.ping(timeout=0.5), timeout=120)

        os.kill(first_worker, signal.SIGKILL)  # a crash, an OOM kill: no clean shutdown
        second_worker = wait_until(lambda: (p := _find(run.pid, worker_cmd)) not in (None, first_worker) and p,
                                   timeout=60)
        wait_until(lambda: app.control.ping(timeout=0.5), timeout=120)  # the new worker consumes
        os.kill(first_beat, signal.SIGKILL)
        second_beat = wait_until(lambda: (p := _find(run.pid, beat_cmd)) not in (None, first_beat) and p,
                                 timeout=60)
        text = log.read_text(errors="replace")
        assert "celery worker exited with status" in text and "celery beat exited with status" in text
        assert run.poll() is None
    finally:
        if run.poll() is None:
            run.send_signal(signal.SIGTERM)  # the script stops its supervisors, they stop their children
            try:
                run.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(run.pid, signal.SIGKILL)
                run.wait(timeout=10)
    # A TERM to scripts/run stops the supervised processes too (none is left running).
    assert run.returncode is not None
    for pid in (second_worker, second_beat):
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] if Path(
            f"/proc/{pid}").exists() else "gone"
        assert state in ("gone", "Z"), (pid, _cmdline(pid))
