"""``spawn_agent`` glue: start pi (tmux or a template), then wait until it registers.

The pure parts (names, environment, argv) are in ``spawn_cmd.py`` and the path
rules in ``paths.py``; this module only runs processes and waits.

A spawn is bound to the agent it started by a secret: each spawn puts a fresh
random ``PI_SOCKET_SPAWN_ID`` into the new pi's environment, its bridge sends it
back in ``register`` (``spawn_id``), and only that registration resolves the
spawn. Another node registering in the same folder, or claiming the pane's pid,
cannot take it. Spawns are limited (``MAX_CONCURRENT`` at once, a token bucket
over time), and a spawn that fails or times out kills what it started.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import signal
import tempfile
import time
from dataclasses import dataclass, field

from hypivisor import spawn_cmd
from pi_socket.errors import HypiError
from pi_socket.protocol import ErrorCode, NodeInfo
from pi_socket.ratelimit import TokenBucket

CAPTURE_LINES = 60
MAX_OUTPUT_CHARS = 4000
MAX_CONCURRENT = 4  # spawns waiting for their pi at once
RATE_PER_MINUTE = 20  # sustained spawns per minute (burst: the same number)


class SpawnError(HypiError):
    """A spawn refused or failed (1008 no slot, 1009 failed, 1010 timed out)."""


@dataclass(eq=False)
class Pending:
    cwd: str
    started_at: float
    spawn_id: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    pane_pid: int | None = None
    future: asyncio.Future[NodeInfo] = field(default_factory=lambda: asyncio.get_running_loop().create_future())


class Spawner:
    """Starts agents and resolves their futures when :meth:`node_registered` sees them."""

    def __init__(
        self,
        template: str | None,
        timeout: float,
        max_concurrent: int = MAX_CONCURRENT,
        rate_per_minute: float = RATE_PER_MINUTE,
    ):
        self.template = template
        self.timeout = timeout
        self.max_concurrent = max_concurrent
        self.pending: list[Pending] = []
        self.active = 0  # admitted spawns not yet finished (validating, creating, starting or waiting)
        self._bucket = TokenBucket(rate_per_minute / 60.0, rate_per_minute, time.monotonic())
        self._reapers: set[asyncio.Task[int]] = set()

    def node_registered(self, node: NodeInfo, spawn_id: str | None) -> bool:
        """Resolve the open spawn whose secret this registration presented; True when one was resolved."""
        if not spawn_id:
            return False
        presented = spawn_id.encode("utf-8", "surrogatepass")  # bytes: compare_digest refuses non-ASCII str
        for p in self.pending:
            if not p.future.done() and secrets.compare_digest(p.spawn_id.encode(), presented):
                p.future.set_result(node)
                return True
        return False

    def admit(self) -> None:
        """Take a slot before anything is created, or refuse (SpawnError 1008); :meth:`release` gives it back."""
        if self.active >= self.max_concurrent:
            raise SpawnError(
                ErrorCode.RATE_LIMITED, f"{self.active} spawns are already starting; try again when one has finished"
            )
        if not self._bucket.take(time.monotonic()):
            raise SpawnError(ErrorCode.RATE_LIMITED, "too many spawns in a short time; try again in a few seconds")
        self.active += 1

    def release(self) -> None:
        self.active = max(0, self.active - 1)

    async def spawn(
        self, cwd: str, env: dict[str, str], now: float, session_file: str | None = None, spawn_id: str | None = None
    ) -> tuple[NodeInfo, str | None]:
        """Start pi in ``cwd`` (resuming ``session_file`` if given, already validated) and wait for it to
        register; returns (node, tmux session or None).

        Call :meth:`admit` first. On failure or timeout everything this spawn started is gone. ``spawn_id``: the
        spawn's secret when another party made it (a machine service spawning for the hypivisor), else a new one."""
        session = spawn_cmd.session_name(os.path.basename(cwd), secrets.token_hex(3))
        pending = Pending(cwd=os.path.realpath(cwd), started_at=now)
        if spawn_id:
            pending.spawn_id = spawn_id
        env = {**env, spawn_cmd.SPAWN_ID_VAR: pending.spawn_id}
        self.pending.append(pending)
        try:
            if self.template:
                if session_file is not None:  # the template reads it from its environment
                    env[spawn_cmd.SESSION_FILE_VAR] = session_file
                return await self._spawn_template(pending, session, env)
            return await self._spawn_tmux(pending, session, env, session_file)
        finally:
            self.pending.remove(pending)

    async def _spawn_tmux(
        self, pending: Pending, session: str, env: dict[str, str], session_file: str | None = None
    ) -> tuple[NodeInfo, str]:
        tmux = shutil.which("tmux", path=env.get("PATH"))
        if tmux is None:
            raise SpawnError(1009, "tmux is not installed (or not in PATH); install it or set HYPI_SPAWN_COMMAND")
        if shutil.which("pi", path=env.get("PATH")) is None:
            raise SpawnError(
                1009, "pi is not installed (or not in PATH): npm install -g @earendil-works/pi-coding-agent"
            )
        argv = spawn_cmd.tmux_argv(session, pending.cwd, env, session_file=session_file)
        target = f"={session}"  # exact session name, never a prefix or pattern match
        try:
            rc, out = await _run([tmux, *argv[1:]])
            if rc != 0:
                if "duplicate session" not in out:  # the session may exist (a later command failed): kill it
                    await _run([tmux, "kill-session", "-t", target])
                raise SpawnError(1009, f"tmux new-session failed: {spawn_cmd.printable(out.strip())[:500]}")
            rc, out = await _run([tmux, "display-message", "-p", "-t", f"{target}:", "#{pane_pid}"])
            pending.pane_pid = int(out.strip()) if rc == 0 and out.strip().isdigit() else None
            try:
                node = await asyncio.wait_for(asyncio.shield(pending.future), self.timeout)
            except TimeoutError:
                screen = await self._tmux_output(tmux, target)  # also kills the session
                raise SpawnError(1010, self._timeout_message(f"tmux session {session}", screen)) from None
        except SpawnError:
            raise
        except BaseException:  # cancelled (the caller went away) or a bug: nothing this spawn started stays
            await _run([tmux, "kill-session", "-t", target])
            raise
        # registered: from now on pi's exit (a Stop, /quit) ends the tmux session. "=name:" is the session's window:
        # remain-on-exit is a window option, and a bare "=name" target names no window (the call would fail)
        await _run([tmux, "set-option", "-t", f"{target}:", "remain-on-exit", "off"])
        return node, session

    async def _tmux_output(self, tmux: str, target: str) -> str:
        """What pi printed; then the session is killed, so a failed spawn leaves no pi running."""
        _, screen = await _run([tmux, "capture-pane", "-p", "-J", "-t", f"{target}:", "-S", f"-{CAPTURE_LINES}"])
        await _run([tmux, "kill-session", "-t", target])
        return screen

    async def _spawn_template(self, pending: Pending, session: str, env: dict[str, str]) -> tuple[NodeInfo, str | None]:
        argv = spawn_cmd.template_argv(self.template or "", pending.cwd, session)
        env = {**env, spawn_cmd.SPAWN_DIR_VAR: pending.cwd}
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
            except TimeoutError:
                _kill_group(proc.pid)
                out.seek(0)
                text = out.read()[-MAX_OUTPUT_CHARS:].decode("utf-8", "replace")
                raise SpawnError(1010, self._timeout_message("HYPI_SPAWN_COMMAND", text)) from None
            except BaseException:
                _kill_group(proc.pid)
                raise
        uses_session = "session" in spawn_cmd.template_fields(self.template or "")
        return node, session if uses_session else None

    def _timeout_message(self, where: str, output: str) -> str:
        lines = [spawn_cmd.printable(ln).rstrip() for ln in output.strip("\n").splitlines()]
        text = "\n".join(ln for ln in lines if ln)[-MAX_OUTPUT_CHARS:]
        return (
            f"the agent did not register within {self.timeout:g} s ({where}); "
            f"is the pi_socket extension installed? pi printed:\n{text or '(nothing)'}"
        )


def _kill_group(pid: int) -> None:
    """Kill the process group a template spawn started (it runs in a session of its own)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


async def _run(
    argv: list[str], timeout: float = 10.0, cwd: str | None = None, env: dict[str, str] | None = None
) -> tuple[int, str]:
    """Run a short command (also git for hypivisor/worktree.py), stdout+stderr together.

    Output goes to a temporary file, not a pipe: the first ``tmux`` call forks
    the tmux server, which inherits the descriptors and would hold a pipe
    open forever.
    """
    with tempfile.TemporaryFile() as out:
        proc = await asyncio.create_subprocess_exec(
            *argv, cwd=cwd, env=env, stdin=asyncio.subprocess.DEVNULL, stdout=out, stderr=out
        )
        try:
            rc = await asyncio.wait_for(proc.wait(), timeout)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            return 124, f"{argv[0]} did not finish within {timeout:g} s"
        out.seek(0)
        return rc, out.read().decode("utf-8", "replace")
