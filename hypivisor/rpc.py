"""The ``/ws`` registry endpoint (aiohttp): auth, framing, concurrency, lifecycle.

Each request runs in its own task so a slow ``list_directories`` or a
``spawn_agent`` waiting 30 s never delays ``list_nodes`` on the same socket.
Backpressure instead of errors: with ``MAX_INFLIGHT`` requests running, or
the connection's outbox full of unread responses, the handler stops reading
that socket until there is room again. All outgoing frames go through the
connection's :class:`Outbox`; only pushed events can overflow it (and
disconnect a too-slow dashboard). aiohttp's
WebSocket heartbeat pings every ``heartbeat_interval`` and drops a peer that
stops answering, so a socket closed without a close frame marks its node
offline within one interval.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from typing import Any

import orjson
import structlog
from aiohttp import WSMsgType, web

from hypivisor import access
from hypivisor.service import RpcFailure, Service
from pi_socket import oplog
from pi_socket.errors import HypiError
from pi_socket.protocol import MAX_ID_LEN, ErrorCode
from pi_socket.ratelimit import TokenBucket

SERVICE = web.AppKey("service", Service)
ORIGINS = web.AppKey("origins", set)
SOCKETS = web.AppKey("sockets", set)  # the open /ws sockets, closed with 1001 when the hypivisor stops
MAX_INFLIGHT = 64
MAX_FRAME = 1024 * 1024
_conn_ids = itertools.count(1)

log = structlog.get_logger(part="ws")  # lazy: bound after oplog.configure


def error_frame(rpc_id: Any, error: HypiError) -> bytes:
    return orjson.dumps({"id": rpc_id, "error": error.to_wire()})


def parse_request(data: str | bytes) -> tuple[Any, str, Any]:
    """(id, method, params) or RpcFailure carrying the id to answer with (None when unknown)."""
    try:
        obj = orjson.loads(data)
    except orjson.JSONDecodeError:
        raise RpcFailure(ErrorCode.PARSE_ERROR, "frame is not valid JSON") from None
    if not isinstance(obj, dict):
        raise RpcFailure(ErrorCode.INVALID_REQUEST, "request must be a JSON object {id, method, params}")
    rpc_id = obj.get("id")
    if not (rpc_id is None or isinstance(rpc_id, int) and not isinstance(rpc_id, bool) or isinstance(rpc_id, str)):
        raise RpcFailure(ErrorCode.INVALID_REQUEST, "id must be a string, an integer or null")
    if isinstance(rpc_id, str) and len(rpc_id) > MAX_ID_LEN:
        raise RpcFailure(ErrorCode.INVALID_REQUEST, f"id longer than {MAX_ID_LEN} characters")
    method, params = obj.get("method"), obj.get("params")
    extra = set(obj) - {"id", "method", "params", "jsonrpc"}
    if not isinstance(method, str) or not method or extra:
        exc = RpcFailure(ErrorCode.INVALID_REQUEST, "request must be {id, method, params} with a string method")
        exc.rpc_id = rpc_id  # type: ignore[attr-defined]
        raise exc
    if params is not None and not isinstance(params, dict):
        exc = RpcFailure(ErrorCode.INVALID_PARAMS, "params must be an object")
        exc.rpc_id = rpc_id  # type: ignore[attr-defined]
        raise exc
    return rpc_id, method, params


# A bridge or machine service says so in its upgrade (``X-Hypi-Role: agent`` / ``machine``): it never reads the
# roster, so it gets no ``init`` and no roster events. A reconnect storm after a hypivisor's loss then costs no
# roster copy per connection (10,000 nodes are ~7 MB), and its ``register`` is read at once. Anything else (or
# nothing) is a dashboard, as before; the header grants nothing.
ROLE_HEADER = "X-Hypi-Role"
NOT_DASHBOARDS = frozenset({"agent", "machine"})
# A dashboard that connects to ``/ws?roster=chunks`` gets the nodes past ``init``'s first MiB as ``nodes_joined``
# frames of up to 1 MiB each, not one ``node_joined`` frame per node (a 10,000-node roster: ~7 frames, not ~8,600),
# and each run of ``node_joined``/``node_updated`` events fanned out together the same way (``Hub.fan_out``).
# Opt-in, so a client that knows only ``node_joined`` is served as before; a hypivisor that predates it ignores the
# query, and such a client still gets ``node_joined`` frames.
ROSTER_QUERY = "roster"
ROSTER_CHUNKS = "chunks"


class Connection:
    """One ``/ws`` socket: a dashboard until it registers a node."""

    def __init__(self, service: Service, ws: web.WebSocketResponse, request: web.Request):
        self.service = service
        self.ws = ws
        self.key = f"c{next(_conn_ids)}"
        self.peer = request.remote or "127.0.0.1"
        self.outbox = service.hub.outbox(
            ws,
            request.transport,
            service.config.dashboard_queue,
            name=f"{self.key}@{self.peer}",
            max_bytes=service.config.dashboard_queue_bytes,
        )
        self.tasks: set[asyncio.Task[None]] = set()
        service.senders[self.key] = self.outbox.send  # search streams its results to this connection
        service.machines.attach(self.key, self.outbox.send)  # how machine requests reach a machine service
        self._slot = asyncio.Event()
        rate = service.config.rate_limit
        self.bucket = TokenBucket(rate, rate * 10, time.monotonic())

    def start_as_dashboard(self, chunks: bool = False) -> None:
        """Snapshot and subscribe with no await in between, so no event can fall in a gap. ``chunks``: the client
        asked for a large roster's nodes in ``nodes_joined`` chunks (``/ws?roster=chunks``)."""
        self.outbox.send_snapshot(*self.service.init_sequence(chunks))
        self.outbox.chunks = chunks
        self.service.hub.dashboards.add(self.outbox)

    def on_frame(self, data: str | bytes) -> None:
        self.service.registry.touch(self.key, time.time())  # O(1): the registry keeps one time per connection
        limited = not self.bucket.take(time.monotonic())
        try:
            rpc_id, method, params = parse_request(data)
        except RpcFailure as exc:
            rpc_id = getattr(exc, "rpc_id", None)
            if not limited:
                self.outbox.reply(error_frame(rpc_id, exc))
                return
        if limited:  # answered, not executed; the connection stays open
            self.outbox.reply(
                error_frame(rpc_id, RpcFailure(ErrorCode.RATE_LIMITED, "rate limited: too many requests"))
            )
            return
        task = asyncio.get_running_loop().create_task(self._call(rpc_id, method, params))
        self.tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self.tasks.discard(task)
        self._slot.set()

    async def wait_for_room(self) -> None:
        """Stop reading requests while too many run or their responses are not being read.

        Always yields once, so a socket with thousands of pipelined requests
        cannot publish a burst of events faster than the dashboards' writers
        get to run (which would overflow healthy dashboards' queues).
        """
        while len(self.tasks) >= MAX_INFLIGHT and not self.outbox.closed:
            self._slot.clear()
            await self._slot.wait()
        await self.outbox.room.wait()
        await asyncio.sleep(0)

    async def _call(self, rpc_id: Any, method: str, params: Any) -> None:
        if method in ("register", "register_machine"):
            self.service.hub.dashboards.discard(self.outbox)  # bridges and machine services get no roster pushes
        try:
            result = await self.service.dispatch(method, params, self.key, self.peer)
            frame = orjson.dumps({"id": rpc_id, "result": result})
        except RpcFailure as exc:
            frame = error_frame(rpc_id, exc)
        except Exception as exc:  # noqa: BLE001 - outer boundary of one request
            oplog.log_boundary_error("hypivisor.rpc", exc, method=method)
            failure = RpcFailure(ErrorCode.INTERNAL_ERROR, f"internal error in {method}; see hypivisor.jsonl")
            frame = error_frame(rpc_id, failure)
        self.outbox.reply(frame)

    def closed(self) -> None:
        self.service.hub.dashboards.discard(self.outbox)
        self.outbox.close()
        for task in self.tasks:
            task.cancel()
        self.service.push.connection_closed(self.key)  # this page's presence ends with its connection
        self.service.senders.pop(self.key, None)
        self.service.publish(self.service.registry.connection_closed(self.key, time.time()))
        self.service.connection_closed(self.key)


async def registry_ws(request: web.Request) -> web.StreamResponse:
    """``GET /ws``: reject before the upgrade, then serve requests until the socket ends."""
    service = request.app[SERVICE]
    decision = access.check(request.headers.get, request.query.get("token"), service.config.token, request.app[ORIGINS])
    if not decision.allowed:
        log.warning("websocket rejected", path="/ws", status=decision.status, remote=request.remote)
        return web.json_response(
            {"error": {"code": 1001 if decision.status == 401 else 1002, "message": decision.message}},
            status=decision.status,
        )
    ws = web.WebSocketResponse(
        protocols=(access.SELECTED_PROTOCOL,),
        heartbeat=service.registry.heartbeat_interval,
        max_msg_size=MAX_FRAME,
        compress=False,  # the same serialised bytes go to every dashboard; no per-socket deflate
    )
    await ws.prepare(request)
    conn = Connection(service, ws, request)
    if request.headers.get(ROLE_HEADER, "").strip().lower() not in NOT_DASHBOARDS:
        conn.start_as_dashboard(chunks=request.query.get(ROSTER_QUERY) == ROSTER_CHUNKS)
    sockets = request.app[SOCKETS]
    sockets.add(ws)
    try:
        async for msg in ws:
            if msg.type in (WSMsgType.TEXT, WSMsgType.BINARY):
                conn.on_frame(msg.data)
                await conn.wait_for_room()
            elif msg.type == WSMsgType.ERROR:
                break
    except Exception as exc:  # noqa: BLE001 - outer boundary of one connection
        oplog.log_boundary_error("hypivisor.ws", exc)
    finally:
        sockets.discard(ws)
        conn.closed()
    return ws
