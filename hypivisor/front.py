"""The listening protocol on both ports: read the request head, then splice or hand off.

Every accepted connection starts here. The head (≤ 16 KB) is buffered and
parsed by ``httphead``:

* ``/ws/agent/<id>``: Origin and token are checked, the node is looked up,
  and the socket becomes a byte splice to the agent (``splice.py``). Errors
  are plain HTTP responses with a JSON body, sent before any upgrade.
* anything else (``/ws``, ``/healthz``, the dashboard): the transport is
  handed to aiohttp's low-level request handler with ``set_protocol`` and the
  buffered bytes are replayed, so aiohttp sees an ordinary new connection.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import structlog

from hypivisor import auth, httphead, splice
from hypivisor.service import Service
from pi_socket import oplog

log = structlog.get_logger(part="proxy")
HEAD_TIMEOUT = 10.0  # seconds a client may take to send its request head (slowloris)  # lazy: bound after oplog.configure


class FrontProtocol(asyncio.Protocol):
    """Per connection until routed; afterwards aiohttp or the splice owns the transport."""

    __slots__ = ("ctx", "transport", "buf", "routed", "timer")

    def __init__(self, ctx: FrontContext):
        self.ctx = ctx
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.routed = False
        self.timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.timer = asyncio.get_running_loop().call_later(HEAD_TIMEOUT, self._head_timeout)

    def _head_timeout(self) -> None:
        if not self.routed and self.transport is not None:
            self._reply(408, -32600, f"no complete request head within {HEAD_TIMEOUT:g} s")

    def data_received(self, data: bytes) -> None:
        if self.routed:  # bytes that arrive while the splice is being opened
            self.buf += data
            return
        self.buf += data
        end = httphead.find_head_end(self.buf)
        if end < 0:
            if len(self.buf) > httphead.MAX_HEAD:
                self._reply(431, -32600, f"request head larger than {httphead.MAX_HEAD} bytes")
            return
        self.routed = True
        self._stop_timer()
        try:
            head = httphead.parse_head(bytes(self.buf[:end]))
        except httphead.HeadError as exc:
            self._reply(400, -32600, f"bad request: {exc}")
            return
        node_id = httphead.agent_node_id(head.path)
        if node_id is None:
            self._hand_to_aiohttp()
        else:
            self._proxy(head, node_id, bytes(self.buf[end:]))

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_timer()
        self.buf = bytearray()

    def _stop_timer(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _reply(self, status: int, code: int, message: str) -> None:
        assert self.transport is not None
        self.routed = True
        self._stop_timer()
        self.transport.write(httphead.error_response(status, code, message))
        self.transport.close()

    def _hand_to_aiohttp(self) -> None:
        transport = self.transport
        assert transport is not None
        handler = self.ctx.aiohttp_factory()
        transport.set_protocol(handler)
        handler.connection_made(transport)
        data, self.buf = bytes(self.buf), bytearray()
        handler.data_received(data)

    def _proxy(self, head: httphead.RequestHead, node_id: str, rest: bytes) -> None:
        """Check everything that needs no I/O, then open the agent connection in a task."""
        ctx = self.ctx
        cfg = ctx.service.config
        peer = self.transport.get_extra_info("peername") if self.transport else None
        decision = auth.check(head.get, head.query_param("token"), cfg.token, ctx.origins)
        if decision.allowed:
            decision = auth.remote_without_token(
                cfg.token, str(peer[0]) if peer else None, cfg.allow_unauthenticated_remote
            )
        if not decision.allowed:
            log.warning("proxy rejected", status=decision.status, remote=str(peer[0]) if peer else None)
            self._reply(decision.status, 1001 if decision.status == 401 else 1002, decision.message)
            return
        if not head.is_websocket or head.method != "GET":
            self._reply(400, -32600, "/ws/agent/<id> only accepts a WebSocket upgrade (GET with Upgrade: websocket)")
            return
        if not node_id:
            self._reply(400, -32602, "missing node id: use /ws/agent/<id>")
            return
        entry = ctx.service.registry.get(node_id)
        if entry is None:
            self._reply(404, 1006, f"unknown agent {node_id!r}; it may have been removed")
            return
        if entry.node.status != "active":
            self._reply(410, 1012, f"agent {node_id!r} is offline")
            return
        assert self.transport is not None
        self.transport.pause_reading()
        first = httphead.rewrite_for_agent(head, entry.host, entry.node.port, cfg.token) + rest
        self.buf = bytearray()
        task = asyncio.get_running_loop().create_task(self._open(node_id, entry.host, entry.node.port, first))
        ctx.tasks.add(task)
        task.add_done_callback(ctx.tasks.discard)

    async def _open(self, node_id: str, host: str, port: int, first: bytes) -> None:
        transport = self.transport
        assert transport is not None
        try:
            await splice.open_splice(transport, host, port, first + bytes(self.buf))
        except (OSError, asyncio.TimeoutError) as exc:
            reason = "timed out" if isinstance(exc, asyncio.TimeoutError) else (exc.strerror or str(exc))
            log.warning("agent unreachable", node_id=node_id, host=host, port=port, error=reason)
            if not transport.is_closing():
                self._reply(502, 1012, f"agent {node_id!r} at {host}:{port} is unreachable: {reason}")
        except Exception as exc:  # noqa: BLE001 - outer boundary of one proxied connection
            oplog.log_boundary_error("hypivisor.proxy", exc, node_id=node_id)
            transport.abort()


class FrontContext:
    """What every front connection shares: the service, allowed origins, aiohttp's protocol factory."""

    def __init__(self, service: Service, origins: set[str], aiohttp_factory: Callable[[], Any]):
        self.service = service
        self.origins = origins
        self.aiohttp_factory = aiohttp_factory
        self.tasks: set[asyncio.Task[None]] = set()

    def protocol(self) -> FrontProtocol:
        return FrontProtocol(self)
