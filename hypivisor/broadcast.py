"""Fan-out of roster events to dashboards with a bounded queue each.

Each event is serialised and framed once (orjson, one unmasked WebSocket text
frame) and the same bytes are queued for every dashboard. Every ``/ws``
connection writes through its own :class:`Outbox` (one bounded queue), so a
dashboard that stops reading only fills its own queue; when that overflows it
is disconnected with close code 1008 and a reason, and nobody else waits for
it (invariant 4).

Cost per event and dashboard is an append: queued frames are written by one
callback per event-loop iteration (:class:`Flusher`), all of a connection's
waiting frames in a single ``transport.write``. No task wakes up per frame.
A connection's writer task exists only while its transport is paused (the
kernel and the 64 KiB transport buffer are full): it waits for the drain and
writes what queued up meanwhile. Frames are only ever written whole, so they
never interleave with the pings, pongs and close frames aiohttp writes on the
same transport.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import struct
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import orjson
import structlog
from aiohttp import web
from pydantic import BaseModel

from pi_socket import oplog
from pi_socket.protocol import (
    MachineUpdatedEvent,
    NodeJoinedEvent,
    NodeOfflineEvent,
    NodeRemovedEvent,
    NodeUpdatedEvent,
)

DEFAULT_QUEUE = 1024
DEFAULT_QUEUE_BYTES = 8 * 1024 * 1024
CLOSE_TOO_SLOW = 1008
_CLOSE_GRACE = 2.0
_LEN16 = struct.Struct("!BBH")
_LEN64 = struct.Struct("!BBQ")
# The events that change what an ``init`` holds (Hub.roster_log keeps their frames)
ROSTER_EVENTS = (NodeJoinedEvent, NodeUpdatedEvent, NodeOfflineEvent, NodeRemovedEvent)
# The events a client applies as an upsert of their node: a run of them fanned out together goes to a dashboard that
# asked for the roster in chunks (``/ws?roster=chunks``) as ``nodes_joined`` frames of up to ``CHUNK_BYTES`` of nodes
CHUNK_BYTES = 1024 * 1024
_UPSERTS = (NodeJoinedEvent, NodeUpdatedEvent)

log = structlog.get_logger(part="broadcast")  # lazy: bound after oplog.configure


def encode(frame: BaseModel | dict[str, Any]) -> bytes:
    """One JSON text frame's bytes (models are dumped in JSON mode first)."""
    if isinstance(frame, BaseModel):
        frame = frame.model_dump(mode="json")
    return orjson.dumps(frame)


def chunk_nodes(nodes: list[bytes], start: int, limit: int = CHUNK_BYTES) -> Iterator[list[bytes]]:
    """``nodes[start:]`` (each a node's JSON) in runs of up to ``limit`` bytes of JSON (at least one node each), in
    order."""
    chunk: list[bytes] = []
    size = 0
    for raw in itertools.islice(nodes, start, None):
        if chunk and size + len(raw) > limit:
            yield chunk
            chunk, size = [], 0
        chunk.append(raw)
        size += len(raw) + 1
    if chunk:
        yield chunk


def _upsert_json(event: BaseModel) -> bytes | None:
    """The node's JSON of a ``node_joined``/``node_updated`` event that holds nothing else (None for any other)."""
    if type(event) in _UPSERTS and not event.model_extra:
        return orjson.dumps(event.node.model_dump(mode="json"))  # type: ignore[attr-defined]
    return None


def node_payload(event: str, node: bytes) -> bytes:
    """What :func:`encode` makes of a ``node_joined``/``node_updated`` event (``event``), from its node's JSON (made
    once for both the event's frame and a ``nodes_joined`` chunk)."""
    return b'{"event":"%s","node":%s}' % (event.encode(), node)


def nodes_joined_payload(chunk: list[bytes]) -> bytes:
    """A ``nodes_joined`` event of these nodes' JSON."""
    return b'{"event":"nodes_joined","nodes":[' + b",".join(chunk) + b"]}"


def _latest_machines(events: list[BaseModel]) -> list[BaseModel]:
    """``events`` without each ``machine_updated`` that a later one of the same machine in the list replaces (each
    carries the whole record: agents registering together change their machine's count once per agent)."""
    seen: set[str] = set()
    keep: list[BaseModel] = []
    for event in reversed(events):
        if type(event) is MachineUpdatedEvent:
            name = event.machine.name
            if name in seen:
                continue
            seen.add(name)
        keep.append(event)
    keep.reverse()
    return keep


def _chunked(frames: list[bytes], nodes: list[bytes | None]) -> list[bytes]:
    """``frames`` for a client of ``nodes_joined``: each run of two or more upserts (``nodes[i]`` not None) becomes
    ``nodes_joined`` frames of up to ``CHUNK_BYTES`` of nodes; the rest pass as they are, in order."""
    out: list[bytes] = []
    i, n = 0, len(frames)
    while i < n:
        j = i
        while j < n and nodes[j] is not None:
            j += 1
        if j - i >= 2:
            run = nodes[i:j]
            out.extend(
                text_frame(nodes_joined_payload(chunk))
                for chunk in chunk_nodes(run, 0, CHUNK_BYTES)  # type: ignore[arg-type]
            )
            i = j
        else:
            out.append(frames[i])
            i += 1
    return out


def text_frame(payload: bytes) -> bytes:
    """``payload`` as one final, unmasked (server-to-client), uncompressed WebSocket text frame."""
    n = len(payload)
    if n < 126:
        return bytes((0x81, n)) + payload
    if n < 65536:
        return _LEN16.pack(0x81, 126, n) + payload
    return _LEN64.pack(0x81, 127, n) + payload


class Flusher:
    """Writes every outbox that queued something, once per event-loop iteration."""

    def __init__(self) -> None:
        self._dirty: list[Outbox] = []

    def schedule(self, box: Outbox) -> None:
        if not self._dirty:
            asyncio.get_running_loop().call_soon(self._flush)
        self._dirty.append(box)

    def _flush(self) -> None:
        dirty, self._dirty = self._dirty, []
        for box in dirty:
            box.flush()


class Outbox:
    """A connection's only writer: frames go out in order, at most ``limit`` frames and ``max_bytes`` bytes waiting.

    Pushed events past either bound disconnect the peer (too slow); responses never do, but they clear
    ``room``, and the reader stops reading requests until the peer has read them, so a client that pipelines
    requests and never reads holds at most about ``max_bytes`` here (plus what the kernel buffers)."""

    def __init__(
        self,
        ws: web.WebSocketResponse,
        transport: Any,
        limit: int = DEFAULT_QUEUE,
        name: str = "",
        schedule: Callable[[Outbox], None] | None = None,
        max_bytes: int = DEFAULT_QUEUE_BYTES,
    ):
        self.ws = ws
        self.transport = transport
        self.limit = limit
        self._base_limit = limit  # ``limit`` is raised while a large snapshot is on its way (send_snapshot)
        self.max_bytes = max_bytes
        self.name = name
        self.chunks = False  # a dashboard that asked for the roster in chunks (``/ws?roster=chunks``)
        self.closed = False
        self.queued_bytes = 0
        self._queue: collections.deque[bytes] = collections.deque()  # framed, not yet written
        self._scheduled = False  # a flush is due this loop iteration
        self._draining = False  # the transport is paused; ``_task`` writes once it drains
        self._task: asyncio.Task[None] | None = None
        self._schedule = schedule or (lambda box: asyncio.get_running_loop().call_soon(box.flush))
        self.room = asyncio.Event()  # set while the queue is below its limit
        self.room.set()

    # -- queueing -----------------------------------------------------------
    def send(self, data: bytes) -> bool:
        """Queue one pushed frame; False (and a disconnect) when the peer is too slow."""
        return self.send_framed(text_frame(data))

    def send_framed(self, framed: bytes) -> bool:
        """:meth:`send` for bytes already framed with :func:`text_frame` (shared by all dashboards)."""
        if self.closed:
            return False
        if self._full():
            if not self._draining:  # merely not flushed yet in this iteration: write now
                self.flush()
            if self._full():
                why = f"too slow: {len(self._queue)} events queued ({self.queued_bytes} bytes)"
                asyncio.get_running_loop().create_task(self.kick(why))
                return False
        self._push(framed)
        return True

    def send_snapshot(self, frames: list[bytes], count: int | None = None) -> None:
        """Queue the first frames of a connection (the roster) whatever their size: they are shared, already
        framed bytes, and a large roster must reach a new client in full (its reader waits for ``room``).

        While a client reads a large roster (10,000 nodes are ~8,600 frames, ~7 MB) the roster may change as much
        again (a hypivisor lost: its agents re-register elsewhere), so until that roster has left the transport
        once, events may queue up to twice its frame count instead of ``limit``; the byte bound stays. ``count``:
        the roster's size in frames as sent one node per frame (a chunked roster, ``/ws?roster=chunks``, holds
        fewer frames, but as many changes may follow it), ``len(frames)`` when not given."""
        self.limit = max(self._base_limit, 2 * (len(frames) if count is None else count))
        for framed in frames:
            self._push(framed)

    def _full(self) -> bool:
        return len(self._queue) >= self.limit or self.queued_bytes >= self.max_bytes

    def reply(self, data: bytes) -> bool:
        """Queue a response. Never kicks: the reader stops reading requests instead (see ``has_room``)."""
        if self.closed:
            return False
        self._push(text_frame(data))
        return True

    def _push(self, framed: bytes) -> None:
        self._queue.append(framed)
        self.queued_bytes += len(framed)
        if self._full():
            self.room.clear()
        if not (self._scheduled or self._draining):
            self._scheduled = True
            self._schedule(self)

    def has_room(self) -> bool:
        return not self._full()

    # -- writing ------------------------------------------------------------
    def flush(self) -> None:
        """Write everything queued in one go, unless the transport is paused (then the drain task does)."""
        self._scheduled = False
        if self.closed or self._draining or not self._queue:
            return
        transport = self.transport
        if transport is None or transport.is_closing() or self.ws.closed:
            self._queue.clear()  # the socket is going away; the reader side cleans up
            self.queued_bytes = 0
            self.room.set()
            return
        queue = self._queue
        data = queue[0] if len(queue) == 1 else b"".join(queue)
        queue.clear()
        self.queued_bytes = 0
        self.room.set()
        try:
            transport.write(data)
        except (ConnectionError, RuntimeError):
            return
        if self._paused():
            self._draining = True
            if self._task is None or self._task.done():
                self._task = asyncio.get_running_loop().create_task(self._drain())
        else:
            self.limit = self._base_limit  # everything queued so far (the snapshot too) went out

    def _paused(self) -> bool:
        protocol = self.transport.get_protocol()
        paused = getattr(protocol, "writing_paused", None)  # aiohttp's BaseProtocol
        if paused is not None:
            return bool(paused)
        return self.transport.get_write_buffer_size() > self.transport.get_write_buffer_limits()[1]

    async def _wait_writable(self) -> None:
        protocol = self.transport.get_protocol()
        drain = getattr(protocol, "_drain_helper", None)  # what aiohttp's own writer awaits
        while self._paused() and not self.closed:
            if drain is not None:
                await drain()
            else:
                await asyncio.sleep(0.01)

    async def _drain(self) -> None:
        try:
            while self._draining and not self.closed:
                await self._wait_writable()
                self._draining = False
                self.flush()  # sets _draining again if the transport paused once more
        except (ConnectionError, RuntimeError, asyncio.CancelledError):
            pass  # the socket went away; the reader side notices and cleans up
        except Exception as exc:  # noqa: BLE001 - outer boundary of this task
            oplog.log_boundary_error("hypivisor.outbox", exc)

    # -- closing ------------------------------------------------------------
    def _stop(self) -> None:
        self.closed = True
        self._queue.clear()
        self.queued_bytes = 0
        self.room.set()
        if self._task is not None:
            self._task.cancel()

    async def kick(self, reason: str) -> None:
        """Disconnect a peer that fell behind: try a 1008 close frame briefly, then drop the socket."""
        if self.closed:
            return
        self._stop()
        log.warning("disconnecting slow websocket client", client=self.name, reason=reason)
        try:
            await asyncio.wait_for(self.ws.close(code=CLOSE_TOO_SLOW, message=reason.encode()), _CLOSE_GRACE)
        except (TimeoutError, ConnectionError, RuntimeError):
            pass
        if self.transport is not None and not self.transport.is_closing():
            self.transport.abort()

    def close(self) -> None:
        self._stop()


class Hub:
    """The set of dashboards; ``publish`` fans one serialised event out to all of them."""

    def __init__(self) -> None:
        self.dashboards: set[Outbox] = set()
        self.flusher = Flusher()
        # Called with every published batch before the fan-out (Web Push reads the inbox events here);
        # a tap that raises is logged, never stops the fan-out.
        self.taps: list[Callable[[list[BaseModel]], None]] = []
        # Called before every fan-out: cluster mode sends the roster events it holds for a moment first, so the
        # dashboards get every event in the order it happened (hypivisor/cluster/link.py)
        self.before_fan_out: Callable[[], None] | None = None
        # While a large roster's snapshot is shared (hypivisor.service.Service._roster): the roster frames fanned out
        # since it was built, replayed after it to a dashboard that connects. Only changes of nodes it holds: a join
        # of another node or a removal (the roster's membership, and ``init.total``, changed), or more than
        # ``roster_log_cap`` frames, set it to None and the next ``init`` builds a new snapshot.
        self.roster_log: list[bytes] | None = None
        self.roster_log_cap = 0
        self.roster_ids: set[str] = set()  # the nodes of the shared snapshot

    def share_roster(self, ids: set[str] | None) -> None:
        """A new roster snapshot was built: replay from now on what changes its nodes ``ids`` (None: it is not
        shared, nothing to replay), up to half of them."""
        self.roster_log = None if ids is None else []
        self.roster_ids = ids or set()
        self.roster_log_cap = len(self.roster_ids) // 2

    def outbox(
        self,
        ws: web.WebSocketResponse,
        transport: Any,
        limit: int = DEFAULT_QUEUE,
        name: str = "",
        max_bytes: int = DEFAULT_QUEUE_BYTES,
    ) -> Outbox:
        """An outbox flushed with every other one of this hub's (one callback per loop iteration)."""
        return Outbox(ws, transport, limit, name, schedule=self.flusher.schedule, max_bytes=max_bytes)

    def publish(self, events: Iterable[BaseModel]) -> None:
        events = list(events)
        self.tap(events)
        self.fan_out(events)

    def tap(self, events: list[BaseModel]) -> None:
        """The taps hear ``events`` (the fan-out may come later: :meth:`fan_out`)."""
        for tap in self.taps:
            try:
                tap(events)
            except Exception as exc:  # noqa: BLE001 - a listener's failure must not stop the fan-out
                oplog.log_boundary_error("hypivisor.publish.tap", exc)

    def fan_out(self, events: list[BaseModel]) -> None:
        """``events`` to every dashboard (the taps heard them already), but a ``machine_updated`` a later one of the
        same machine replaces. A dashboard that asked for the roster in chunks gets each run of two or more
        ``node_joined``/``node_updated`` events as ``nodes_joined`` frames (a cluster shows a fail-over's joins and a
        tick's quiet changes together: one frame, not one per agent)."""
        if not events:
            return
        if self.before_fan_out is not None:
            self.before_fan_out()
        if len(events) > 2:
            events = _latest_machines(events)
        frames: list[bytes] = []
        nodes: list[bytes | None] = []  # per frame: the upserted node's JSON, for the chunked sequence
        for event in events:
            try:
                node = _upsert_json(event)
                framed = text_frame(encode(event) if node is None else node_payload(event.event, node))  # type: ignore[attr-defined]
            except Exception as exc:  # noqa: BLE001 - one event that cannot be serialised is dropped, not fatal
                oplog.log_boundary_error("hypivisor.publish", exc)
                continue
            replay = self.roster_log
            if replay is not None and isinstance(event, ROSTER_EVENTS):
                if (
                    len(replay) < self.roster_log_cap
                    and not isinstance(event, NodeRemovedEvent)
                    and (not isinstance(event, NodeJoinedEvent) or event.node.id in self.roster_ids)
                ):
                    replay.append(framed)
                else:
                    self.roster_log = None
            frames.append(framed)
            nodes.append(node)
        chunked = _chunked(frames, nodes) if len(frames) - nodes.count(None) >= 2 else frames
        dropped: list[Outbox] = []
        for box in self.dashboards:
            for framed in chunked if box.chunks else frames:
                if not box.send_framed(framed):
                    dropped.append(box)
                    break
        for box in dropped:
            self.dashboards.discard(box)
