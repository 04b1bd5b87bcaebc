"""What ``pi-socket doctor`` checks about this machine's service (specs/machines.md): running (the pid its lock
file names, alive), its agents socket, registered and online at the hypivisor (``list_machines`` with the token),
the token, tmux, pi's version among the supported ones, and the runtime dir's modes.

Each check is a :class:`Finding` (``ok``, ``warn`` or ``fail``, a detail and what to do). The judgements are pure
functions of what was observed (:func:`judge_service`, :func:`judge_modes`, :func:`judge_pi`, …); the observing is
a few reads, one connect to the socket and one registry request, each bounded in time. Nothing here starts, stops
or changes anything.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from .lock import LOCK_NAME, runtime_dir

Level = Literal["ok", "warn", "fail"]
SOCKET_NAME = "agents.sock"  # the machine service's local socket for shims (pi_socket/machine/agents.py)
SUPPORTED_PI = ((0, 73), (1, 5), (1, 6))  # major.minor lines tested with this release (README "Supported")
OLDEST_PI = (0, 73, 0)
TIMEOUT_S = 5.0


@dataclass(frozen=True)
class Finding:
    level: Level
    name: str
    detail: str
    fix: str = ""


# ------------------------------------------------------------------ pure judgements
def judge_pi(version: tuple[int, int, int] | None) -> Finding | None:
    """pi's version against the supported lines (None when pi is not found: the pi check says so). Pure."""
    if version is None:
        return None
    shown = ".".join(map(str, version))
    lines = ", ".join(f"{a}.{b}.x" for a, b in SUPPORTED_PI)
    if version < OLDEST_PI:
        return Finding("fail", "pi version", f"pi {shown} is older than the oldest supported ({lines})",
                       "upgrade pi: npm install -g @earendil-works/pi-coding-agent")  # fmt: skip
    if version[:2] in SUPPORTED_PI:
        return Finding("ok", "pi version", f"pi {shown} is supported ({lines})")
    return Finding("warn", "pi version", f"pi {shown} is not among the tested lines ({lines})",
                   "it may work; `make pi-latest` runs the tests on it, or install a tested pi")  # fmt: skip


def judge_service(pid: int | None, alive: bool, lock: Path) -> Finding:
    """The machine service from its lock file's pid and whether that process lives. Pure."""
    if pid is not None and alive:
        return Finding("ok", "machine service", f"running (pid {pid}; lock {lock})")
    why = "no lock file" if pid is None else f"pid {pid} from {lock} is not running"
    return Finding("warn", "machine service", f"not running ({why})",
                   "`pi-socket serve` starts it; `pi-socket service install` starts it at every login")  # fmt: skip


def judge_modes(folder: Path, modes: Mapping[str, int | None]) -> Finding:
    """The runtime dir must be 0700 and what is in it (lock, socket) 0600 (``modes``: name → mode, None when
    absent; the folder under ``"."``). Pure."""
    dir_mode = modes.get(".")
    if dir_mode is None:
        return Finding("ok", "runtime dir", f"{folder} not made yet (the service makes it 0700)")
    wrong = []
    if dir_mode & 0o077:
        wrong.append(f"{folder} is {dir_mode:04o}, not 0700")
    for name, mode in modes.items():
        if name != "." and mode is not None and mode & 0o077:
            wrong.append(f"{name} is {mode:04o}, not 0600")
    if wrong:
        return Finding("fail", "runtime dir", "; ".join(wrong) + " (other users could reach the agents)",
                       f"chmod 700 {folder} (and chmod 600 the files in it), or restart the service")  # fmt: skip
    return Finding("ok", "runtime dir", f"{folder} 0700, its files 0600")


def judge_registration(name: str, running: bool, reachable: bool, machines: list[dict] | None) -> Finding:
    """Whether the hypivisor lists this machine online (``machines``: its list_machines answer, None when it
    could not be asked or does not know the method). Pure."""
    if not reachable:
        return Finding("warn", "machine registered", f"cannot ask the hypivisor about {name!r} (see hypivisor)",
                       "fix the hypivisor check first")  # fmt: skip
    if machines is None:
        return Finding("warn", "machine registered", "this hypivisor does not list machines (an older version)",
                       "upgrade the hypivisor (pip install -U hyper-pi)")  # fmt: skip
    entry = next((m for m in machines if isinstance(m, dict) and m.get("name") == name), None)
    if entry is not None and entry.get("online"):
        return Finding(
            "ok", "machine registered", f"{name!r} online at the hypivisor ({entry.get('agents', 0)} agents)"
        )
    if not running:
        return Finding("warn", "machine registered", f"{name!r} is not online at the hypivisor (no service runs)",
                       "start the machine service: `pi-socket serve`")  # fmt: skip
    return Finding("fail", "machine registered", f"the service runs but {name!r} is not online at the hypivisor",
                   "check its token (HYPI_TOKEN) and HYPIVISOR_WS, then ~/.pi/logs/pi-socket-machine.jsonl")  # fmt: skip


def judge_token(token: str | None, where: str, needed: bool | None) -> Finding:
    """``needed``: the hypivisor refused without a token (True), answered without one (False), unknown (None)."""
    if token:
        return Finding("ok", "token", f"present ({where}; not shown)")
    if needed is False:
        return Finding("ok", "token", "none, and the hypivisor needs none (it accepts this machine without one)")
    return Finding("warn" if needed is None else "fail", "token", "no HYPI_TOKEN and no token file for this hypivisor",
                   "set HYPI_TOKEN to the hypivisor's token (`hypivisor url` on its machine shows it in the link)")  # fmt: skip


# ------------------------------------------------------------------ observing
def _mode(path: Path) -> int | None:
    try:
        return stat.S_IMODE(os.lstat(path).st_mode)
    except OSError:
        return None


def lock_pid(lock: Path) -> int | None:
    try:
        text = lock.read_text(encoding="ascii", errors="replace").strip()[:32]
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def pid_alive(pid: int) -> bool:
    """The process lives and (where /proc says) is a Python running pi_socket."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    cmdline = Path(f"/proc/{pid}/cmdline")
    if cmdline.exists():
        try:
            return b"pi_socket" in cmdline.read_bytes() or b"pi-socket" in cmdline.read_bytes()
        except OSError:
            return True
    return True


def socket_finding(path: Path, running: bool) -> Finding:
    if not path.exists():
        if running:
            return Finding("warn", "agents socket", f"{path} absent: this service hosts no agents (an older one?)",
                           "restart the machine service with this version")  # fmt: skip
        return Finding("ok", "agents socket", f"{path} absent (no service runs)")
    if not stat.S_ISSOCK(os.lstat(path).st_mode):
        return Finding("fail", "agents socket", f"{path} is not a socket", f"remove {path}; the service makes it")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(TIMEOUT_S)
    try:
        s.connect(str(path))
    except OSError as exc:
        level: Level = "fail" if running else "warn"
        return Finding(level, "agents socket", f"{path} does not answer ({exc.strerror or exc})",
                       "restart the machine service (`pi-socket serve`)")  # fmt: skip
    finally:
        s.close()
    return Finding("ok", "agents socket", f"{path} accepts connections")


async def list_machines(url: str, token: str | None) -> tuple[bool, bool | None, list[dict] | None]:
    """(reachable, refused for the token, machines or None): one ``list_machines`` request, bounded."""
    import websockets

    headers = {"Authorization": f"Bearer {token}"} if token else None
    try:
        async with asyncio.timeout(TIMEOUT_S):
            async with websockets.connect(url, additional_headers=headers, open_timeout=TIMEOUT_S, proxy=None) as ws:
                await ws.send(json.dumps({"id": "doctor-machines", "method": "list_machines", "params": {}}))
                while True:
                    msg = json.loads(await ws.recv())
                    if isinstance(msg, dict) and msg.get("id") == "doctor-machines":
                        result = msg.get("result")
                        machines = result.get("machines") if isinstance(result, dict) else None
                        return True, False, machines if isinstance(machines, list) else None
    except Exception as exc:  # noqa: BLE001 - any failure is the answer
        status = getattr(getattr(exc, "response", None), "status_code", None)
        return False, (status in (401, 403)) if status else None, None


def machine_findings(env: Mapping[str, str], url: str | None, token: str | None, token_where: str,
                     pi_version: tuple[int, int, int] | None) -> list[Finding]:  # fmt: skip
    """Every machine check, in the order printed. ``url`` None: registration is off (HYPIVISOR_WS=off)."""
    from .service import machine_name

    folder = runtime_dir(env)
    lock = folder / LOCK_NAME
    pid = lock_pid(lock)
    running = pid is not None and pid_alive(pid)
    found = [judge_service(pid, running, lock), socket_finding(folder / SOCKET_NAME, running)]
    found.append(judge_modes(folder, {".": _mode(folder), LOCK_NAME: _mode(lock),
                                      SOCKET_NAME: _mode(folder / SOCKET_NAME)}))  # fmt: skip
    if url is not None:
        reachable, refused, machines = asyncio.run(list_machines(url, token))
        needed = True if refused else (False if reachable and not token else None)
        found.append(judge_token(token, token_where, needed))
        found.append(judge_registration(machine_name(env), running, reachable, machines))
    tmux = shutil.which("tmux", path=env.get("PATH"))
    found.append(Finding("ok", "tmux", tmux) if tmux else Finding(
        "warn", "tmux", "not found on PATH: agents cannot be started on this machine from the dashboard",
        "install tmux (apt install tmux / brew install tmux) or set HYPI_SPAWN_COMMAND"))  # fmt: skip
    pi = judge_pi(pi_version)
    if pi is not None:
        found.append(pi)
    return found
