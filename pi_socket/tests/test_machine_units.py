"""The machine service's pure parts and small I/O: where its files live, the one-instance lock, its name."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from pi_socket.bridge.config import BridgeConfig
from pi_socket.machine import facts
from pi_socket.machine.lock import AlreadyRunning, InstanceLock, runtime_dir, secret_path, state_dir
from pi_socket.machine.service import machine_name


def test_runtime_dir_prefers_xdg_runtime_then_the_state_dir():
    assert runtime_dir({"XDG_RUNTIME_DIR": "/run/user/7", "HOME": "/h"}) == Path("/run/user/7/hyper-pi")
    assert runtime_dir({"HOME": "/h"}) == Path("/h/.local/state/hyper-pi/run")
    assert runtime_dir({"XDG_STATE_HOME": "/s", "HOME": "/h"}) == Path("/s/hyper-pi/run")
    assert state_dir({"HOME": "/h"}) == Path("/h/.local/state/hyper-pi")
    assert secret_path({"HOME": "/h"}) == Path("/h/.local/state/hyper-pi/machine-secret")


def test_the_lock_admits_one_holder_and_names_it(tmp_path):
    folder = tmp_path / "run"
    first = InstanceLock(folder)
    first.acquire()
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert stat.S_IMODE(first.path.stat().st_mode) == 0o600
    with pytest.raises(AlreadyRunning) as err:
        InstanceLock(folder).acquire()
    assert err.value.pid == os.getpid() and f"pid {os.getpid()}" in str(err.value)
    first.release()
    again = InstanceLock(folder)
    again.acquire()  # released: the next one takes it
    again.release()


def test_a_killed_holder_leaves_no_stale_lock(tmp_path):
    folder = tmp_path / "run"
    code = f"from pathlib import Path; from pi_socket.machine.lock import InstanceLock; InstanceLock(Path({str(folder)!r})).acquire(); import os; os._exit(0)"  # noqa: E501
    subprocess.run([sys.executable, "-c", code], check=True, timeout=30)
    lock = InstanceLock(folder)
    lock.acquire()  # the file remains, the lock went with the process
    lock.release()


def test_a_lax_runtime_dir_is_made_private(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir(mode=0o755)
    folder.chmod(0o755)
    lock = InstanceLock(folder)
    lock.acquire()
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    lock.release()


def test_machine_name_and_the_bridge_agree():
    assert machine_name({"PI_SOCKET_MACHINE": " beta "}) == "beta"
    assert machine_name({}) == machine_name({"PI_SOCKET_MACHINE": "  "}) != ""
    assert BridgeConfig.from_env({"PI_SOCKET_MACHINE": "beta"}).machine == "beta"
    assert BridgeConfig.from_env({}).machine == machine_name({})


def test_pi_candidates_and_versions(tmp_path):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    pi = bindir / "pi"
    pi.write_text("#!/bin/sh\necho 9.8.7\n")
    pi.chmod(0o755)
    env = {"PATH": str(bindir)}
    assert facts.pi_candidates(env) == [str(pi)]
    assert facts.pi_candidates({**env, "PI_BIN": str(pi)}) == [str(pi)]  # the same pi once
    assert facts.pi_version_of(str(pi)) == "9.8.7"
    got = facts.gather(env, "/h")
    assert got.pi_versions == ["9.8.7"] and got.home == "/h" and got.os
    assert facts.pi_candidates({"PATH": str(tmp_path / "none")}) == []


def test_a_second_start_racing_the_first_waits_for_its_pid(tmp_path):
    """The holder takes the lock, then writes its pid: a second start in between still names it."""
    import fcntl
    import os
    import threading

    from pi_socket.machine.lock import AlreadyRunning, InstanceLock

    path = tmp_path / "machine.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # held, no pid yet
    timer = threading.Timer(0.15, lambda: os.pwrite(fd, b"4242\n", 0))
    timer.start()
    try:
        try:
            InstanceLock(tmp_path).acquire()
            raise AssertionError("the lock was taken twice")
        except AlreadyRunning as exc:
            assert exc.pid == 4242
    finally:
        timer.join()
        os.close(fd)
