"""One LockN process tree per data directory, and a tree that dies whole.

The end-to-end test runs the real `python -m backend.ops.cli run` (what `make run` calls) three times on one data
directory: a second run beside the first is refused with the first's pid and port and touches nothing of it; the
first run's supervisor is then killed with SIGKILL and every process it started (broker, both workers, web) must
be gone within a few seconds; a third run takes over the stale lock and serves.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest

from backend.core.metrics import MULTIPROC_VARIABLE
from backend.core.settings import PROJECT_ROOT
from backend.ops.run_lock import LOCK_NAME, DataDirInUse, LockRecord, RunLock
from qa.conftest import free_port, stop_process_group, wait_until_live

#: "Within a few seconds": the watchdog's grace (3 s) for SIGTERM, then SIGKILL.
ORPHANS_GONE_S = 8.0


def dead_pid() -> int:
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def hold_lock_in_another_process(data_dir: Path, port: int) -> subprocess.Popen:
    script = ("import sys, time\n"
              "from pathlib import Path\n"
              "from backend.ops.run_lock import RunLock\n"
              f"RunLock(Path({str(data_dir)!r})).acquire({port}, 'http://localhost:{port}')\n"
              "print('held', flush=True)\n"
              "time.sleep(60)\n")
    holder = subprocess.Popen([sys.executable, "-c", script], cwd=PROJECT_ROOT, stdout=subprocess.PIPE, text=True)
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    return holder


def test_a_held_lock_refuses_naming_pid_and_port(tmp_path: Path) -> None:
    holder = hold_lock_in_another_process(tmp_path, 4123)
    try:
        with pytest.raises(DataDirInUse) as refused:
            RunLock(tmp_path).acquire(5000)
        message = str(refused.value)
        assert f"pid {holder.pid}" in message and "port 4123" in message and str(tmp_path) in message
        assert json.loads((tmp_path / LOCK_NAME).read_text())["pid"] == holder.pid, "the holder's record stays"
    finally:
        holder.kill()
        holder.wait()
    RunLock(tmp_path).acquire(5000)  # its holder gone, the lock is free


def test_orphans_still_holding_the_lock_are_named(tmp_path: Path) -> None:
    """A supervisor gone, a child of its still alive (holding the inherited lock): refused, naming both."""
    script = ("import subprocess\n"
              "from pathlib import Path\n"
              "from backend.ops.run_lock import RunLock\n"
              f"lock = RunLock(Path({str(tmp_path)!r}))\n"
              "lock.acquire(4555)\n"
              "child = subprocess.Popen(['sleep', '60'], pass_fds=(lock.fd,), start_new_session=True, "
              "stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)\n"
              "print(child.pid, flush=True)\n")
    supervisor = subprocess.run([sys.executable, "-c", script], cwd=PROJECT_ROOT, capture_output=True, text=True,
                                check=True)
    orphan = int(supervisor.stdout)
    try:
        with pytest.raises(DataDirInUse) as refused:
            RunLock(tmp_path).acquire(5000)
        message = str(refused.value)
        assert "port 4555" in message and f"pids {orphan}" in message and f"kill {orphan}" in message
        assert "supervisor is gone" in message
    finally:
        os.kill(orphan, signal.SIGKILL)


@pytest.mark.parametrize("recorded_pid", [dead_pid, os.getppid], ids=["dead pid", "live unrelated pid"])
def test_a_stale_lock_is_taken_over_whatever_pid_it_names(tmp_path: Path, recorded_pid) -> None:  # type: ignore[no-untyped-def]
    """Only the kernel's lock decides: a pid in the file may be dead, or reused by an unrelated process."""
    pid = recorded_pid()
    (tmp_path / LOCK_NAME).write_text(json.dumps({"pid": pid, "port": 3999}))
    lock = RunLock(tmp_path)
    stale = lock.acquire(4000)
    assert stale == LockRecord(pid, 3999)
    assert json.loads((tmp_path / LOCK_NAME).read_text())["pid"] == os.getpid()
    lock.release()
    assert (tmp_path / LOCK_NAME).read_text() == "", "a clean stop leaves nothing stale"
    assert RunLock(tmp_path).acquire(4000) is None


def _tree(pid: int) -> dict[int, str]:
    """Every descendant of `pid`: pid → command line."""
    tree = {}
    for child in psutil.Process(pid).children(recursive=True):
        try:
            tree[child.pid] = " ".join(child.cmdline())
        except psutil.Error:
            continue
    return tree


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _run(env: dict[str, str], log: Path) -> subprocess.Popen:
    with log.open("w") as out:
        return subprocess.Popen([sys.executable, "-m", "backend.ops.cli", "run"], cwd=PROJECT_ROOT, env=env,
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def test_make_run_refuses_a_second_tree_and_its_children_die_with_its_supervisor(tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "LOCKN_ENV": "test", "LOCKN_PORT": str(port), "LOCKN_DATA_DIR": str(tmp_path)}
    for name in ("LOCKN_DATABASE_URL", "LOCKN_REDIS_URL", "LOCKN_PUBLIC_URL", MULTIPROC_VARIABLE):
        env.pop(name, None)
    url = f"http://localhost:{port}"
    first = _run(env, tmp_path / "first.log")
    third = None
    children: dict[int, str] = {}
    try:
        wait_until_live(url, first, tmp_path / "first.log")
        children = _tree(first.pid)
        kinds = {kind: [pid for pid, cmd in children.items() if test(cmd)] for kind, test in {
            "broker": lambda cmd: "redis-server" in cmd,
            "worker": lambda cmd: "celery" in cmd and "cpu-batch" not in cmd,
            "batch worker": lambda cmd: "celery" in cmd and "cpu-batch" in cmd,
            "web": lambda cmd: "backend.ops.cli web" in cmd}.items()}
        assert all(kinds.values()), kinds
        socket_inode = (tmp_path / "redis.sock").stat().st_ino
        metrics = {p.name for p in (tmp_path / "metrics").glob("*")}
        assert metrics, "the first run's processes count into its metrics folder"

        second = subprocess.run([sys.executable, "-m", "backend.ops.cli", "run"], cwd=PROJECT_ROOT, env=env,
                                capture_output=True, text=True, timeout=60)
        print("second run said:", second.stderr.strip())
        assert second.returncode == 3
        assert f"pid {first.pid}" in second.stderr and f"port {port}" in second.stderr
        assert "already running" in second.stderr and "Traceback" not in second.stderr
        assert httpx.get(url + "/health/live", timeout=5).status_code == 200, "the first run still serves"
        assert (tmp_path / "redis.sock").stat().st_ino == socket_inode, "the broker's socket was not replaced"
        assert metrics <= {p.name for p in (tmp_path / "metrics").glob("*")}, "the metrics were not cleared"

        first.send_signal(signal.SIGKILL)  # the supervisor alone, as `kill -9 <pid>` does
        first.wait()
        killed = time.monotonic()
        deadline = killed + ORPHANS_GONE_S
        while (left := {pid: cmd for pid, cmd in children.items() if _alive(pid)}) and time.monotonic() < deadline:
            time.sleep(0.1)
        print(f"{len(children)} processes of the tree ({', '.join(f'{k} {len(v)}' for k, v in kinds.items())}) "
              f"gone {time.monotonic() - killed:.1f} s after the supervisor's SIGKILL")
        assert left == {}, f"outlived their supervisor: {left}"
        with pytest.raises(httpx.HTTPError):
            httpx.get(url + "/health/live", timeout=2)

        third = _run(env, tmp_path / "third.log")
        wait_until_live(url, third, tmp_path / "third.log")
        said = (tmp_path / "third.log").read_text()
        assert f"the previous run (pid {first.pid}, port {port}) ended without stopping cleanly" in said
        assert json.loads((tmp_path / LOCK_NAME).read_text())["pid"] == third.pid
    finally:
        for process in (first, third):
            if process is not None and process.poll() is None:
                stop_process_group(process)
        for pid in children:  # nothing of the first tree may outlive the test, whatever failed above
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
