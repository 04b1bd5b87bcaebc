"""pi_socket/userservice.py: the machine service's systemd unit and launchd agent, as text, and what install says."""

from __future__ import annotations

import plistlib
import stat
from pathlib import Path

from pi_socket import userservice as us

PY = "/v env/bin/python"


def test_machine_unit_runs_serve_with_the_shells_settings_and_no_secret():
    env = {"PATH": "/a:/b c", "HYPIVISOR_WS": "ws://hub:31415/ws", "PI_SOCKET_MACHINE": "lap 1", "HYPI_TOKEN": "t0k",
           "UNRELATED": "x"}  # fmt: skip
    unit = us.systemd_unit(us.MACHINE, [PY, "-m", "pi_socket", "serve"], us.service_env(us.MACHINE, env),
                           Path("/h/.config/hyper-pi/pi-socket.env"))  # fmt: skip
    assert 'ExecStart="/v env/bin/python" "-m" "pi_socket" "serve"' in unit
    assert 'Environment="PATH=/a:/b c"' in unit and 'Environment="HYPIVISOR_WS=ws://hub:31415/ws"' in unit
    assert 'Environment="PI_SOCKET_MACHINE=lap 1"' in unit and "UNRELATED" not in unit
    assert "EnvironmentFile=-/h/.config/hyper-pi/pi-socket.env" in unit
    assert "t0k" not in unit and "HYPI_TOKEN" not in unit
    assert "KillMode=process" in unit and "Restart=on-failure" in unit and "WantedBy=default.target" in unit
    assert "Description=Hyper-Pi machine service" in unit


def test_percent_and_dollar_are_not_expanded_by_systemd():
    unit = us.systemd_unit(us.MACHINE, ["/py", "50%"], {"PATH": "/bin", "PI_SOCKET_MACHINE": "a%b$c"})
    assert 'ExecStart="/py" "50%%"' in unit and 'Environment="PI_SOCKET_MACHINE=a%%b$c"' in unit


def test_machine_plist():
    data = plistlib.loads(us.launchd_plist(us.MACHINE, ["/py", "-m", "pi_socket", "serve"],
                                           {"PATH": "/bin", "HYPI_TOKEN": "t"}, Path("/L")))  # fmt: skip
    assert data["Label"] == "dev.hyper-pi.pi-socket" and data["ProgramArguments"] == ["/py", "-m", "pi_socket", "serve"]
    assert data["EnvironmentVariables"]["HYPI_TOKEN"] == "t" and data["StandardErrorPath"] == "/L/pi-socket.err.log"


def test_paths_commands_and_env_file_text():
    env = {"HOME": "/h"}
    assert us.unit_path(us.MACHINE, "systemd", env) == Path("/h/.config/systemd/user/pi-socket.service")
    assert us.unit_path(us.MACHINE, "launchd", env) == Path("/h/Library/LaunchAgents/dev.hyper-pi.pi-socket.plist")
    assert us.env_file_path(us.MACHINE, {"HOME": "/h", "XDG_CONFIG_HOME": "/x"}) == Path("/x/hyper-pi/pi-socket.env")
    assert us.manager_commands(us.MACHINE, "systemd", "install", Path("/u")) == [
        ["systemctl", "--user", "daemon-reload"],
        ["systemctl", "--user", "enable", "--now", "pi-socket.service"],
    ]
    assert us.manager_commands(us.MACHINE, "launchd", "install", Path("/u")) == [["launchctl", "load", "-w", "/u"]]
    assert us.env_file_text({"HYPI_TOKEN": 'a"b\\c'}) == 'HYPI_TOKEN="a\\"b\\\\c"\n'


def test_dry_run_prints_everything_and_changes_nothing(tmp_path):
    lines: list[str] = []
    env = {"HOME": str(tmp_path), "PATH": "/usr/bin", "HYPI_TOKEN": "secret-value"}
    assert us.main(us.MACHINE, ["install", "--dry-run"], env, "linux", lines.append, python="/py") == 0
    text = "\n".join(lines)
    assert "would write" in text and '"/py" "-m" "pi_socket" "serve"' in text
    assert "would run: systemctl --user daemon-reload" in text and "enable --now pi-socket.service" in text
    assert "mode 0600" in text and "secret-value" not in text and "nothing written" in text
    assert list(tmp_path.iterdir()) == []


def test_install_no_start_writes_the_unit_and_a_private_env_file(tmp_path):
    env = {"HOME": str(tmp_path), "PATH": "/usr/bin", "HYPI_TOKEN": "secret-value"}
    assert us.main(us.MACHINE, ["install", "--no-start"], env, "linux", lambda _: None, python="/py") == 0
    unit = tmp_path / ".config" / "systemd" / "user" / "pi-socket.service"
    secret = tmp_path / ".config" / "hyper-pi" / "pi-socket.env"
    assert "secret-value" not in unit.read_text() and secret.read_text() == 'HYPI_TOKEN="secret-value"\n'
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    assert us.main(us.MACHINE, ["status", "--no-start"], env, "linux", lambda _: None) == 0
    assert us.main(us.MACHINE, ["uninstall", "--no-start"], env, "linux", lambda _: None) == 0
    assert not unit.exists() and not secret.exists()
    assert us.main(us.MACHINE, ["status", "--no-start"], env, "linux", lambda _: None) == 3
    assert us.main(us.MACHINE, ["install", "--no-start"], env, "darwin", lambda _: None, python="/py") == 0
    plist = tmp_path / "Library" / "LaunchAgents" / "dev.hyper-pi.pi-socket.plist"
    assert stat.S_IMODE(plist.stat().st_mode) == 0o600  # it carries the token
