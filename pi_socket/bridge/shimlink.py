"""The link with the shim inside pi: JSON lines both ways (specs/protocol.md §4), over stdio (a bridge child
of pi) or over one connection to the machine service's socket (``pi_socket.machine.agents``).

On stdio, stdout carries protocol lines and nothing else (the bridge moves fd 1 away
from everything but this writer at start-up); the input is read line by line with
no practical size limit (a history answer can be megabytes), and a line too
long or not JSON is logged and skipped, never fatal. Each line's kind and
fields are modelled in ``pi_socket.shimwire``: ``res`` lines are validated here,
the other kinds by the bridge that receives them; a line whose envelope is
wrong is dropped, and the first of each kind is logged for hardening.
"""

from __future__ import annotations

import asyncio
import itertools
import os
from collections.abc import Callable
from typing import Any

import orjson
import structlog

from pi_socket.shimwire import BridgeLine, ReqLine, ResLine, ShimLineError, dump_line, parse_shim_line

MAX_LINE = 512 * 1024 * 1024
DEFAULT_TIMEOUT_S = 10.0

log = structlog.get_logger()  # lazy proxy: resolves the config set up in __main__


class ShimError(Exception):
    """The shim answered ``ok: false`` or did not answer in time; ``str()`` is the reason."""


class ShimLink:
    """Reads shim lines into ``on_line``; ``request`` sends a ``req`` and awaits its ``res``."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter | None) -> None:
        self._reader = reader
        self._writer = writer
        self._ids = itertools.count(1)
        self._waiting: dict[str, asyncio.Future[Any]] = {}
        self._bad_kinds: set[str] = set()
        self.closed = False

    @classmethod
    async def from_stdio(cls, out_fd: int) -> ShimLink:
        """Wrap stdin and a dup of the original stdout as asyncio pipes."""
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=MAX_LINE)
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(0, "rb", buffering=0))
        transport, protocol = await loop.connect_write_pipe(
            asyncio.streams.FlowControlMixin, os.fdopen(out_fd, "wb", buffering=0)
        )
        writer = asyncio.StreamWriter(transport, protocol, None, loop)
        return cls(reader, writer)

    async def send(self, line: BridgeLine) -> None:
        """Write one line and wait for the pipe; a broken pipe (shim gone) marks the link closed instead of raising."""
        self.send_nowait(line)
        if self.closed or self._writer is None:
            return
        try:
            await self._writer.drain()
        except (ConnectionError, OSError, RuntimeError):
            self.closed = True

    def send_nowait(self, line: BridgeLine) -> None:
        """Write one line now, in order with every other line (no drain: for short control lines)."""
        if self.closed or self._writer is None:
            return
        try:
            self._writer.write(orjson.dumps(dump_line(line)) + b"\n")
        except (ConnectionError, OSError, RuntimeError):
            self.closed = True

    async def request(self, op: str, timeout: float = DEFAULT_TIMEOUT_S, **fields: Any) -> Any:
        """Send ``{t:"req", id, op, ...}`` and return ``res.data``; raises ShimError."""
        req_id = f"b{next(self._ids)}"
        line = ReqLine(id=req_id, op=op, **fields)  # type: ignore[arg-type]  # a bad op or field raises here, unsent
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiting[req_id] = future
        try:
            await self.send(line)
            if self.closed:
                raise ShimError("shim is not connected")
            return await asyncio.wait_for(future, timeout)
        except TimeoutError:
            raise ShimError(f"shim did not answer {op} within {timeout:g} s") from None
        finally:
            self._waiting.pop(req_id, None)

    def bad_line(self, exc: ShimLineError) -> None:
        """A line with a wrong envelope is dropped; the first one of each kind is logged as a warning naming
        the boundary (``stdin.line``), the rest silently: a shim repeating a mistake must not flood the log.
        Not a hardening entry: odd input from the shim is handled, not an unanticipated error."""
        if exc.kind in self._bad_kinds:
            return
        self._bad_kinds.add(exc.kind)
        log.warning("shim line dropped", boundary="stdin.line", line_type=exc.kind, error=str(exc)[:500])

    def _resolve(self, raw: dict[str, Any]) -> None:
        try:
            line = parse_shim_line(raw)
        except ShimLineError as exc:
            self.bad_line(exc)
            return
        if not isinstance(line, ResLine):  # parse_shim_line was handed a res line
            return
        future = self._waiting.get(line.id)
        if future is None or future.done():
            return
        if line.ok:
            future.set_result(line.data)
        else:
            future.set_exception(ShimError(str(line.error or "shim refused the request")))

    async def run(self, on_line: Callable[[dict[str, Any]], None]) -> None:
        """Read until EOF; ``res`` lines resolve requests, every other object goes to ``on_line``.

        ``on_line`` is synchronous on purpose: events are applied in arrival order without
        interleaving, and anything that must await (e.g. asking the shim for history) is a
        task of its own, since awaiting here would block the very loop that reads its answer."""
        while True:
            raw = await self._read_line()
            if raw is None:
                break
            if not raw.strip():
                continue
            try:
                line = orjson.loads(raw)
            except orjson.JSONDecodeError:
                log.warning("shim line is not JSON; skipped", size=len(raw))
                continue
            if not isinstance(line, dict):
                continue
            if line.get("t") == "res":
                self._resolve(line)
            else:
                on_line(line)
        self.closed = True
        for future in self._waiting.values():
            if not future.done():
                future.set_exception(ShimError("shim closed stdin"))

    async def _read_line(self) -> bytes | None:
        """One line without its newline; None at EOF. An over-long line is drained and skipped."""
        while True:
            try:
                return (await self._reader.readuntil(b"\n"))[:-1]
            except asyncio.IncompleteReadError as exc:
                return exc.partial or None
            except (ConnectionError, OSError):  # a socket link (machine service) reset by the shim: its end
                return None
            except asyncio.LimitOverrunError as exc:
                log.warning("shim line exceeds limit; skipped", limit=MAX_LINE)
                await self._reader.readexactly(exc.consumed)
                await self._skip_to_newline()

    async def _skip_to_newline(self) -> None:
        while True:
            try:
                await self._reader.readuntil(b"\n")
                return
            except asyncio.LimitOverrunError as exc:
                await self._reader.readexactly(exc.consumed)
