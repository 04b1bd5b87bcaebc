"""``hypivisor service``: the systemd user unit and the launchd agent it writes, and where."""

from __future__ import annotations

import plistlib
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from hypivisor import userservice


def test_systemd_quoting():
    assert userservice.systemd_quote("plain") == '"plain"'
    assert userservice.systemd_quote('a "b" \\c') == '"a \\"b\\" \\\\c"'
    assert userservice.systemd_quote("50% $HOME") == '"50%% $$HOME"'


def test_unit_runs_this_python_with_the_arguments_and_no_token():
    unit = userservice.systemd_unit(["/v env/bin/python", "-m", "hypivisor", "--host", "127.0.0.1"], "/a:/b c")
    assert 'ExecStart="/v env/bin/python" "-m" "hypivisor" "--host" "127.0.0.1"' in unit
    assert 'Environment="PATH=/a:/b c"' in unit
    assert "KillMode=process" in unit and "WantedBy=default.target" in unit and "Restart=on-failure" in unit
    assert "TOKEN" not in unit


def test_launchd_plist():
    data = plistlib.loads(userservice.launchd_plist(["/py", "-m", "hypivisor"], "/bin", Path("/L")))
    assert data["Label"] == userservice.LABEL and data["ProgramArguments"] == ["/py", "-m", "hypivisor"]
    assert data["StandardErrorPath"] == "/L/hypivisor.err.log" and data["EnvironmentVariables"]["PATH"] == "/bin"


def test_where_the_files_go():
    env = {"HOME": "/h"}
    assert userservice.unit_path("systemd", env) == Path("/h/.config/systemd/user/hypivisor.service")
    assert userservice.unit_path("systemd", {**env, "XDG_CONFIG_HOME": "/x"}) == Path(
        "/x/systemd/user/hypivisor.service"
    )
    assert userservice.unit_path("launchd", env) == Path(f"/h/Library/LaunchAgents/{userservice.LABEL}.plist")
    assert userservice.platform_kind("linux") == "systemd" and userservice.platform_kind("darwin") == "launchd"
    with pytest.raises(ValueError):
        userservice.platform_kind("win32")


def test_install_status_uninstall_without_the_manager(tmp_path, capsys):
    env = {"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}
    assert userservice.main(["status", "--no-start"], env, "linux") == 3
    assert userservice.main(["install", "--no-start", "--", "--host", "127.0.0.1"], env, "linux") == 0
    unit = tmp_path / ".config" / "systemd" / "user" / "hypivisor.service"
    assert f'ExecStart="{sys.executable}" "-m" "hypivisor" "--host" "127.0.0.1"' in unit.read_text()
    assert "journalctl --user -u hypivisor" in capsys.readouterr().out
    assert userservice.main(["status", "--no-start"], env, "linux") == 0
    assert userservice.main(["uninstall", "--no-start"], env, "linux") == 0
    assert not unit.exists()
    assert userservice.main(["install", "--no-start"], env, "darwin") == 0
    plist = tmp_path / "Library" / "LaunchAgents" / f"{userservice.LABEL}.plist"
    assert plistlib.loads(plist.read_bytes())["ProgramArguments"] == [sys.executable, "-m", "hypivisor"]
    assert (tmp_path / "Library" / "Logs" / "hyper-pi").is_dir()
    with pytest.raises(SystemExit):
        userservice.main(["bogus"], env, "linux")


def _verify(unit: Path) -> subprocess.CompletedProcess:
    # system mode: a container has no user manager to ask (`--user` then fails before reading the file); the unit
    # syntax, the executable and the dependencies are checked the same way
    return subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60)


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not available")
def test_systemd_analyze_verifies_the_unit(tmp_path):
    unit = tmp_path / "hypivisor.service"
    unit.write_text(userservice.systemd_unit([sys.executable, "-m", "hypivisor", "--host", "127.0.0.1"], "/usr/bin"))
    done = _verify(unit)
    assert done.returncode == 0 and "hypivisor.service" not in done.stdout + done.stderr, done.stdout + done.stderr
    broken = tmp_path / "broken.service"  # the check can fail: a relative ExecStart is refused
    broken.write_text(userservice.systemd_unit(["python", "-m", "hypivisor"], "/usr/bin").replace('"python"', "py/x"))
    assert _verify(broken).returncode != 0
