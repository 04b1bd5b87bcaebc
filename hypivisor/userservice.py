"""``hypivisor service install|uninstall|status``: the hypivisor as a user service.

Linux: a systemd user unit ``$XDG_CONFIG_HOME/systemd/user/hypivisor.service`` (logs: ``journalctl --user -u
hypivisor``); macOS: a launchd agent ``~/Library/LaunchAgents/dev.hyper-pi.hypivisor.plist`` (logs:
``~/Library/Logs/hyper-pi/``). Both run this Python's ``-m hypivisor`` with the arguments given after ``--`` and the
PATH of the shell that installed it (``spawn_agent`` finds pi and tmux on it). No token is written into either file:
the hypivisor reads its token file (specs/security.md §5).

``KillMode=process``: stopping the service stops the hypivisor only; agents it spawned keep running in tmux, as
they do when it is stopped by hand. The machinery (texts, paths, printing, ``--dry-run``) is shared with
``pi-socket service`` in pi_socket/userservice.py; this module names the hypivisor's service.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from pi_socket import userservice as shared
from pi_socket.userservice import log_dir, platform_kind, systemd_quote

__all__ = ["LABEL", "SPEC", "UNIT", "launchd_plist", "log_dir", "main", "platform_kind", "systemd_quote",
           "systemd_unit", "unit_path"]  # fmt: skip

SPEC = shared.Spec(
    name="hypivisor",
    label="dev.hyper-pi.hypivisor",
    prog="hypivisor service",
    description="Hyper-Pi hypivisor (registry, proxy and dashboard of pi agents)",
    module=("hypivisor",),
    logs_hint="~/.pi/logs/hypivisor.jsonl; `hypivisor url` prints the link",
)
UNIT = SPEC.unit
LABEL = SPEC.label


def systemd_unit(argv: Sequence[str], path_env: str) -> str:
    """The user unit running ``argv``. Pure."""
    return shared.systemd_unit(SPEC, argv, {"PATH": path_env})


def launchd_plist(argv: Sequence[str], path_env: str, logs: Path) -> bytes:
    """The launchd agent running ``argv``; stdout and stderr go to ``logs``. Pure."""
    return shared.launchd_plist(SPEC, argv, {"PATH": path_env}, logs)


def unit_path(kind: str, env: Mapping[str, str]) -> Path:
    return shared.unit_path(SPEC, kind, env)


def main(argv: Sequence[str], env: Mapping[str, str] | None = None, platform: str | None = None) -> int:
    return shared.main(SPEC, argv, env, platform)
