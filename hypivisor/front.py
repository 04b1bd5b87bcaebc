"""The listening protocol on both ports: read the request head, then splice or hand off.

Every accepted connection starts here. The head (≤ 16 KB) is buffered and
parsed by ``httphead``:

* ``/ws/agent/<id>``: Origin and token are checked, the node is looked up,
  and the socket becomes a byte splice to the agent (``splice.py``). Errors
  are plain HTTP responses with a JSON body, sent before any upgrade.
* ``/ws/dialback/<nonce>``: a bridge hands in the connection the hypivisor asked it to open for a waiting
  ``/ws/agent/<id>`` (``dialback.py``: token and Origin as everywhere, the nonce good once and briefly); it is
  answered 101 and becomes the agent side of that link's splice. Agents on other machines need no open port.
* cluster mode (``--nats``): ``/ws/agent/<id>`` of an agent another hypivisor owns is first dialled back here by
  its bridge (asked through the owner; the same splice as a local dial-back), else spliced through the owner's
  proxy (one extra hop); another hypivisor's hop may present the cluster token (``access.cluster_hop``).
* anything else (``/ws``, ``/healthz``, the dashboard): aiohttp's low-level
  request handler is attached to the transport and the buffered bytes are
  replayed, so aiohttp sees an ordinary new connection. This protocol stays the
  transport's protocol and forwards to it, so it learns when the socket closes.
  aiohttp answers one request per connection (``Connection: close``, set in
  ``server.py``), so every request head on the hypivisor's ports passes the
  checks here: size, head timeout, no bare CR/LF/NUL.

Every connection is first admitted by the ``ConnectionLimiter`` (total and per
address, with a reserve for addresses holding few): over it, HTTP 503 and close.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import orjson
import structlog

from hypivisor import access, dialback, httphead, splice
from hypivisor.connlimit import ConnectionLimiter, total_for_fd_limit
from hypivisor.service import Service
from pi_socket import oplog

log = structlog.get_logger(part="proxy")  # lazy: bound after oplog.configure
HEAD_TIMEOUT = 10.0  # seconds a client may take to send its request head (slowloris)


class FrontProtocol(asyncio.Protocol):
    """One per connection: counts it, reads and checks its head, routes it. Under aiohttp it stays the
    transport's protocol and forwards everything, so the count drops when the socket closes; a splice
    takes the transport over (``FrontContext.admit`` uncounts those once seen closed)."""

    __slots__ = ("buf", "ctx", "handler", "peer", "routed", "timer", "transport")

    def __init__(self, ctx: FrontContext):
        self.ctx = ctx
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.routed = False
        self.timer: asyncio.TimerHandle | None = None
        self.peer: str | None = None  # set while this connection is counted by the limiter
        self.handler: Any = None  # aiohttp's RequestHandler once the connection is handed to it

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        peer = _peer_key(transport.get_extra_info("peername"))
        refusal = self.ctx.admit(peer)
        if refusal is not None:
            self.routed = True
            self.transport.write(httphead.error_response(503, 1008, refusal, (("Retry-After", "1"),)))  # type: ignore[union-attr]
            self.transport.close()  # type: ignore[union-attr]
            return
        self.peer = peer
        self.timer = asyncio.get_running_loop().call_later(HEAD_TIMEOUT, self._head_timeout)

    def _head_timeout(self) -> None:
        if not self.routed and self.transport is not None:
            self._reply(408, -32600, f"no complete request head within {HEAD_TIMEOUT:g} s")

    def data_received(self, data: bytes) -> None:
        if self.handler is not None:
            self.handler.data_received(data)
            return
        if self.routed:  # bytes that arrive while the splice is being opened
            self.buf += data
            return
        scanned = len(self.buf)
        self.buf += data
        end = httphead.find_head_end(self.buf, scanned)
        if (end < 0 and len(self.buf) > httphead.MAX_HEAD) or end > httphead.MAX_HEAD:
            self._reply(431, -32600, f"request head larger than {httphead.MAX_HEAD} bytes")
            return
        if end < 0:
            return
        self.routed = True
        self._stop_timer()
        try:
            head = httphead.parse_head(bytes(self.buf[:end]))
        except httphead.HeadError as exc:
            self._reply(400, -32600, f"bad request: {exc}")
            return
        node_id = httphead.agent_node_id(head.path)
        nonce = dialback.nonce_of(head.path) if node_id is None else None
        if nonce is not None:
            self._dialled_back(head, nonce, bytes(self.buf[end:]))
        elif node_id is None:
            self._hand_to_aiohttp()
        else:
            self._proxy(head, node_id, bytes(self.buf[end:]))
            if self.transport is not None and not self.transport.is_closing():
                self.ctx.spliced.add(self)  # the splice takes the socket over: released when it is seen closed

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_timer()
        self.buf = bytearray()
        handler, self.handler = self.handler, None
        self.release()
        if handler is not None:
            handler.connection_lost(exc)

    def release(self) -> None:
        """Uncount this connection (once)."""
        peer, self.peer = self.peer, None
        if peer is not None:
            self.ctx.limiter.release(peer)
            self.ctx.spliced.discard(self)

    # Flow control and EOF go to aiohttp once it owns the connection.
    def pause_writing(self) -> None:
        if self.handler is not None:
            self.handler.pause_writing()

    def resume_writing(self) -> None:
        if self.handler is not None:
            self.handler.resume_writing()

    def eof_received(self) -> bool | None:
        if self.handler is not None:
            return self.handler.eof_received()
        return None

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
        self.handler = handler
        handler.connection_made(transport)
        data, self.buf = bytes(self.buf), bytearray()
        handler.data_received(data)

    def _proxy(self, head: httphead.RequestHead, node_id: str, rest: bytes) -> None:
        """Check everything that needs no I/O, then open the agent connection in a task."""
        ctx = self.ctx
        cfg = ctx.service.config
        peer = self.transport.get_extra_info("peername") if self.transport else None
        decision = access.check(head.get, head.query_param("token"), cfg.token, ctx.origins)
        if decision.allowed:
            decision = access.remote_without_token(
                cfg.token, str(peer[0]) if peer else None, cfg.allow_unauthenticated_remote
            )
        cluster = ctx.service.cluster
        hop = not decision.allowed and cluster is not None and access.cluster_hop(head.get, cluster.cluster_token)
        if hop:  # another hypivisor's hop with the cluster token: for an agent held here only (checked below)
            decision = access.ALLOWED
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
        if entry is None and hop:  # never forwarded again: the owner is the one holding the agent
            log.warning("proxy rejected", status=401, reason="cluster token for an agent not held here",
                        remote=str(peer[0]) if peer else None)  # fmt: skip
            self._reply(401, 1001, "the cluster token opens only the agents this hypivisor holds")
            return
        if entry is None and cluster is not None and cluster.remote(node_id) is not None:
            self._proxy_remote(head, node_id, rest)  # cluster mode: another hypivisor holds this agent
            return
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
        owner = entry.owner if dialback.CAPABILITY in (entry.node.capabilities or ()) else None
        task = asyncio.get_running_loop().create_task(self._open(node_id, entry.host, entry.node.port, first, owner))
        ctx.tasks.add(task)
        task.add_done_callback(ctx.tasks.discard)

    def _proxy_remote(self, head: httphead.RequestHead, node_id: str, rest: bytes) -> None:
        """Splice to the agent proxy of the hypivisor that holds the agent (found over the cluster): one extra hop,
        the owner splices on to the agent; credentials are this hypivisor's own token, as towards an agent."""
        assert self.transport is not None
        if self.ctx.service.cluster.remote(node_id).node.status != "active":
            self._reply(410, 1012, f"agent {node_id!r} is offline")
            return
        self.transport.pause_reading()
        self.buf = bytearray()
        task = asyncio.get_running_loop().create_task(self._open_remote(head, node_id, rest))
        self.ctx.tasks.add(task)
        task.add_done_callback(self.ctx.tasks.discard)

    async def _open_remote(self, head: httphead.RequestHead, node_id: str, rest: bytes) -> None:
        """A dial-back from the agent's bridge straight to this hypivisor when the owner can have one made (no extra
        hop), else a splice through the owner's agent proxy with the hop token."""
        transport = self.transport
        assert transport is not None
        cluster = self.ctx.service.cluster
        try:
            arrived = await self.ctx.dial_back_remote(node_id, cluster)
            if arrived is not None:
                remote = cluster.remote(node_id)
                port = remote.node.port if remote is not None else 80
                first = httphead.rewrite_for_agent(head, "localhost", port, self.ctx.service.config.token)
                self._join_dialled_back(arrived, first + rest)
                log.debug("agent link dialled back", node_id=node_id, owner=remote.hv if remote else None)
                return
            if transport.is_closing():
                return
            host, port = await cluster.link_target(node_id)
            first = httphead.rewrite_for_hypivisor(head, host, port, node_id, cluster.hop_token)
            if not transport.is_closing():
                await splice.open_splice(transport, host, port, first + rest + bytes(self.buf))
                log.debug("agent link through the owner", node_id=node_id, owner=f"{host}:{port}")
        except Exception as exc:  # noqa: BLE001 - outer boundary of one proxied connection: answered, never raised
            log.warning("remote agent unreachable", node_id=node_id, error=f"{type(exc).__name__}: {exc}"[:300])
            if not transport.is_closing():
                self._reply(502, 1012, f"agent {node_id!r} on another hypivisor is unreachable: {exc}"[:400])

    def _join_dialled_back(self, arrived: tuple[Any, bytes], first: bytes) -> None:
        """Splice the client to the bridge's dial-back that arrived (with the bytes it sent early); ``first`` is the
        request rewritten for the agent and what followed it. A client that left meanwhile closes the dial-back."""
        transport = self.transport
        agent, early = arrived
        assert transport is not None and agent.transport is not None
        if transport.is_closing():
            agent.transport.close()
            return
        splice.join(transport, agent.transport, first + bytes(self.buf), early + bytes(agent.buf))
        agent.buf = bytearray()

    async def _open(self, node_id: str, host: str, port: int, first: bytes, owner: Any = None) -> None:
        """Join the client to the agent: over a dial-back when the bridge speaks it (``owner``: its registry
        connection), else, or when no dial-back arrives in time, over a direct TCP connection to its port."""
        transport = self.transport
        assert transport is not None
        try:
            if owner is not None:
                arrived = await self.ctx.dial_back(node_id, owner)
                if arrived is not None:
                    self._join_dialled_back(arrived, first)
                    log.debug("agent link dialled back", node_id=node_id)
                    return
                if transport.is_closing():
                    return
            await splice.open_splice(transport, host, port, first + bytes(self.buf))
        except (TimeoutError, OSError) as exc:
            reason = "timed out" if isinstance(exc, asyncio.TimeoutError) else (exc.strerror or str(exc))
            log.warning("agent unreachable", node_id=node_id, host=host, port=port, error=reason)
            if not transport.is_closing():
                self._reply(502, 1012, f"agent {node_id!r} at {host}:{port} is unreachable: {reason}")
        except Exception as exc:  # noqa: BLE001 - outer boundary of one proxied connection
            oplog.log_boundary_error("hypivisor.proxy", exc, node_id=node_id)
            transport.abort()

    def _dialled_back(self, head: httphead.RequestHead, nonce: str, rest: bytes) -> None:
        """A bridge's dial-back: checked like every endpoint (Origin, token), then the nonce (once, in time)."""
        ctx = self.ctx
        cfg = ctx.service.config
        peer = self.transport.get_extra_info("peername") if self.transport else None
        remote = str(peer[0]) if peer else None
        decision = access.check(head.get, head.query_param("token"), cfg.token, ctx.origins)
        if not decision.allowed:
            log.warning("dial-back rejected", status=decision.status, remote=remote)
            self._reply(decision.status, 1001 if decision.status == 401 else 1002, decision.message)
            return
        upgrade = (head.get("upgrade") or "").lower()
        if (
            head.method != "GET"
            or dialback.UPGRADE_TOKEN not in upgrade
            or "upgrade" not in (head.get("connection") or "").lower()
        ):
            self._reply(400, -32600, f"/ws/dialback/<nonce> only accepts GET with Upgrade: {dialback.UPGRADE_TOKEN}")
            return
        if not nonce:
            self._reply(400, -32602, "missing or malformed nonce: use /ws/dialback/<nonce>")
            return
        claimed = ctx.dialbacks.claim(nonce, asyncio.get_running_loop().time())
        if isinstance(claimed, dialback.Refused):
            log.warning("dial-back refused", reason=claimed.reason, node_id=claimed.node_id, remote=remote)
            self._reply(claimed.status, 1006, claimed.message)
            return
        waiter: asyncio.Future[Any] = claimed.payload
        if waiter.done():  # its link stopped waiting in this very iteration
            log.warning("dial-back refused", reason="used", node_id=claimed.node_id, remote=remote)
            self._reply(410, 1006, "dial-back nonce already used")
            return
        assert self.transport is not None
        self.transport.pause_reading()
        self.buf = bytearray()  # from here: bytes the bridge sends before the join (none, normally)
        self.transport.write(dialback.switching_response())
        ctx.spliced.add(self)  # the link's splice takes this socket over: released when it is seen closed
        waiter.set_result((self, rest))


def _peer_key(peername: Any) -> str:
    """The address a connection is counted under (IPv4-mapped IPv6 as plain IPv4)."""
    if isinstance(peername, (tuple, list)) and peername:
        host = str(peername[0])
        return host[7:] if host.startswith("::ffff:") and "." in host else host
    return "local"


class FrontContext:
    """What every front connection shares: the service, allowed origins, aiohttp's protocol factory, the limiter."""

    def __init__(
        self,
        service: Service,
        origins: set[str],
        aiohttp_factory: Callable[[], Any],
        limiter: ConnectionLimiter | None = None,
    ):
        self.service = service
        self.origins = origins
        self.aiohttp_factory = aiohttp_factory
        self.tasks: set[asyncio.Task[None]] = set()
        cfg = service.config
        self.limiter = limiter or ConnectionLimiter(cfg.max_connections, cfg.max_connections_per_peer)
        self.spliced: set[FrontProtocol] = set()  # counted connections now owned by a splice
        self.dialbacks = dialback.DialBackBook()
        self._refusal_logged_at = 0.0
        service.dial_back_failed = self.dial_back_failed

    def dial_back_failed(self, conn: Any, nonce: str) -> None:
        """The bridge on registry connection ``conn`` could not dial back for ``nonce`` (``dial_back_result``): its
        link stops waiting and connects directly now. Only the connection owning the nonce's node counts."""
        entry = self.dialbacks.waiting(nonce)
        if entry is None:
            return
        node = self.service.registry.get(entry.node_id)
        if node is None or node.owner != conn:
            return
        waiter = entry.payload
        if isinstance(waiter, asyncio.Future) and not waiter.done():
            waiter.set_result(None)

    async def dial_back(self, node_id: str, owner: Any) -> tuple[FrontProtocol, bytes] | None:
        """Ask the bridge on registry connection ``owner`` to dial back for one link; its connection (answered
        101, paused) and any bytes it sent after its head, or None when no dial-back arrived in time."""
        send = self.service.senders.get(owner)
        if send is None:
            return None
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[tuple[FrontProtocol, bytes] | None] = loop.create_future()
        nonce = self.dialbacks.issue(node_id, loop.time(), waiter)
        if nonce is None:
            log.warning("too many dial-backs pending; connecting directly", node_id=node_id)
            return None
        try:
            ttl = self.dialbacks.ttl
            if not send(orjson.dumps({"event": "dial_back", "nonce": nonce, "node_id": node_id, "expires_in": ttl})):
                return None
            async with asyncio.timeout(ttl):
                arrived = await waiter
            if arrived is None:
                log.info("dial-back failed at the bridge; connecting directly", node_id=node_id)
            return arrived
        except TimeoutError:
            log.warning("no dial-back in time; connecting directly", node_id=node_id, waited_s=self.dialbacks.ttl)
            return None
        finally:
            self.dialbacks.cancel(nonce, loop.time())  # no-op once claimed; a late dial-back is refused

    async def dial_back_remote(self, node_id: str, cluster: Any) -> tuple[FrontProtocol, bytes] | None:
        """Cluster mode: have the bridge of an agent another hypivisor owns dial back here (the nonce is made here,
        the owner forwards it with this hypivisor's URL). As :meth:`dial_back`; None as soon as the owner says the
        bridge cannot (or did not), so the link goes through the owner without waiting out the nonce."""
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[tuple[FrontProtocol, bytes]] = loop.create_future()
        nonce = self.dialbacks.issue(node_id, loop.time(), waiter)
        if nonce is None:
            log.warning("too many dial-backs pending; splicing through the owner", node_id=node_id)
            return None
        ttl = self.dialbacks.ttl
        ask = loop.create_task(cluster.ask_dial_back(node_id, nonce, ttl))
        try:
            async with asyncio.timeout(ttl):
                await asyncio.wait((waiter, ask), return_when=asyncio.FIRST_COMPLETED)
                if not waiter.done():
                    dialled, reason = ask.result()
                    if not dialled:
                        log.debug("no dial-back from another hypivisor's agent; through the owner", node_id=node_id,
                                  reason=reason[:200])  # fmt: skip
                        return None
                    await waiter  # its 101 was written when the claim resolved it: at once
        except TimeoutError:
            log.warning("no dial-back in time; through the owner", node_id=node_id, waited_s=ttl)
        finally:
            self.dialbacks.cancel(nonce, loop.time())  # no-op once claimed; a late dial-back is refused
            if not ask.done():
                ask.cancel()
        if waiter.done() and not waiter.cancelled():
            return waiter.result()  # claimed, even if in the very instant the wait ended
        waiter.cancel()
        return None

    def protocol(self) -> FrontProtocol:
        return FrontProtocol(self)

    def admit(self, peer: str) -> str | None:
        """Count a new connection; the reason it is refused otherwise (spliced sockets seen closed are uncounted first)."""
        refusal = self.limiter.admit(peer)
        if refusal is None:
            return None
        for proto in [p for p in self.spliced if p.transport is None or p.transport.is_closing()]:
            proto.release()
        refusal = self.limiter.admit(peer)
        if refusal is None:
            return None
        now = asyncio.get_running_loop().time()
        if now - self._refusal_logged_at > 10.0:  # at most one line per 10 s under a flood
            self._refusal_logged_at = now
            log.warning("connection refused", remote=peer, reason=refusal.reason, open=self.limiter.open)
        return refusal.reason


def limiter_for(max_connections: int, per_peer: int, fd_soft_limit: int) -> ConnectionLimiter:
    """The limiter the process can honour with ``fd_soft_limit`` descriptors."""
    return ConnectionLimiter(total_for_fd_limit(max_connections, fd_soft_limit), per_peer)
