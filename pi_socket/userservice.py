"""``<prog> service install|uninstall|status``: a Hyper-Pi process as a user service, said out loud.

Shared by ``hypivisor service`` (hypivisor/userservice.py) and ``pi-socket service`` (the machine service,
``python -m pi_socket serve``; :data:`MACHINE`). Linux: a systemd user unit ``$XDG_CONFIG_HOME/systemd/user/<unit>``
(logs: ``journalctl --user -u <name>``); macOS: a launchd agent ``~/Library/LaunchAgents/<label>.plist`` (logs:
``~/Library/Logs/hyper-pi/``). Both run this Python with the service's arguments, the PATH of the shell that
installed it (pi and tmux are found on it) and the service's settings found in that shell (:attr:`Spec.pass_env`).

Never silent: ``install`` prints the file it writes, where, and each command it runs before running it;
``--dry-run`` prints the same and changes nothing; ``--no-start`` writes or removes the file only.

Secrets never go into the unit: a ``HYPI_TOKEN`` of the installing shell (the machine service needs it for a
remote hypivisor) is written to ``<config>/hyper-pi/<name>.env`` (0600), which the unit reads with
``EnvironmentFile=``; the launchd plist that carries it is written 0600. ``KillMode=process``: stopping the service
stops that process only; pi agents in tmux keep running.

The texts are built by pure functions (:func:`systemd_unit`, :func:`launchd_plist`, :func:`plan`); :func:`main`
writes them and calls ``systemctl --user`` or ``launchctl``.
"""

from __future__ import annotations

import argparse
import os
import plistlib
import shutil
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

SECRET_VARS = ("HYPI_TOKEN",)


@dataclass(frozen=True)
class Spec:
    """One service: what it runs and how it is named, described and logged."""

    name: str  # systemd unit stem and log name: hypivisor, pi-socket
    label: str  # launchd label
    prog: str  # the command that installs it, as printed
    description: str
    module: tuple[str, ...]  # python -m <module...>
    logs_hint: str  # where else it logs
    pass_env: tuple[str, ...] = ()  # settings copied from the installing shell (never secrets)
    secret_env: tuple[str, ...] = ()  # settings copied into the 0600 env file
    after: str = "network.target"
    notes: tuple[str, ...] = ()  # said at install, after what is written

    @property
    def unit(self) -> str:
        return f"{self.name}.service"


MACHINE = Spec(
    name="pi-socket",
    label="dev.hyper-pi.pi-socket",
    prog="pi-socket service",
    description="Hyper-Pi machine service (registers this machine with the hypivisor, starts pi on request)",
    module=("pi_socket", "serve"),
    logs_hint="~/.pi/logs/pi-socket-machine.jsonl",
    pass_env=(
        "HYPIVISOR_WS",
        "PI_SOCKET_MACHINE",
        "PI_BIN",
        "PI_CODING_AGENT_DIR",
        "PI_SOCKET_LOG_DIR",
        "HYPI_SPAWN_COMMAND",
    ),  # fmt: skip
    secret_env=SECRET_VARS,
    notes=(
        "one machine service runs per machine and user (a lock): if one already runs (a pi started it), the unit's "
        "exits at once and runs from the next login on",
        "it dials the hypivisor (HYPIVISOR_WS, default ws://localhost:31415/ws); no port is opened on this machine",
    ),
)


# ------------------------------------------------------------------ pure
def systemd_quote(arg: str) -> str:
    """One ExecStart word: double-quoted with ``\\`` and ``"`` escaped, ``%`` and ``$`` doubled (systemd expands
    both). Pure."""
    escaped = arg.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%").replace("$", "$$")
    return f'"{escaped}"'


def env_value(value: str) -> str:
    return systemd_quote(value)[1:-1].replace("$$", "$")  # Environment= does not expand $, only %


def systemd_unit(spec: Spec, argv: Sequence[str], env: Mapping[str, str], env_file: Path | None = None) -> str:
    """The user unit running ``argv`` with ``env`` (PATH first). Pure."""
    exec_start = " ".join(systemd_quote(a) for a in argv)
    lines = [f'Environment="{k}={env_value(v)}"' for k, v in env.items()]
    if env_file is not None:
        lines.append(f"EnvironmentFile=-{env_file}")
    environment = "\n".join(lines)
    return f"""[Unit]
Description={spec.description}
After={spec.after}

[Service]
Type=simple
ExecStart={exec_start}
{environment}
Environment=PYTHONUNBUFFERED=1
Restart=on-failure
RestartSec=2
KillMode=process
TimeoutStopSec=5

[Install]
WantedBy=default.target
"""


def launchd_plist(spec: Spec, argv: Sequence[str], env: Mapping[str, str], log_dir: Path) -> bytes:
    """The launchd agent running ``argv``; stdout and stderr go to ``log_dir``. Pure."""
    return plistlib.dumps(
        {
            "Label": spec.label,
            "ProgramArguments": list(argv),
            "EnvironmentVariables": {**env, "PYTHONUNBUFFERED": "1"},
            "RunAtLoad": True,
            "KeepAlive": {"SuccessfulExit": False},
            "StandardOutPath": str(log_dir / f"{spec.name}.out.log"),
            "StandardErrorPath": str(log_dir / f"{spec.name}.err.log"),
            "ProcessType": "Background",
        }
    )


def platform_kind(platform: str) -> str:
    if platform == "darwin":
        return "launchd"
    if platform.startswith("linux"):
        return "systemd"
    raise ValueError(f"no user service manager known for {platform}: run it from your own supervisor")


def _home(env: Mapping[str, str]) -> Path:
    return Path(env.get("HOME") or os.path.expanduser("~"))


def _config(env: Mapping[str, str]) -> Path:
    return Path(env["XDG_CONFIG_HOME"]) if env.get("XDG_CONFIG_HOME") else _home(env) / ".config"


def unit_path(spec: Spec, kind: str, env: Mapping[str, str]) -> Path:
    if kind == "launchd":
        return _home(env) / "Library" / "LaunchAgents" / f"{spec.label}.plist"
    return _config(env) / "systemd" / "user" / spec.unit


def env_file_path(spec: Spec, env: Mapping[str, str]) -> Path:
    return _config(env) / "hyper-pi" / f"{spec.name}.env"


def log_dir(env: Mapping[str, str]) -> Path:
    return _home(env) / "Library" / "Logs" / "hyper-pi"


def service_env(spec: Spec, env: Mapping[str, str]) -> dict[str, str]:
    """PATH and the service's settings from the installing shell (no secrets). Pure."""
    out = {"PATH": env.get("PATH", os.defpath)}
    out.update({k: env[k] for k in spec.pass_env if env.get(k)})
    return out


def secrets_of(spec: Spec, env: Mapping[str, str]) -> dict[str, str]:
    return {k: env[k] for k in spec.secret_env if env.get(k)}


def env_file_text(values: Mapping[str, str]) -> str:
    """``KEY="value"`` lines for systemd's ``EnvironmentFile=`` (``\\`` and ``"`` escaped). Pure."""
    return "".join(
        f'{k}="{v.replace(chr(92), chr(92) * 2).replace(chr(34), chr(92) + chr(34))}"\n' for k, v in values.items()
    )


def manager_commands(spec: Spec, kind: str, action: str, path: Path) -> list[list[str]]:
    """The commands ``action`` runs (after writing / before removing the file). Pure."""
    if kind == "systemd":
        return {
            "install": [["systemctl", "--user", "daemon-reload"], ["systemctl", "--user", "enable", "--now", spec.unit]],
            "uninstall": [["systemctl", "--user", "disable", "--now", spec.unit], ["systemctl", "--user", "daemon-reload"]],
            "status": [["systemctl", "--user", "status", "--no-pager", spec.unit]],
        }[action]  # fmt: skip
    return {
        "install": [["launchctl", "load", "-w", str(path)]],
        "uninstall": [["launchctl", "unload", "-w", str(path)]],
        "status": [["launchctl", "list", spec.label]],
    }[action]


def logs_command(spec: Spec, kind: str, env: Mapping[str, str]) -> str:
    return f"journalctl --user -u {spec.name} -f" if kind == "systemd" else f"tail -f {log_dir(env)}/{spec.name}.*.log"


# ------------------------------------------------------------------ I/O
def _run(argv: list[str], out: Callable[[str], None]) -> int:
    if shutil.which(argv[0]) is None:
        out(f"{argv[0]} not found: run `{' '.join(argv)}` yourself where it exists")
        return 1
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    text = (done.stdout + done.stderr).strip()
    if text:
        out(text)
    return done.returncode


def _write(path: Path, data: bytes, private: bool) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if private else 0o644)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(tmp, 0o600 if private else 0o644)
    os.replace(tmp, path)


def main(
    spec: Spec,
    argv: Sequence[str],
    env: Mapping[str, str] | None = None,
    platform: str | None = None,
    out: Callable[[str], None] = print,
    python: str | None = None,
) -> int:
    env = os.environ if env is None else env
    p = argparse.ArgumentParser(
        prog=spec.prog,
        description=f"Run `python -m {' '.join(spec.module)}` as a user service (systemd user unit on Linux, "
        "launchd agent on macOS). Prints what it writes and runs.",
        epilog=f"Arguments after -- are the service's, e.g. `{spec.prog} install -- --host 127.0.0.1`.",
    )
    p.add_argument("action", choices=["install", "uninstall", "status"])
    p.add_argument("--no-start", action="store_true", help="write or remove the file only; do not call the manager")
    p.add_argument("--dry-run", action="store_true", help="print what would be written and run; change nothing")
    own, extra = (
        (list(argv), []) if "--" not in argv else (list(argv[: argv.index("--")]), list(argv[argv.index("--") + 1 :]))
    )
    args = p.parse_args(own)

    def say(line: str) -> None:
        out(f"{spec.prog}: {line}")

    try:
        kind = platform_kind(platform or sys.platform)
    except ValueError as exc:
        say(str(exc))
        return 2
    path = unit_path(spec, kind, env)
    commands = [] if args.no_start else manager_commands(spec, kind, args.action, path)
    verb = "would" if args.dry_run else "will"

    if args.action == "install":
        cmd = [python or sys.executable, "-m", *spec.module, *extra]
        senv, hidden = service_env(spec, env), secrets_of(spec, env)
        env_file = env_file_path(spec, env) if kind == "systemd" else None
        if kind == "systemd":
            data = systemd_unit(spec, cmd, senv, env_file if hidden else None).encode()
        else:
            data = launchd_plist(spec, cmd, {**senv, **hidden}, log_dir(env))
        say(f"{verb} write {path}: a {'systemd user unit' if kind == 'systemd' else 'launchd agent'} running "
            f"`{' '.join(cmd)}` at login and after a crash (stopping it never stops pi)")  # fmt: skip
        shown = data.decode()
        for k, v in hidden.items():
            shown = shown.replace(v, f"<{k}>")
        out("----- " + str(path) + "\n" + shown.rstrip("\n") + "\n-----")
        if hidden and env_file is not None:
            say(f"{verb} write {env_file} (mode 0600): {', '.join(hidden)} from this shell (not shown)")
        for c in commands:
            say(f"{verb} run: {' '.join(c)}")
        for note in spec.notes:
            say(note)
        if args.dry_run:
            say("dry run: nothing written, nothing run")
            return 0
        if hidden and env_file is not None:
            _write(env_file, env_file_text(hidden).encode(), private=True)
        if kind == "launchd":
            log_dir(env).mkdir(parents=True, exist_ok=True)
        _write(path, data, private=bool(hidden) and kind == "launchd")
        say(f"wrote {path}")
        for c in commands:
            rc = _run(c, out)
            if rc:
                return rc
        say(f"logs: {logs_command(spec, kind, env)} (and {spec.logs_hint})")
        return 0

    if args.action == "uninstall":
        existed = path.exists()
        extra_file = env_file_path(spec, env)
        if not existed:
            say(f"not installed: {path} does not exist; nothing to do")
            return 0
        commands = commands[:1] if kind == "launchd" else commands
        for c in commands:
            say(f"{verb} run: {' '.join(c)}")
        say(f"{verb} remove {path}" + (f" and {extra_file}" if extra_file.exists() else ""))
        if args.dry_run:
            say("dry run: nothing removed, nothing run")
            return 0
        if commands:
            _run(commands[0], out)
        path.unlink(missing_ok=True)
        extra_file.unlink(missing_ok=True)
        for c in commands[1:]:
            _run(c, out)
        say(f"removed {path}")
        return 0

    # status
    if not path.exists():
        say(f"not installed ({path} does not exist); `{spec.prog} install` sets it up")
        return 3
    say(f"installed: {path}")
    if args.no_start or args.dry_run:
        return 0
    return _run(commands[0], out)
