"""The Supervisor: what a launcher starts, it stops, descendants in sessions of their own included."""

from __future__ import annotations

import os
import sys
import time

import pytest

from fl_runtime.errors import ProcessError
from fl_runtime.launch.processes import Supervisor, descendants, interrupts_as_keyboard_interrupt, process_status


def test_stopping_a_process_also_stops_the_descendants_it_detached_into_their_own_sessions(tmp_path):
    detached = tmp_path / "detached.pid"
    spawner = (
        "import subprocess, sys, time\n"
        f"child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'], start_new_session=True)\n"
        f"open({str(detached)!r}, 'w').write(str(child.pid))\n"
        "time.sleep(600)\n"
    )
    supervisor = Supervisor(tmp_path / "logs", grace=2.0)
    leader = supervisor.start("spawner", [sys.executable, "-c", spawner], dict(os.environ), tmp_path)
    deadline = time.monotonic() + 30
    while not (detached.exists() and detached.read_text()) and time.monotonic() < deadline:
        time.sleep(0.1)
    child = int(detached.read_text())
    assert list(descendants(leader.pid)) == [child] and os.getpgid(child) != os.getpgid(leader.pid)
    assert process_status(child).state in "RS"
    supervisor.stop_all()
    assert leader.poll() is not None
    status = process_status(child)
    assert status is None or status.state == "Z"  # gone, or dead and awaiting init


def test_stop_all_signals_every_process_before_waiting_for_any_and_kills_those_past_one_shared_grace(tmp_path):
    """Each of three processes takes a second to clean up after SIGTERM; two stubborn ones ignore it."""
    cleans_up = (
        "import signal, sys, time\n"
        "def term(*_):\n"
        "    open(sys.argv[1] + '.term', 'w').write(repr(time.time())); time.sleep(1)\n"
        "    open(sys.argv[1] + '.exit', 'w').write(repr(time.time())); sys.exit(0)\n"
        "signal.signal(signal.SIGTERM, term)\n"
        "open(sys.argv[1] + '.ready', 'w').close()\n"
        "time.sleep(600)\n"
    )
    stubborn = (
        "import signal, sys, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "open(sys.argv[1] + '.ready', 'w').close()\n"
        "time.sleep(600)\n"
    )
    grace = 3.0
    supervisor = Supervisor(tmp_path / "logs", grace=grace)
    polite, stubborn_names = ["first", "second", "third"], ["stubborn", "stubborn-too"]
    for name in polite:
        supervisor.start(name, [sys.executable, "-c", cleans_up, str(tmp_path / name)], dict(os.environ), tmp_path)
    for name in stubborn_names:
        supervisor.start(name, [sys.executable, "-c", stubborn, str(tmp_path / name)], dict(os.environ), tmp_path)
    deadline = time.monotonic() + 60
    while not all((tmp_path / f"{n}.ready").exists() for n in polite + stubborn_names) and time.monotonic() < deadline:
        time.sleep(0.05)
    started = time.monotonic()
    supervisor.stop_all()
    took = time.monotonic() - started
    signalled = [float((tmp_path / f"{name}.term").read_text()) for name in polite]
    exited = [float((tmp_path / f"{name}.exit").read_text()) for name in polite]
    assert max(signalled) < min(exited)  # nobody's clean-up waited for another's
    assert supervisor.exited() == {"first": 0, "second": 0, "third": 0, "stubborn": -9, "stubborn-too": -9}
    assert took < 2 * grace - 0.5, took  # one grace for both stubborn processes, not one each


def test_a_second_process_of_the_same_name_is_refused_while_the_first_runs(tmp_path):
    supervisor = Supervisor(tmp_path / "logs", grace=1.0)
    try:
        supervisor.start("sleeper", [sys.executable, "-c", "import time; time.sleep(60)"], dict(os.environ), tmp_path)
        with pytest.raises(ProcessError, match="a process named sleeper is already running"):
            supervisor.start("sleeper", [sys.executable, "-c", "pass"], dict(os.environ), tmp_path)
    finally:
        supervisor.stop_all()
    assert supervisor.exited()["sleeper"] != 0


def test_exit_codes_and_the_tail_of_each_log_are_reported(tmp_path):
    supervisor = Supervisor(tmp_path / "logs")
    process = supervisor.start(
        "talker",
        [sys.executable, "-c", "print('\\n'.join(map(str, range(30)))); raise SystemExit(3)"],
        dict(os.environ),
        tmp_path,
    )
    process.wait(timeout=30)
    assert supervisor.exited() == {"talker": 3}
    assert supervisor.log_tail("talker", 2) == "28\n29"
    assert supervisor.log_tail("never-started") == ""


def test_sigterm_takes_the_clean_up_path_of_ctrl_c():
    import signal

    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt, match="signal 15"), interrupts_as_keyboard_interrupt():
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)
    assert signal.getsignal(signal.SIGTERM) is before  # the previous handler is back
