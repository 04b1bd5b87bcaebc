"""``pi-socket service install|status|uninstall`` end to end with a stand-in ``systemctl`` (systemd is not
available here): a script on PATH that records its argv. A temp HOME; the real CLI in a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from integration_tests.harness.hypivisor_proc import REPO_ROOT

FAKE = """#!{python}
import json, sys
with open({log!r}, "a") as f:
    f.write(json.dumps(sys.argv[1:]) + "\\n")
print("fake systemctl:", " ".join(sys.argv[1:]))
"""


def run(tmp_path: Path, *args: str, script: str | None = None, **extra: str):
    """Run ``pi-socket service <args>`` with ``systemctl`` on PATH (the recorder, or ``script``): (done, calls)."""
    bindir, log = tmp_path / "bin", tmp_path / "calls.jsonl"
    bindir.mkdir(exist_ok=True)
    fake = bindir / "systemctl"
    fake.write_text(script or FAKE.format(python=sys.executable, log=str(log)))
    fake.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HYPI", "PI_", "XDG_"))}
    env.update(HOME=str(tmp_path / "home"), PATH=f"{bindir}:{os.environ['PATH']}", PYTHONPATH=str(REPO_ROOT), **extra)
    done = subprocess.run([sys.executable, "-m", "pi_socket", "service", *args], env=env, cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    calls = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    log.unlink(missing_ok=True)
    return done, calls


def test_install_status_uninstall_with_a_recording_systemctl(tmp_path):
    if not sys.platform.startswith("linux"):
        return
    unit = tmp_path / "home" / ".config" / "systemd" / "user" / "pi-socket.service"
    secret = tmp_path / "home" / ".config" / "hyper-pi" / "pi-socket.env"

    dry, calls = run(tmp_path, "install", "--dry-run", HYPIVISOR_WS="ws://hub.lan:31415/ws", HYPI_TOKEN="tok-xyz")
    assert dry.returncode == 0 and calls == [] and not unit.exists(), dry.stdout + dry.stderr
    assert "would run: systemctl --user enable --now pi-socket.service" in dry.stdout

    done, calls = run(tmp_path, "install", HYPIVISOR_WS="ws://hub.lan:31415/ws", HYPI_TOKEN="tok-xyz")
    assert done.returncode == 0, done.stdout + done.stderr
    assert calls == [["--user", "daemon-reload"], ["--user", "enable", "--now", "pi-socket.service"]]
    text = unit.read_text()
    assert f'ExecStart="{sys.executable}" "-m" "pi_socket" "serve"' in text
    assert 'Environment="HYPIVISOR_WS=ws://hub.lan:31415/ws"' in text and "tok-xyz" not in text
    assert secret.read_text() == 'HYPI_TOKEN="tok-xyz"\n' and (secret.stat().st_mode & 0o777) == 0o600
    out = done.stdout
    assert str(unit) in out and "[Service]" in out  # what is written, and where, is printed
    assert "will run: systemctl --user daemon-reload" in out and "fake systemctl: --user enable --now" in out
    assert "journalctl --user -u pi-socket" in out and "tok-xyz" not in out + done.stderr

    status, calls = run(tmp_path, "status")
    assert status.returncode == 0 and calls == [["--user", "status", "--no-pager", "pi-socket.service"]]

    gone, calls = run(tmp_path, "uninstall")
    assert gone.returncode == 0, gone.stdout + gone.stderr
    assert calls == [["--user", "disable", "--now", "pi-socket.service"], ["--user", "daemon-reload"]]
    assert not unit.exists() and not secret.exists()
    again, calls = run(tmp_path, "status")
    assert again.returncode == 3 and calls == [] and "not installed" in again.stdout


def test_a_failing_systemctl_is_said_and_the_exit_code_kept(tmp_path):
    failed, _ = run(tmp_path, "install", script="#!/bin/sh\necho 'Failed to connect to bus' >&2\nexit 1\n")
    assert failed.returncode == 1 and "Failed to connect to bus" in failed.stdout
