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


def _descendants_script(pid_file, watchdog: bool) -> str:
    """A supervisor in a process of its own: a child that ignores SIGTERM with a grandchild that does too, and a
    plain child."""
    return ("import time\n"
            "from backend.ops.supervisor import Supervisor\n"
            f"supervisor = Supervisor(watchdog={watchdog}, die_with_parent=True)\n"
            f"stubborn = supervisor.start('stubborn', ['bash', '-c', \"trap '' TERM; sleep 300 & echo $! > {pid_file}; "
            "while :; do sleep 0.2; done\"])\n"
            "quick = supervisor.start('quick', ['sleep', '300'])\n"
            "watchdog = supervisor._watchdog.pid if supervisor._watchdog else 0\n"
            "print(stubborn.pid, quick.pid, watchdog, flush=True)\n"
            "time.sleep(300)\n")


def _start_tree(tmp_path, watchdog: bool):  # type: ignore[no-untyped-def]
    import sys

    from backend.core.settings import PROJECT_ROOT

    pid_file = tmp_path / "grandchild.pid"
    process = subprocess.Popen([sys.executable, "-c", _descendants_script(pid_file, watchdog)], cwd=PROJECT_ROOT,
                               stdout=subprocess.PIPE, text=True, start_new_session=True)
    stubborn, quick, watchdog_pid = map(int, process.stdout.readline().split())  # type: ignore[union-attr]
    deadline = time.monotonic() + 5
    while not pid_file.exists() or not pid_file.read_text().strip():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    return process, [stubborn, quick, int(pid_file.read_text())], watchdog_pid


def _gone_within(pids: list[int], seconds: float) -> list[int]:
    """The pids still alive after waiting up to `seconds` for all of them to go."""
    deadline = time.monotonic() + seconds
    while (left := [pid for pid in pids if alive(pid)]) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left


def test_sigkill_of_the_supervisor_takes_every_child_and_grandchild_with_it(tmp_path) -> None:
    import signal

    process, pids, watchdog = _start_tree(tmp_path, watchdog=True)
    assert watchdog and all(alive(pid) for pid in pids)
    process.send_signal(signal.SIGKILL)
    process.wait()
    started = time.monotonic()
    assert _gone_within(pids, 8) == [], "children outlived their supervisor"
    print(f"every child gone {time.monotonic() - started:.2f} s after the supervisor's SIGKILL")
    assert _gone_within([watchdog], 3) == [], "the watchdog stays only as long as its work"


def test_without_the_watchdog_direct_children_still_get_the_parent_death_signal(tmp_path) -> None:
    import signal

    process, (stubborn, quick, grandchild), _ = _start_tree(tmp_path, watchdog=False)
    try:
        process.send_signal(signal.SIGKILL)
        process.wait()
        assert _gone_within([quick], 5) == [], "a plain child dies with its parent (PR_SET_PDEATHSIG)"
        time.sleep(0.5)
        # One that ignores SIGTERM, and its grandchild, are the watchdog's job (the test above).
        assert alive(stubborn) and alive(grandchild)
    finally:
        for pid in (stubborn, grandchild):
            try:
                os.kill(pid, 9)
            except ProcessLookupError:
                pass


def test_a_clean_stop_dismisses_the_watchdog(tmp_path) -> None:
    supervisor = Supervisor(watchdog=True)
    child = supervisor.start("quick", ["sleep", "300"])
    watchdog = supervisor._watchdog
    assert watchdog is not None and watchdog.poll() is None
    supervisor.stop_all()
    assert watchdog.wait(timeout=5) == 0 and not alive(child.pid)
