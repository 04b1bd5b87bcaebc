"""What a machine says about itself: OS, pi versions found, tmux, home folder. Small, bounded reads only."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from collections.abc import Mapping

from pi_socket import __version__
from pi_socket.protocol import MAX_VERSION_LEN, MachineFacts

PI_VERSION_TIMEOUT_S = 10.0


def os_name() -> str:
    return f"{platform.system()} {platform.release()} {platform.machine()}".strip()[:200]


def pi_candidates(env: Mapping[str, str]) -> list[str]:
    """The pi executables this machine would run: ``PI_BIN``, then ``pi`` on PATH (each once, resolved)."""
    found: list[str] = []
    explicit = (env.get("PI_BIN") or "").strip()
    for cand in ([explicit] if explicit else []) + ["pi"]:
        path = cand if os.sep in cand and os.path.exists(cand) else shutil.which(cand, path=env.get("PATH"))
        if path and os.path.realpath(path) not in {os.path.realpath(p) for p in found}:
            found.append(path)
    return found


def pi_version_of(pi: str) -> str | None:
    """pi's version from its package.json (no process), else from ``pi --version`` (bounded)."""
    from pi_socket import install

    found = install._package_version(pi)  # noqa: SLF001 - the one place that knows pi's package layout
    if found is None:
        try:
            done = subprocess.run([pi, "--version"], capture_output=True, text=True, timeout=PI_VERSION_TIMEOUT_S,
                                  stdin=subprocess.DEVNULL)  # fmt: skip
        except (OSError, subprocess.SubprocessError):
            return None
        found = install._version_tuple(done.stdout.strip().splitlines()[-1]) if done.stdout.strip() else None  # noqa: SLF001
    return ".".join(map(str, found))[:MAX_VERSION_LEN] if found else None


def gather(env: Mapping[str, str], home: str) -> MachineFacts:
    """Everything a machine service registers with (blocking: run it in a thread)."""
    versions = [v for v in (pi_version_of(p) for p in pi_candidates(env)) if v]
    return MachineFacts(os=os_name(), pi_versions=list(dict.fromkeys(versions)),
                        tmux=shutil.which("tmux", path=env.get("PATH")) is not None, home=home[:4096],
                        service_version=__version__)  # fmt: skip


def quick(env: Mapping[str, str], home: str) -> MachineFacts:
    """What is known without starting a process: everything but pi's versions."""
    return MachineFacts(os=os_name(), tmux=shutil.which("tmux", path=env.get("PATH")) is not None, home=home[:4096],
                        service_version=__version__)  # fmt: skip


def own_facts(home: str) -> MachineFacts:
    """The hypivisor's own machine, without starting any process (the hypivisor starts fast)."""
    return MachineFacts(os=os_name(), tmux=shutil.which("tmux") is not None, home=home[:4096],
                        service_version=__version__)  # fmt: skip
