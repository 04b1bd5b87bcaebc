"""The agent WebSocket server: handshake checks, one connection's lifetime, frame dispatch.

Thin on purpose: auth is ``port_auth``, parsing and encoding are ``frames``,
queueing is ``clients``, behaviour per message is ``handlers``. This module
binds a port, vets handshakes (401/403 before the upgrade), adopts the
connections this bridge dialled back to the hypivisor (``adopt``: served by the
same protocol as an accepted client, so auth, limits and deflate are the same), sends
``init_state`` first and runs each incoming frame as its own guarded task.
It knows nothing of the bridge around it: four callbacks (``ready``, ``join``,
``leave``, ``dispatch``) are its whole view of the rest.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from http import HTTPStatus
from typing import Any, cast

import structlog
from pydantic import BaseModel
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response
from websockets.typing import Subprotocol

from pi_socket import oplog
from pi_socket.protocol import ErrorCode, ErrorMsg
from pi_socket.ratelimit import TokenBucket

from . import faults, port_auth
from .clients import Client
from .config import BridgeConfig
from .deflate import BoundedDeflateFactory
from .frames import frame, parse_client_frame

MAX_INFLIGHT_PER_CLIENT = 64
READY_WAIT_S = 5.0
log = structlog.get_logger()  # lazy proxy: resolves the config set up in __main__


class AgentServer:
    """Owns the listening socket; hands each connection's frames to ``dispatch``.

    ``ready(timeout)`` is awaited (bounded) before a connection joins, so its ``init_state`` is complete;
    ``join(client)`` queues ``init_state`` and adds the client to the broadcast in one synchronous step;
    ``leave(client)`` removes it; both return how many clients remain. ``dispatch(client, msg)`` runs one
    validated client message."""

    def __init__(
        self,
        config: BridgeConfig,
        *,
        ready: Callable[[float], Awaitable[None]],
        join: Callable[[Client], int],
        leave: Callable[[Client], int],
        dispatch: Callable[[Client, BaseModel], Awaitable[None]],
    ) -> None:
        self.config = config
        self._ready = ready
        self._join = join
        self._leave = leave
        self._dispatch = dispatch
        self.server: Server | None = None
        self.port = 0
        self._factory: Callable[[], Any] | None = None  # the listening server's protocol factory (for adopt)

    async def start(self) -> int:
        """Bind the first free candidate port; returns it. Raises OSError if none is free."""
        last: OSError | None = None
        ping_interval, ping_timeout, close_timeout = self.config.keepalive()
        for port in self.config.candidate_ports():
            try:
                self.server = await serve(
                    self._connection,
                    self.config.host,
                    port,
                    process_request=self._process_request,
                    select_subprotocol=lambda _conn, offered: cast(
                        Subprotocol | None, port_auth.select_protocol(list(offered))
                    ),
                    max_size=self.config.max_frame_bytes,
                    max_queue=64,
                    compression=None,  # permessage-deflate, with inflation bounded:
                    extensions=[BoundedDeflateFactory(self.config.inflate_floor_bytes, self.config.inflate_ratio)],
                    ping_interval=ping_interval,
                    ping_timeout=ping_timeout,
                    close_timeout=close_timeout,
                    logger=logging.getLogger("pi_socket.bridge.ws"),
                )
            except OSError as exc:
                last = exc
                continue
            self.port = self.server.sockets[0].getsockname()[1]
            self._factory = protocol_factory(self.server)
            return self.port
        raise OSError(f"no free port in {self.config.candidate_ports()[:1]}..+100: {last}")

    @property
    def can_adopt(self) -> bool:
        """Whether :meth:`adopt` can serve a dialled-back connection (the ``dial_back`` capability)."""
        return self._factory is not None

    def adopt(self, transport: asyncio.Transport, early: bytes = b"") -> None:
        """Serve a connection this bridge opened (a dial-back to the hypivisor) as if a client had connected to the
        agent port: the listening server's own protocol takes the transport, ``early`` is what was already read."""
        if self._factory is None or self.server is None or not self.server.is_serving():
            transport.close()
            return
        conn = self._factory()
        transport.set_protocol(conn)
        conn.connection_made(transport)
        if early:
            conn.data_received(early)

    async def close(self) -> None:
        """Stop accepting and close every client with 1001 (bounded by close_timeout)."""
        if self.server is not None:
            self.server.close(close_connections=True)
            try:
                await asyncio.wait_for(self.server.wait_closed(), 3.0)
            except TimeoutError:
                pass

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        """Token and Origin before the upgrade (specs/protocol.md §1); odd input is a 4xx, never a 500."""
        try:
            verdict = port_auth.check_request(
                token=self.config.token,
                allowed_origins=self.config.allowed_origins,
                authorization=request.headers.get_all("Authorization"),
                protocols=port_auth.split_protocols(request.headers.get_all("Sec-WebSocket-Protocol")),
                path=request.path,
                origin=request.headers.get_all("Origin"),
            )
        except Exception as exc:  # noqa: BLE001 - outer boundary of one handshake
            oplog.log_boundary_error("client.handshake", exc, remote=_peer(connection))
            verdict = port_auth.Decision(HTTPStatus.BAD_REQUEST, "bad handshake")
        if verdict.allowed:
            return None
        log.info("handshake refused", status=int(verdict.status), reason=verdict.message, remote=_peer(connection))
        return connection.respond(HTTPStatus(verdict.status), verdict.message + "\n")

    async def _connection(self, ws: ServerConnection) -> None:
        """One client: init_state first, then each frame as a guarded task, until it closes."""
        client: Client | None = None
        tasks: set[asyncio.Task[None]] = set()
        rate = self.config.rate_limit
        bucket = TokenBucket(rate, rate * 10, asyncio.get_running_loop().time())
        try:
            faults.maybe_fail("client.connect")
            await self._ready(READY_WAIT_S)
            client = Client(ws, self.config.client_queue_frames, self.config.client_queue_bytes)
            count = self._join(client)  # init_state queued and client registered with no await between
            client.task = asyncio.create_task(client.run_sender())
            log.info("client connected", client=client.id, remote=_peer(ws), clients=count)
            async for raw in ws:
                if client.closed:
                    break
                if not bucket.take(asyncio.get_running_loop().time()):
                    self._rate_limited(client, raw)
                    continue
                self._spawn(client, raw, tasks)
        except ConnectionClosed:
            pass
        except Exception as exc:  # noqa: BLE001 - outer boundary: one connection never takes the bridge down
            oplog.log_boundary_error("client.connect", exc)
            await ws.close(1011, "internal error")
        finally:
            if client is not None:
                count = self._leave(client)
                client.closed = True
                if client.task is not None:
                    client.task.cancel()
                log.info("client disconnected", client=client.id, code=ws.close_code, clients=count)

    @staticmethod
    def _rate_limited(client: Client, raw: Any) -> None:
        """Over ``PI_SOCKET_RATE_LIMIT``: answered 1008 (naming the prompt id when there is one), not run."""
        msg = parse_client_frame(raw)
        msg_id = getattr(msg, "id", None)
        client.enqueue(
            frame(
                ErrorMsg(
                    id=msg_id if isinstance(msg_id, str) else None,
                    code=ErrorCode.RATE_LIMITED,
                    message="rate limited: too many frames",
                )
            )
        )

    def _spawn(self, client: Client, raw: Any, tasks: set[asyncio.Task[None]]) -> None:
        """Run one frame concurrently (a slow list_files never delays an abort), bounded per client."""
        if len(tasks) >= MAX_INFLIGHT_PER_CLIENT:
            client.enqueue(frame(ErrorMsg(code=ErrorCode.RATE_LIMITED, message="too many requests in flight")))
            return
        task = asyncio.create_task(self._guarded(client, raw))
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    async def _guarded(self, client: Client, raw: Any) -> None:
        """Boundary ``client.message``: any unexpected error answers 2000 and is logged for hardening."""
        try:
            faults.maybe_fail("client.message")
            msg = parse_client_frame(raw)
            if isinstance(msg, ErrorMsg):
                client.enqueue(frame(msg))
                return
            await self._dispatch(client, msg)
        except Exception as exc:  # noqa: BLE001 - outer boundary
            oplog.log_boundary_error("client.message", exc, client=client.id)
            client.enqueue(frame(ErrorMsg(code=ErrorCode.INTERNAL_ERROR, message="internal error in the bridge")))


def protocol_factory(server: Server) -> Callable[[], Any] | None:
    """The protocol factory ``serve`` gave its listening socket, or None when this websockets does not show it.

    websockets' ``serve`` builds it in a closure (its ``create_server`` calls ``loop.create_server(protocol_factory,
    ...)``); taking that very factory means an adopted connection gets the same handshake checks, limits, deflate
    and handler as an accepted one. Pinned by ``pi_socket/tests/test_dialback_units.py``; without it the bridge
    does not announce ``dial_back`` and the hypivisor connects to its port as before."""
    fn = getattr(server, "create_server", None)
    try:
        cells = dict(zip(fn.__code__.co_freevars, fn.__closure__ or (), strict=True))  # type: ignore[union-attr]
        factory = cells["protocol_factory"].cell_contents
    except (AttributeError, KeyError, TypeError, ValueError):
        return None
    return factory if callable(factory) else None


def _peer(ws: ServerConnection) -> Any:
    try:
        return ws.remote_address[0]
    except (TypeError, IndexError, AttributeError):
        return None
