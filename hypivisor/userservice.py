"""``hypivisor service install|uninstall|status``: the hypivisor as a user service.

Linux: a systemd user unit ``$XDG_CONFIG_HOME/systemd/user/hypivisor.service`` (logs: ``journalctl --user -u
hypivisor``); macOS: a launchd agent ``~/Library/LaunchAgents/dev.hyper-pi.hypivisor.plist`` (logs:
``~/Library/Logs/hyper-pi/``). Both run this Python's ``-m hypivisor`` with the arguments given after ``--`` and the
PATH of the shell that installed it (``spawn_agent`` finds pi and tmux on it). No token is written into either file:
the hypivisor reads its token file (specs/security.md §5).

``KillMode=process``: stopping the service stops the hypivisor only; agents it spawned keep running in tmux, as
they do when it is stopped by hand.

The texts are built by pure functions (:func:`systemd_unit`, :func:`launchd_plist`); ``main`` writes them and calls
``systemctl --user`` or ``launchctl`` unless ``--no-start``.
"""

from __future__ import annotations

import argparse
import os
import plistlib
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

UNIT = "hypivisor.service"
LABEL = "dev.hyper-pi.hypivisor"


def systemd_quote(arg: str) -> str:
    """One ExecStart word: double-quoted with ``\\`` and ``"`` escaped, ``%`` and ``$`` doubled (systemd expands
    both). Pure."""
    escaped = arg.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%").replace("$", "$$")
    return f'"{escaped}"'


def _env_value(value: str) -> str:
    return systemd_quote(value)[1:-1].replace("$$", "$")  # Environment= does not expand $, only %


def systemd_unit(argv: Sequence[str], path_env: str) -> str:
    """The user unit running ``argv``. Pure."""
    exec_start = " ".join(systemd_quote(a) for a in argv)
    return f"""[Unit]
Description=Hyper-Pi hypivisor (registry, proxy and dashboard of pi agents)
After=network.target

[Service]
Type=simple
ExecStart={exec_start}
Environment="PATH={_env_value(path_env)}"
Environment=PYTHONUNBUFFERED=1
Restart=on-failure
RestartSec=2
KillMode=process
TimeoutStopSec=5

[Install]
WantedBy=default.target
"""


def launchd_plist(argv: Sequence[str], path_env: str, log_dir: Path) -> bytes:
    """The launchd agent running ``argv``; stdout and stderr go to ``log_dir``. Pure."""
    return plistlib.dumps(
        {
            "Label": LABEL,
            "ProgramArguments": list(argv),
            "EnvironmentVariables": {"PATH": path_env, "PYTHONUNBUFFERED": "1"},
            "RunAtLoad": True,
            "KeepAlive": {"SuccessfulExit": False},
            "StandardOutPath": str(log_dir / "hypivisor.out.log"),
            "StandardErrorPath": str(log_dir / "hypivisor.err.log"),
            "ProcessType": "Background",
        }
    )


def platform_kind(platform: str) -> str:
    if platform == "darwin":
        return "launchd"
    if platform.startswith("linux"):
        return "systemd"
    raise ValueError(f"no user service manager known for {platform}: run `hypivisor` from your own supervisor")


def unit_path(kind: str, env: Mapping[str, str]) -> Path:
    home = Path(env.get("HOME") or os.path.expanduser("~"))
    if kind == "launchd":
        return home / "Library" / "LaunchAgents" / f"{LABEL}.plist"
    base = Path(env["XDG_CONFIG_HOME"]) if env.get("XDG_CONFIG_HOME") else home / ".config"
    return base / "systemd" / "user" / UNIT


def log_dir(env: Mapping[str, str]) -> Path:
    return Path(env.get("HOME") or os.path.expanduser("~")) / "Library" / "Logs" / "hyper-pi"


def service_argv(extra: Sequence[str], python: str) -> list[str]:
    return [python, "-m", "hypivisor", *extra]


def _run(argv: list[str]) -> int:
    if shutil.which(argv[0]) is None:
        print(f"hypivisor service: {argv[0]} not found; the file is written, start it yourself", file=sys.stderr)
        return 1
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    out = (done.stdout + done.stderr).strip()
    if out:
        print(out)
    return done.returncode


def main(argv: Sequence[str], env: Mapping[str, str] | None = None, platform: str | None = None) -> int:
    env = os.environ if env is None else env
    p = argparse.ArgumentParser(
        prog="hypivisor service",
        description="Run the hypivisor as a user service (systemd user unit on Linux, launchd agent on macOS).",
        epilog="Arguments after -- are the hypivisor's, e.g. `hypivisor service install -- --host 127.0.0.1`.",
    )
    p.add_argument("action", choices=["install", "uninstall", "status"])
    p.add_argument("--no-start", action="store_true", help="write or remove the file only; do not call the manager")
    own, extra = (
        (list(argv), []) if "--" not in argv else (list(argv[: argv.index("--")]), argv[argv.index("--") + 1 :])
    )
    args = p.parse_args(own)
    try:
        kind = platform_kind(platform or sys.platform)
    except ValueError as exc:
        print(f"hypivisor service: {exc}", file=sys.stderr)
        return 2
    path = unit_path(kind, env)
    if args.action == "install":
        cmd = service_argv(extra, sys.executable)
        path.parent.mkdir(parents=True, exist_ok=True)
        path_env = env.get("PATH", os.defpath)
        if kind == "systemd":
            path.write_text(systemd_unit(cmd, path_env), encoding="utf-8")
        else:
            log_dir(env).mkdir(parents=True, exist_ok=True)
            path.write_bytes(launchd_plist(cmd, path_env, log_dir(env)))
        print(f"hypivisor service: wrote {path}")
        if not args.no_start:
            if kind == "systemd":
                rc = _run(["systemctl", "--user", "daemon-reload"]) or _run(
                    ["systemctl", "--user", "enable", "--now", UNIT]
                )
            else:
                rc = _run(["launchctl", "load", "-w", str(path)])
            if rc:
                return rc
        logs = "journalctl --user -u hypivisor -f" if kind == "systemd" else f"tail -f {log_dir(env)}/*.log"
        print(f"hypivisor service: logs: {logs} (and ~/.pi/logs/hypivisor.jsonl); `hypivisor url` prints the link")
        return 0
    if args.action == "uninstall":
        if not args.no_start and path.exists():
            if kind == "systemd":
                _run(["systemctl", "--user", "disable", "--now", UNIT])
            else:
                _run(["launchctl", "unload", "-w", str(path)])
        existed = path.exists()
        path.unlink(missing_ok=True)
        if kind == "systemd" and existed and not args.no_start:
            _run(["systemctl", "--user", "daemon-reload"])
        print(f"hypivisor service: {'removed' if existed else 'not installed:'} {path}")
        return 0
    # status
    if not path.exists():
        print(f"hypivisor service: not installed ({path} does not exist)")
        return 3
    print(f"hypivisor service: {path}")
    if args.no_start:
        return 0
    if kind == "systemd":
        return _run(["systemctl", "--user", "status", "--no-pager", UNIT])
    return _run(["launchctl", "list", LABEL])
