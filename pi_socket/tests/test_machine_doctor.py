"""pi_socket/machine/doctor.py: the judgements (pure) and the observations that need no other process."""

from __future__ import annotations

import os
import socket
from pathlib import Path

from pi_socket.machine import doctor as d


def test_pi_versions():
    assert d.judge_pi(None) is None
    assert d.judge_pi((0, 73, 1)).level == "ok" and d.judge_pi((1, 6, 0)).level == "ok"
    assert d.judge_pi((1, 7, 0)).level == "warn" and "0.73.x, 1.5.x, 1.6.x" in d.judge_pi((1, 7, 0)).detail
    assert d.judge_pi((0, 60, 0)).level == "fail" and "upgrade pi" in d.judge_pi((0, 60, 0)).fix


def test_service_from_the_lock():
    lock = Path("/run/x/machine.lock")
    assert d.judge_service(42, True, lock).level == "ok" and "pid 42" in d.judge_service(42, True, lock).detail
    assert d.judge_service(None, False, lock).level == "warn"
    gone = d.judge_service(42, False, lock)
    assert gone.level == "warn" and "not running" in gone.detail and "pi-socket serve" in gone.fix


def test_modes():
    f = Path("/run/x")
    assert d.judge_modes(f, {".": None}).level == "ok"
    assert d.judge_modes(f, {".": 0o700, "machine.lock": 0o600, "agents.sock": None}).level == "ok"
    lax = d.judge_modes(f, {".": 0o755, "machine.lock": 0o644})
    assert lax.level == "fail" and "0755" in lax.detail and "0644" in lax.detail and "chmod 700" in lax.fix


def test_registration_and_token():
    online = [{"name": "lap", "online": True, "agents": 2}]
    assert d.judge_registration("lap", True, True, online).level == "ok"
    assert d.judge_registration("lap", True, False, None).level == "warn"
    assert d.judge_registration("lap", True, True, None).level == "warn"  # an older hypivisor
    assert d.judge_registration("lap", False, True, []).level == "warn"
    assert d.judge_registration("lap", True, True, [{"name": "lap", "online": False}]).level == "fail"
    assert d.judge_token("t", "HYPI_TOKEN", None).level == "ok" and "t" not in d.judge_token("t", "x", None).detail[:1]
    assert d.judge_token(None, "", False).level == "ok"
    assert d.judge_token(None, "", True).level == "fail" and d.judge_token(None, "", None).level == "warn"


def test_socket_findings(tmp_path):
    path = tmp_path / "agents.sock"
    assert d.socket_finding(path, running=False).level == "ok"
    assert d.socket_finding(path, running=True).level == "warn"
    path.write_text("not a socket")
    assert d.socket_finding(path, running=True).level == "fail"
    path.unlink()
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(str(path))
    srv.listen(1)
    try:
        assert d.socket_finding(path, running=True).level == "ok"
    finally:
        srv.close()
    assert d.socket_finding(path, running=True).level == "fail"  # a socket nobody listens on


def test_lock_pid_and_liveness(tmp_path):
    lock = tmp_path / "machine.lock"
    assert d.lock_pid(lock) is None
    lock.write_text(f"{os.getpid()}\n")
    assert d.lock_pid(lock) == os.getpid()
    assert d.pid_alive(2**22 + 12345) is False
