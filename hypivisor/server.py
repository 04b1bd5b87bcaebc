"""Assemble and run the daemon: aiohttp app, front listeners on both ports, the sweep loop."""

from __future__ import annotations

import asyncio
import errno
import logging
import resource
import signal
import socket
import ssl
import sys
import time
from typing import Any

import structlog
from aiohttp import WSCloseCode, web

from hypivisor import access, dashboard, httphead, rpc, tokensetup
from hypivisor.config import Config
from hypivisor.front import HEAD_TIMEOUT, FrontContext, limiter_for
from hypivisor.service import Service
from hypivisor.tls import TLSConfigError
from hypivisor.tls import server_context as tls_context
from pi_socket import __version__, oplog

log = structlog.get_logger(part="server")  # lazy: bound after oplog.configure


CLOSE_GRACE = 0.5  # seconds a stopping hypivisor waits for the peers' close replies and running handlers


class StartupError(Exception):
    """A problem the user fixes (port in use, bad address): one line, exit code 2."""


def build_app(service: Service, origins: set[str]) -> web.Application:
    app = web.Application(client_max_size=1024 * 1024)
    app[rpc.SERVICE] = service
    app[rpc.ORIGINS] = origins
    app[rpc.SOCKETS] = set()

    async def healthz(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "version": __version__, "nodes": len(service.registry)})

    async def agent_on_reused_connection(request: web.Request) -> web.Response:
        # The front routes /ws/agent/* on a connection's first request only.
        return web.json_response(
            {"error": {"code": -32600, "message": "open /ws/agent/<id> on a new connection"}}, status=400
        )

    app.on_response_prepare.append(_one_request_per_connection)
    app.router.add_get("/ws", rpc.registry_ws)
    app.router.add_get("/healthz", healthz)
    app.router.add_route("*", "/ws/agent/{tail:.*}", agent_on_reused_connection)
    app.router.add_get("/{tail:.*}", dashboard.make_handler(service.config.dashboard_dir))
    return app


async def _one_request_per_connection(request: web.Request, response: web.StreamResponse) -> None:
    """Every plain HTTP response closes its connection, so every request head is a connection's first and
    passes the front's checks (16 KB, head timeout, bare CR/LF/NUL); a WebSocket upgrade keeps its socket."""
    if response.status != 101:
        response.force_close()
        response.headers["Connection"] = "close"


# aiohttp parses the heads the front already checked; its own limits must never refuse one the front accepted
# (its 400 would log the request line). Its keep-alive timer is a backstop: the front closes after each response.
AIOHTTP_HANDLER_ARGS: dict[str, Any] = {
    "keepalive_timeout": HEAD_TIMEOUT,
    "max_line_size": httphead.MAX_HEAD,
    "max_field_size": httphead.MAX_HEAD,
    "max_headers": 2 * httphead.MAX_HEADERS,
}


class _LibraryLogToOplog(logging.Handler):
    """Library log records (aiohttp, asyncio) go to the JSON log, never to stderr, and never with their text
    beyond the message: aiohttp's exception for a bad request quotes the request line, which may hold a token
    (cut anywhere, so no scrubbing can find it). The exception's type is kept."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            fields: dict[str, object] = {"logger": record.name}
            if record.exc_info and record.exc_info[0] is not None:
                fields["error"] = record.exc_info[0].__name__
            level = "warning" if record.levelno < logging.ERROR else "error"
            getattr(log, level)(record.getMessage()[:300], **fields)
        except Exception:  # noqa: BLE001, S110 - logging never raises
            pass


def route_library_logging() -> None:
    root = logging.getLogger()
    root.handlers[:] = [_LibraryLogToOplog()]
    root.setLevel(logging.WARNING)


def raise_fd_limit() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit; the soft limit in force (0 if unknown or unlimited)."""
    try:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if hard != resource.RLIM_INFINITY and soft < hard:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        return 0 if soft == resource.RLIM_INFINITY else int(soft)
    except (OSError, ValueError):
        return 0


def allowed_origins(config: Config) -> set[str]:
    names = {socket.gethostname(), socket.getfqdn()}
    if config.host not in ("0.0.0.0", "::", ""):
        names.add(f"[{config.host}]" if ":" in config.host else config.host)
    ports = {config.port, config.dashboard_port}
    return access.default_origins(names, ports) | set(config.allowed_origins)


async def sweep_loop(service: Service) -> None:
    """Every TTL/2: expire offline nodes and ghosts."""
    interval = service.config.node_ttl / 2
    grace_until = time.time() + 3 * service.config.node_ttl  # bridges re-register within this after a restart
    forgot = False
    while True:
        await asyncio.sleep(interval)
        try:
            now = time.time()
            service.publish(service.registry.sweep(now))
            if not forgot and now >= grace_until:
                forgot = True
                service.forget_absent(now)  # inbox items of agents that never came back end
        except Exception as exc:  # noqa: BLE001 - the sweep must keep running
            oplog.log_boundary_error("hypivisor.sweep", exc)


async def listen(ctx: FrontContext, host: str, port: int, tls: ssl.SSLContext | None = None) -> asyncio.Server:
    loop = asyncio.get_running_loop()
    try:
        extra: dict[str, Any] = {"ssl": tls, "ssl_handshake_timeout": HEAD_TIMEOUT} if tls is not None else {}
        return await loop.create_server(ctx.protocol, host, port, backlog=1024, reuse_address=True, **extra)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise StartupError(f"port {port} on {host} is already in use (is another hypivisor running?)") from None
        raise StartupError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None


def dashboard_tls(config: Config) -> ssl.SSLContext | None:
    """The dashboard port's TLS context (``--tls-cert``/``--tls-key``), or None for plain http."""
    if config.tls_cert is None and config.tls_key is None:
        return None
    if config.tls_cert is None or config.tls_key is None:
        raise StartupError("--tls-cert and --tls-key go together: give both or neither")
    if not config.dashboard_port or config.dashboard_port == config.port:
        raise StartupError(
            "--tls-cert needs a dashboard port of its own (--dashboard-port): the registry port stays plain"
        )
    try:
        return tls_context(config.tls_cert, config.tls_key)
    except TLSConfigError as exc:
        raise StartupError(str(exc)) from None


def startup_line(config: Config) -> str:
    shown = "localhost" if config.host in ("0.0.0.0", "::", "") else config.host
    parts = [f"hypivisor {__version__} listening: registry ws://{shown}:{config.port}/ws"]
    if config.dashboard_port:
        built = (config.dashboard_dir / "index.html").is_file()
        scheme = "https" if config.tls_cert else "http"
        parts.append(f"dashboard {scheme}://{shown}:{config.dashboard_port}/" + ("" if built else " (Pi-DE not built)"))
    if shown != config.host:
        parts.append("on all interfaces")
    parts.append("token required" if config.token else "NO TOKEN")
    return ", ".join(parts)


async def serve(config: Config, ready: asyncio.Event | None = None) -> None:
    """Run until SIGINT/SIGTERM. Raises StartupError for problems the user must fix."""
    route_library_logging()
    tls = dashboard_tls(config)
    service = Service(config)
    origins = allowed_origins(config)
    app = build_app(service, origins)
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=CLOSE_GRACE,
                           **AIOHTTP_HANDLER_ARGS)  # fmt: skip
    await runner.setup()
    limiter = limiter_for(config.max_connections, config.max_connections_per_peer, raise_fd_limit())
    if limiter.total < config.max_connections:
        print(f"hypivisor: at most {limiter.total} connections (the file descriptor limit is too low for "
              f"{config.max_connections})", file=sys.stderr, flush=True)  # fmt: skip
    ctx = FrontContext(service, origins, runner.server, limiter)  # type: ignore[arg-type]
    servers: list[asyncio.Server] = []
    try:
        if config.nats_urls:  # cluster mode (specs/cluster.md); without --nats NATS is never imported
            await _join_cluster(service, config)  # before listening: ready means in the cluster
        servers.append(await listen(ctx, config.host, config.port))
        if config.dashboard_port and config.dashboard_port != config.port:  # same port: one listener serves both
            servers.append(await listen(ctx, config.host, config.dashboard_port, tls))
        if not config.token:
            print("hypivisor: WARNING: HYPI_TOKEN is not set; anyone who can reach these ports can drive your agents",
                  file=sys.stderr, flush=True)  # fmt: skip
            log.warning("no HYPI_TOKEN set: WebSocket endpoints are unauthenticated")
        if not service.spawn_allowed():
            print("hypivisor: spawn_agent is disabled (non-loopback address without HYPI_TOKEN)",
                  file=sys.stderr, flush=True)  # fmt: skip
        print(startup_line(config), flush=True)
        for line in tokensetup.lines(config, sys.stdout.isatty()):  # the token file, and the link carrying it
            print(line, flush=True)
        log.info(
            "started", port=config.port, dashboard_port=config.dashboard_port, host=config.host, ttl=config.node_ttl
        )
        await _run_until_signal(service, ready)
    finally:
        for srv in servers:
            srv.close()
        await close_connections(service, ctx, app[rpc.SOCKETS])
        await runner.cleanup()
        if service.cluster is not None:
            if getattr(service.cluster, "inbox", None) is not None:
                await service.cluster.inbox.close()
            await service.cluster.close()


async def _join_cluster(service: Service, config: Config) -> None:
    import os

    from hypivisor.cluster.inbox import start_inbox
    from hypivisor.cluster.link import ClusterError, start_link

    try:
        service.cluster = await start_link(service, config, os.environ)
    except ClusterError as exc:
        raise StartupError(str(exc)) from None
    try:  # the site's inbox and push (specs/cluster.md §6)
        service.cluster.inbox = await start_inbox(service.cluster, dict(os.environ))
    except Exception as exc:  # noqa: BLE001 - one clear line, never a traceback
        raise StartupError(f"cluster mode: the inbox could not start: {type(exc).__name__}: {exc}"[:500]) from None
    print(f"hypivisor: cluster mode: {service.cluster.hv_id} on site {service.cluster.site} "
          f"({len(config.nats_urls)} NATS server(s))", flush=True)  # fmt: skip


async def close_connections(service: Service, ctx: FrontContext, sockets: set[web.WebSocketResponse]) -> None:
    """Close every connection at once, so the process exits within about ``CLOSE_GRACE`` seconds.

    The dashboards are dropped from the fan-out first: the bridges' sockets closing now is the hypivisor
    going away, not the agents, so no dashboard is told its agents went offline (they stay reachable on
    their own ports). Each ``/ws`` socket gets close code 1001 (going away) and at most ``CLOSE_GRACE``
    for the peer's reply; proxied agent links are byte splices (no frame boundary is known), so their
    sockets are closed as they are."""
    service.hub.dashboards.clear()
    for task in list(ctx.tasks):
        task.cancel()
    for proto in list(ctx.spliced):
        if proto.transport is not None:
            proto.transport.close()
    closing = [asyncio.ensure_future(ws.close(code=WSCloseCode.GOING_AWAY, message=b"hypivisor stopping"))
               for ws in list(sockets)]  # fmt: skip
    if closing:
        _, late = await asyncio.wait(closing, timeout=CLOSE_GRACE)
        for closer in late:
            closer.cancel()


async def _run_until_signal(service: Service, ready: asyncio.Event | None) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    sweeper = loop.create_task(sweep_loop(service))
    indexer = service.sessions.start()  # the session index, kept current in the background
    if ready is not None:
        ready.set()
    try:
        await stop.wait()
    finally:
        sweeper.cancel()
        indexer.cancel()
        service.sessions.close()
        log.info("stopping")
