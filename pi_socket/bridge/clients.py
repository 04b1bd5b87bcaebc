"""Agent-link clients: one bounded outbound queue and one sender task each (invariant 4).

A broadcast serialises an event once and appends the same string to every
queue, so all clients see the same frames in the same order. ``enqueue``
never blocks: a client whose queue exceeds its frame or byte budget is closed
with 1008 and a reason, and the others never wait for it.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
from typing import Any

import structlog
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from pi_socket import oplog

from . import faults

SLOW_CLOSE_CODE = 1008
INTERNAL_CLOSE_CODE = 1011
log = structlog.get_logger()  # lazy proxy: resolves the config set up in __main__
_ids = itertools.count(1)


class Client:
    """One connection's outbound side."""

    def __init__(self, ws: ServerConnection, max_frames: int, max_bytes: int) -> None:
        self.ws = ws
        self.id = next(_ids)
        self.max_frames = max_frames
        self.max_bytes = max_bytes
        self._queue: collections.deque[str] = collections.deque()
        self._bytes = 0
        self._wakeup = asyncio.Event()
        self.closed = False
        self.task: asyncio.Task[None] | None = None

    def enqueue(self, frame: str) -> bool:
        """Queue one serialised frame; over budget → close the client (returns False)."""
        if self.closed:
            return False
        if len(self._queue) >= self.max_frames or self._bytes + len(frame) > self.max_bytes:
            self.drop(f"client too slow: more than {len(self._queue)} frames / {self._bytes} bytes queued")
            return False
        self._queue.append(frame)
        self._bytes += len(frame)
        self._wakeup.set()
        return True

    def drop(self, reason: str, code: int = SLOW_CLOSE_CODE) -> None:
        """Close (1008 by default) without waiting: the slow peer must not stall the caller."""
        if self.closed:
            return
        self.closed = True
        self._queue.clear()
        self._wakeup.set()
        log.warning(
            "closing slow client" if code == SLOW_CLOSE_CODE else "closing client",
            client=self.id,
            reason=reason,
            remote=_remote(self.ws),
        )
        asyncio.get_running_loop().create_task(self._close(code, reason[:120]))

    async def _close(self, code: int, reason: str) -> None:
        try:
            await asyncio.wait_for(self.ws.close(code, reason), 3.0)
        except (TimeoutError, ConnectionClosed, OSError):
            self.ws.transport.abort()
        except Exception as exc:  # noqa: BLE001 - outer boundary of a fire-and-forget task
            oplog.log_boundary_error("client.close", exc)

    async def run_sender(self) -> None:
        """Send queued frames in order until the client closes."""
        try:
            faults.maybe_fail("client.send")
            while not self.closed:
                if not self._queue:
                    self._wakeup.clear()
                    await self._wakeup.wait()
                    continue
                frame = self._queue.popleft()
                self._bytes -= len(frame)
                await self.ws.send(frame)
        except ConnectionClosed:
            pass
        except Exception as exc:  # noqa: BLE001 - outer boundary: one client's failure stays its own
            oplog.log_boundary_error("client.send", exc, client=self.id)
            self.drop("internal error while sending", INTERNAL_CLOSE_CODE)
        finally:
            self.closed = True


class ClientSet:
    """All connected clients; broadcasts go to every open one."""

    def __init__(self) -> None:
        self.clients: dict[int, Client] = {}

    def add(self, client: Client) -> None:
        self.clients[client.id] = client

    def remove(self, client: Client) -> None:
        self.clients.pop(client.id, None)

    def broadcast(self, frame: str) -> None:
        """Same string to everyone, in call order."""
        for client in list(self.clients.values()):
            client.enqueue(frame)

    def __len__(self) -> int:
        return len(self.clients)


def _remote(ws: ServerConnection) -> Any:
    try:
        return ws.remote_address[0]
    except (TypeError, IndexError, AttributeError):
        return None
