"""``spawn_agent`` glue: start pi (tmux or a template), then wait until it registers.

The pure parts (names, environment, argv) are in ``spawn_cmd.py`` and the path
rules in ``paths.py``; this module only runs processes and waits. A spawn is
matched to the node that registers for it by the pane's process tree (the
registering pid is the pane process or one of its descendants) or, failing
that, by cwd plus "registered after we started", and each node satisfies at
most one spawn.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import tempfile
from dataclasses import dataclass, field

from pi_socket.protocol import NodeInfo
from hypivisor import spawn_cmd

CAPTURE_LINES = 60
MAX_OUTPUT_CHARS = 4000


class SpawnError(Exception):
    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(eq=False)
class Pending:
    cwd: str
    started_at: float
    pane_pid: int | None = None
    future: asyncio.Future[NodeInfo] = field(default_factory=lambda: asyncio.get_running_loop().create_future())


def ancestors(pid: int, limit: int = 64) -> list[int]:
    """pid and its parents, read from /proc (empty where /proc is unavailable)."""
    chain: list[int] = []
    for _ in range(limit):
        if pid <= 1:
            break
        chain.append(pid)
        try:
            with open(f"/proc/{pid}/stat", "rb") as fh:
                stat = fh.read()
            pid = int(stat[stat.rfind(b")") + 2 :].split()[1])
        except (OSError, ValueError, IndexError):
            break
    return chain


def matches(pending: Pending, node: NodeInfo, registered_at: float, node_pids: list[int]) -> bool:
    """Pure predicate: does this newly registered node belong to this spawn?"""
    if pending.pane_pid is not None and pending.pane_pid in node_pids:
        return True
    return os.path.realpath(node.cwd) == pending.cwd and registered_at >= pending.started_at


class Spawner:
    """Starts agents and resolves their futures when :meth:`node_registered` sees them."""

    def __init__(self, template: str | None, timeout: float):
        self.template = template
        self.timeout = timeout
        self.pending: list[Pending] = []
        self._reapers: set[asyncio.Task[int]] = set()

    def node_registered(self, node: NodeInfo, registered_at: float) -> None:
        pids = ancestors(node.pid) if node.pid else []
        open_spawns = [p for p in self.pending if not p.future.done()]
        # A process-tree match beats a cwd match: two spawns into one folder must not swap nodes.
        by_pid = [p for p in open_spawns if p.pane_pid is not None and p.pane_pid in pids]
        by_cwd = [p for p in open_spawns if matches(p, node, registered_at, pids)]
        for p in by_pid or by_cwd[:1]:
            p.future.set_result(node)
            return

    async def spawn(self, cwd: str, env: dict[str, str], now: float) -> tuple[NodeInfo, str | None]:
        """Start pi in ``cwd`` and wait for it to register; returns (node, tmux session or None)."""
        session = spawn_cmd.session_name(os.path.basename(cwd), secrets.token_hex(3))
        pending = Pending(cwd=os.path.realpath(cwd), started_at=now)
        self.pending.append(pending)
        try:
            if self.template:
                return await self._spawn_template(pending, session, env)
            return await self._spawn_tmux(pending, session, env)
        finally:
            self.pending.remove(pending)

    async def _spawn_tmux(self, pending: Pending, session: str, env: dict[str, str]) -> tuple[NodeInfo, str]:
        tmux = shutil.which("tmux", path=env.get("PATH"))
        if tmux is None:
            raise SpawnError(1009, "tmux is not installed (or not in PATH); install it or set HYPI_SPAWN_COMMAND")
        if shutil.which("pi", path=env.get("PATH")) is None:
            raise SpawnError(1009, "pi is not installed (or not in PATH): npm install -g @earendil-works/pi-coding-agent")
        argv = spawn_cmd.tmux_argv(session, pending.cwd, env)
        rc, out = await _run([tmux, *argv[1:]])
        if rc != 0:
            raise SpawnError(1009, f"tmux new-session failed: {out.strip()[:500]}")
        rc, out = await _run([tmux, "display-message", "-p", "-t", session, "#{pane_pid}"])
        pending.pane_pid = int(out.strip()) if rc == 0 and out.strip().isdigit() else None
        try:
            node = await asyncio.wait_for(asyncio.shield(pending.future), self.timeout)
        except asyncio.TimeoutError:
            screen = await self._tmux_output(tmux, session)
            raise SpawnError(1010, self._timeout_message(f"tmux session {session}", screen)) from None
        await _run([tmux, "set-option", "-t", session, "remain-on-exit", "off"])
        return node, session

    async def _tmux_output(self, tmux: str, session: str) -> str:
        """What pi printed; a pane that already died is cleaned up after reading it."""
        _, screen = await _run([tmux, "capture-pane", "-p", "-J", "-t", session, "-S", f"-{CAPTURE_LINES}"])
        rc, dead = await _run([tmux, "display-message", "-p", "-t", session, "#{pane_dead}"])
        if rc == 0 and dead.strip() == "1":
            await _run([tmux, "kill-session", "-t", session])
        return screen

    async def _spawn_template(self, pending: Pending, session: str, env: dict[str, str]) -> tuple[NodeInfo, str | None]:
        argv = spawn_cmd.template_argv(self.template or "", pending.cwd, session)
        with tempfile.TemporaryFile() as out:
            proc = await asyncio.create_subprocess_exec(
                *argv, cwd=pending.cwd, env=env, stdin=asyncio.subprocess.DEVNULL,
                stdout=out, stderr=out, start_new_session=True,
            )  # fmt: skip
            pending.pane_pid = proc.pid
            reaper = asyncio.get_running_loop().create_task(proc.wait())  # no zombies, even much later
            self._reapers.add(reaper)
            reaper.add_done_callback(self._reapers.discard)
            try:
                node = await asyncio.wait_for(asyncio.shield(pending.future), self.timeout)
            except asyncio.TimeoutError:
                out.seek(0)
                text = out.read()[-MAX_OUTPUT_CHARS:].decode("utf-8", "replace")
                raise SpawnError(1010, self._timeout_message("HYPI_SPAWN_COMMAND", text)) from None
        uses_session = "session" in spawn_cmd.template_fields(self.template or "")
        return node, session if uses_session else None

    def _timeout_message(self, where: str, output: str) -> str:
        lines = [ln.rstrip() for ln in output.strip("\n").splitlines()]
        text = "\n".join(ln for ln in lines if ln)[-MAX_OUTPUT_CHARS:]
        return (
            f"the agent did not register within {self.timeout:g} s ({where}); "
            f"is the pi_socket extension installed? pi printed:\n{text or '(nothing)'}"
        )


async def _run(argv: list[str], timeout: float = 10.0) -> tuple[int, str]:
    """Run a short command, stdout+stderr together.

    Output goes to a temporary file, not a pipe: the first ``tmux`` call forks
    the tmux server, which inherits the descriptors and would hold a pipe
    open forever.
    """
    with tempfile.TemporaryFile() as out:
        proc = await asyncio.create_subprocess_exec(*argv, stdin=asyncio.subprocess.DEVNULL, stdout=out, stderr=out)
        try:
            rc = await asyncio.wait_for(proc.wait(), timeout)
        except asyncio.TimeoutError:
            proc.kill()
            await proc.wait()
            return 124, f"{argv[0]} did not finish within {timeout:g} s"
        out.seek(0)
        return rc, out.read().decode("utf-8", "replace")
