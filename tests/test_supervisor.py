"""`make run`'s supervisor stops every process it started, grandchildren included."""

from __future__ import annotations

import os
import subprocess
import time

from backend.ops.supervisor import Supervisor


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    state = subprocess.run(["ps", "-o", "stat=", "-p", str(pid)], capture_output=True, text=True).stdout.strip()
    return bool(state) and not state.startswith("Z")


def test_stop_all_leaves_no_process_behind(tmp_path) -> None:
    pid_file = tmp_path / "grandchild.pid"
    supervisor = Supervisor()
    # A child that ignores SIGTERM's default and has a grandchild of its own, like Reflex's server does.
    parent = supervisor.start("stubborn", ["bash", "-c", f"sleep 300 & echo $! > {pid_file}; trap '' TERM; wait"])
    quick = supervisor.start("quick", ["sleep", "300"])
    deadline = time.monotonic() + 5
    while not pid_file.exists() or not pid_file.read_text().strip():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    grandchild = int(pid_file.read_text())
    assert supervisor.first_exited() is None

    supervisor.stop_all()

    assert not alive(parent.pid) and not alive(quick.pid) and not alive(grandchild)


def test_first_exited_names_the_process() -> None:
    supervisor = Supervisor()
    supervisor.start("fails", ["bash", "-c", "exit 3"])
    supervisor.children[0][1].wait()
    assert supervisor.first_exited() == ("fails", 3)
    supervisor.stop_all()
