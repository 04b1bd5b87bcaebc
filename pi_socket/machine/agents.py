"""Agents served by the machine service: one bridge per local pi, inside the service's event loop.

The shim inside pi connects to ``agents.sock`` in the service's runtime dir (the dir 0700, the socket 0600: only
this user reaches it) and writes one ``attach`` line (``pi_socket.shimwire.AttachLine``: pi's pid and cwd, and
the environment a per-pi bridge would have read), then exactly the lines it writes to a bridge child over stdio
(specs/protocol.md §4). Each connection gets its own :class:`~pi_socket.bridge.app.Bridge`, built from that
environment alone: its own agent port on loopback, its own registration with the hypivisor, its own log file (the
``pi-socket.jsonl`` its per-pi bridge would write), its own armed faults.

A fault while serving one agent stays in that agent: an error out of its bridge is logged (boundary ``agent``),
its bridge is shut down (deregistered, clients closed) and its connection closed; the shim then reconnects and a
fresh bridge rebuilds the agent's state from pi. Other agents never notice.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import os
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import structlog

from pi_socket import oplog
from pi_socket.bridge import faults
from pi_socket.bridge.__main__ import bridge_environment
from pi_socket.bridge.app import Bridge
from pi_socket.bridge.config import BridgeConfig
from pi_socket.bridge.shimlink import MAX_LINE, ShimLink
from pi_socket.shimwire import AttachLine, ShimLineError, parse_attach_line

SOCKET_NAME = "agents.sock"
ATTACH_TIMEOUT_S = 3.0  # a connection that says nothing usable this long is closed
ATTACH_MAX_BYTES = 1024 * 1024
MAX_AGENTS = 256  # live agents per service; one more is refused (its shim falls back to a bridge child)
SUN_PATH_MAX = 107  # a unix socket path longer than this cannot be bound (Linux sun_path is 108 bytes with NUL)
FIRED_MEMORY = 1000  # pis whose fired faults are remembered
CLOSE_WAIT_S = 2.0
LOG_FILES_OPEN = 64  # agents' log files kept open (most agents of a machine share one)

log = structlog.get_logger(part="agents")  # lazy: bound after oplog.configure


def socket_path(folder: Path) -> Path:
    """Where the service listens for shims (pure): ``agents.sock`` in its runtime dir."""
    return folder / SOCKET_NAME


def agent_config(attach: AttachLine, env: Mapping[str, str]) -> BridgeConfig:
    """One agent's bridge settings: from the attach line's environment (with this machine's token when the
    hypivisor is local, as a per-pi bridge reads it), and pi's cwd until the hello names it (pure but for the
    token file)."""
    return dataclasses.replace(BridgeConfig.from_env(env), cwd=attach.cwd or None)


def remaining_faults(armed: str | None, fired: set[str]) -> str:
    """The faults still to arm for a pi: each fires once per pi in one service, not again on every reconnect."""
    return ",".join(name.strip() for name in (armed or "").split(",") if name.strip() and name.strip() not in fired)


class AgentHost:
    """The unix socket and the bridges it serves."""

    def __init__(self, folder: Path) -> None:
        self.path = socket_path(folder)
        self.bridges: dict[int, Bridge] = {}
        self._ids = itertools.count(1)
        self._server: asyncio.AbstractServer | None = None
        self._files: dict[Path, oplog.RotatingJsonlFile] = {}
        self._fired: OrderedDict[str, set[str]] = OrderedDict()

    async def start(self) -> bool:
        """Listen on ``agents.sock``; False (logged) when it cannot (shims then fall back to bridge children).
        The caller holds the machine lock, so a socket file already there is a dead service's: it is replaced."""
        if len(os.fsencode(str(self.path))) > SUN_PATH_MAX:
            log.error("agent socket path too long; agents are not served here", path=str(self.path))
            return False
        try:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
            loop = asyncio.get_running_loop()
            self._server = await loop.create_unix_server(
                lambda: _ShimProtocol(asyncio.StreamReader(limit=MAX_LINE), self._connection), path=str(self.path)
            )
            os.chmod(self.path, 0o600)
        except OSError as exc:
            log.error("agent socket not served", path=str(self.path), error=f"{type(exc).__name__}: {exc}"[:300])
            return False
        log.info("serving agents", socket=str(self.path))
        return True

    async def close(self) -> None:
        """Stop accepting; every bridge deregisters and closes (bounded). pi keeps running; its shim starts anew."""
        if self._server is not None:
            self._server.close()
        bridges = list(self.bridges.values())
        for bridge in bridges:
            bridge.stop()
        deadline = asyncio.get_running_loop().time() + CLOSE_WAIT_S
        while self.bridges and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.05)
        with contextlib.suppress(FileNotFoundError, OSError):
            self.path.unlink()

    def _file(self, folder: Path) -> oplog.RotatingJsonlFile:
        """The log file of agents whose log dir is ``folder`` (shared by those agents, as per-pi bridges share it)."""
        file = self._files.pop(folder, None)
        if file is None:
            file = oplog.RotatingJsonlFile(folder / "pi-socket.jsonl")
        self._files[folder] = file  # newest last
        while len(self._files) > LOG_FILES_OPEN:  # a closed file reopens at its next line
            self._files.pop(next(iter(self._files))).close()
        return file

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """One shim's connection (its own task and context: what it sets here stays with this agent)."""
        try:
            try:
                raw = await asyncio.wait_for(reader.readuntil(b"\n"), ATTACH_TIMEOUT_S)
                if len(raw) > ATTACH_MAX_BYTES:
                    raise ShimLineError("attach", "line too long")
                attach = parse_attach_line(raw[:-1])
            except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError,
                    ShimLineError) as exc:  # fmt: skip
                log.warning("agent connection without a usable attach line; closed", error=str(exc)[:300])
                return
            if len(self.bridges) >= MAX_AGENTS:
                log.warning("too many agents on this service; connection refused", agents=len(self.bridges))
                return
            await self._serve(attach, reader, writer)
        except Exception as exc:  # noqa: BLE001 - outer boundary of one agent: nothing reaches another agent
            oplog.log_boundary_error("agent", exc)
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), 1.0)

    async def _serve(self, attach: AttachLine, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        env = bridge_environment(attach.bridge_env())
        node = env.get("PI_SOCKET_NODE_ID") or f"pid-{attach.pid}"
        log_dir = Path(env.get("PI_SOCKET_LOG_DIR") or Path(env.get("HOME") or Path.home()) / ".pi" / "logs")
        oplog.use_file(self._file(log_dir))  # from here on, this task's lines (and its tasks') are this agent's
        oplog.add_secret(env.get("HYPI_TOKEN"))
        structlog.contextvars.bind_contextvars(agent=node, component="bridge")  # its lines read as its bridge's
        fired = self._fired.get(node, set())
        armed = faults.scope(remaining_faults(env.get("PI_SOCKET_FAULT"), fired))
        before = set(armed)
        bridge = Bridge(agent_config(attach, env), ShimLink(reader, writer))
        if "agent" in armed:
            _fail_on_first_event(bridge)
        key = next(self._ids)
        self.bridges[key] = bridge
        log.info("agent attached", pid=attach.pid, cwd=attach.cwd, agents=len(self.bridges))
        try:
            await bridge.run()
            log.info("agent detached", agents=len(self.bridges) - 1)
        except Exception as exc:  # noqa: BLE001 - this agent's bridge ends here; the shim reconnects
            oplog.log_boundary_error("agent", exc, pid=attach.pid)
            with contextlib.suppress(Exception):
                await bridge.shutdown()
        finally:
            self.bridges.pop(key, None)
            self._remember_fired(node, fired | (before - armed))

    def _remember_fired(self, node: str, fired: set[str]) -> None:
        if not fired:
            return
        self._fired[node] = fired
        self._fired.move_to_end(node)
        while len(self._fired) > FIRED_MEMORY:
            self._fired.popitem(last=False)


class _ShimProtocol(asyncio.StreamReaderProtocol):
    """A shim's connection, where a reset counts as the end of input. pi exiting with lines of ours still unread
    makes the kernel reset the socket; a plain stream would then raise before handing out the lines pi wrote last
    (a run's final events, ``bye``), which it had received in full."""

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(None)


def _fail_on_first_event(bridge: Bridge) -> None:
    """Fault ``agent``: the first event line raises out of this agent's bridge (past its own line boundary)."""
    on_line = bridge.on_line

    def failing(line: dict[str, Any]) -> None:
        if line.get("t") == "event":
            faults.maybe_fail("agent")
        on_line(line)

    bridge.on_line = failing  # type: ignore[method-assign]
