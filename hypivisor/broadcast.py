"""Fan-out of roster events to dashboards with a bounded queue each.

Each event is serialised once (orjson) and the same bytes are queued for every
dashboard. Every ``/ws`` connection writes through its own :class:`Outbox`
(one writer task, one bounded queue), so a dashboard that stops reading only
fills its own queue; when that overflows it is disconnected with close code
1008 and a reason, and nobody else waits for it (invariant 4).
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Iterable
from typing import Any

import orjson
import structlog
from aiohttp import WSMsgType, web
from pydantic import BaseModel

from pi_socket import oplog

DEFAULT_QUEUE = 1024
CLOSE_TOO_SLOW = 1008
_CLOSE_GRACE = 2.0

log = structlog.get_logger(part="broadcast")  # lazy: bound after oplog.configure


def encode(frame: BaseModel | dict[str, Any]) -> bytes:
    """One JSON text frame's bytes (models are dumped in JSON mode first)."""
    if isinstance(frame, BaseModel):
        frame = frame.model_dump(mode="json")
    return orjson.dumps(frame)


class Outbox:
    """A connection's only writer: frames go out in order, at most ``limit`` waiting."""

    def __init__(self, ws: web.WebSocketResponse, transport: Any, limit: int = DEFAULT_QUEUE, name: str = ""):
        self.ws = ws
        self.transport = transport
        self.limit = limit
        self.name = name
        self.closed = False
        self._queue: collections.deque[bytes] = collections.deque()
        self._wake = asyncio.Event()
        self.room = asyncio.Event()  # set while the queue is below its limit
        self.room.set()
        self._task = asyncio.get_running_loop().create_task(self._run())

    def send(self, data: bytes) -> bool:
        """Queue one pushed frame; False (and a disconnect) when the peer is too slow."""
        if self.closed:
            return False
        if len(self._queue) >= self.limit:
            asyncio.get_running_loop().create_task(self.kick(f"too slow: {len(self._queue)} events queued"))
            return False
        return self.reply(data)

    def reply(self, data: bytes) -> bool:
        """Queue a response. Never kicks: the reader stops reading requests instead (see ``has_room``)."""
        if self.closed:
            return False
        self._queue.append(data)
        self._wake.set()
        if len(self._queue) >= self.limit:
            self.room.clear()
        return True

    def has_room(self) -> bool:
        return len(self._queue) < self.limit

    async def _run(self) -> None:
        try:
            while not self.closed:
                await self._wake.wait()
                self._wake.clear()
                while self._queue and not self.closed:
                    await self.ws.send_frame(self._queue.popleft(), WSMsgType.TEXT)
                    if len(self._queue) < self.limit:
                        self.room.set()
        except (ConnectionError, RuntimeError, asyncio.CancelledError):
            pass  # the socket went away; the reader side notices and cleans up
        except Exception as exc:  # noqa: BLE001 - outer boundary of this task
            oplog.log_boundary_error("hypivisor.outbox", exc)

    async def kick(self, reason: str) -> None:
        """Disconnect a peer that fell behind: try a 1008 close frame briefly, then drop the socket."""
        if self.closed:
            return
        self.closed = True
        self._queue.clear()
        self.room.set()
        self._task.cancel()
        log.warning("disconnecting slow websocket client", client=self.name, reason=reason)
        try:
            await asyncio.wait_for(self.ws.close(code=CLOSE_TOO_SLOW, message=reason.encode()), _CLOSE_GRACE)
        except (asyncio.TimeoutError, ConnectionError, RuntimeError):
            pass
        if self.transport is not None and not self.transport.is_closing():
            self.transport.abort()

    def close(self) -> None:
        self.closed = True
        self._queue.clear()
        self.room.set()
        self._task.cancel()


class Hub:
    """The set of dashboards; ``publish`` fans one serialised event out to all of them."""

    def __init__(self) -> None:
        self.dashboards: set[Outbox] = set()

    def publish(self, events: Iterable[BaseModel]) -> None:
        for event in events:
            data = encode(event)
            for box in list(self.dashboards):
                if not box.send(data):
                    self.dashboards.discard(box)
