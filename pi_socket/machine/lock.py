"""One machine service per machine and user: an exclusive ``flock`` on a file in the user's runtime dir.

The runtime dir is ``$XDG_RUNTIME_DIR/hyper-pi`` (a per-user tmpfs on systemd systems), else
``$XDG_STATE_HOME/hyper-pi/run`` (``~/.local/state/hyper-pi/run``); it is made 0700. The lock is held for the
process's life and released by the kernel when it ends, however it ends (SIGKILL included), so a stale file never
blocks a new service. The file holds the holder's pid so a second start can say which process runs.
"""

from __future__ import annotations

import fcntl
import os
import stat
import time
from collections.abc import Mapping
from pathlib import Path

LOCK_NAME = "machine.lock"
PID_WAIT_STEPS = 25  # x 20 ms: how long a second start waits for the holder's pid to be written


def state_dir(env: Mapping[str, str]) -> Path:
    """``$XDG_STATE_HOME/hyper-pi`` (``~/.local/state/hyper-pi``): what outlives a reboot (pure)."""
    state = (env.get("XDG_STATE_HOME") or "").strip()
    base = Path(state) if state else Path(env.get("HOME") or os.path.expanduser("~")) / ".local" / "state"
    return base / "hyper-pi"


def runtime_dir(env: Mapping[str, str]) -> Path:
    """Where this user's machine service keeps its lock (pure)."""
    xdg = (env.get("XDG_RUNTIME_DIR") or "").strip()
    if xdg:
        return Path(xdg) / "hyper-pi"
    return state_dir(env) / "run"


def secret_path(env: Mapping[str, str]) -> Path:
    """The machine secret (0600): proves to the hypivisor that a restarted service is this machine's."""
    return state_dir(env) / "machine-secret"


class AlreadyRunning(Exception):
    """Another machine service holds the lock; ``pid`` is what its lock file says (None when unreadable)."""

    def __init__(self, pid: int | None, path: Path):
        super().__init__(f"a machine service already runs (pid {pid if pid else 'unknown'}; lock {path})")
        self.pid = pid
        self.path = path


class InstanceLock:
    """Held from :meth:`acquire` until the process ends (or :meth:`release`)."""

    def __init__(self, folder: Path):
        self.path = folder / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock or raise :class:`AlreadyRunning`; OSError when the folder cannot be made."""
        folder = self.path.parent
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        if stat.S_IMODE(folder.stat().st_mode) & 0o077:
            os.chmod(folder, 0o700)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            # The holder writes its pid just after taking the lock: a loser of a close race waits for it briefly.
            pid = _read_pid(fd)
            for _ in range(PID_WAIT_STEPS):
                if pid is not None:
                    break
                time.sleep(0.02)
                pid = _read_pid(fd)
            os.close(fd)
            raise AlreadyRunning(pid, self.path) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None
