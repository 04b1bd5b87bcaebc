"""Assemble and run the daemon: aiohttp app, front listeners on both ports, the sweep loop."""

from __future__ import annotations

import asyncio
import errno
import signal
import socket
import sys
import time

import structlog
from aiohttp import web

from hypivisor import auth, dashboard, rpc
from hypivisor.config import Config
from hypivisor.front import FrontContext
from hypivisor.service import Service
from pi_socket import __version__, oplog

log = structlog.get_logger(part="server")  # lazy: bound after oplog.configure


class StartupError(Exception):
    """A problem the user fixes (port in use, bad address): one line, exit code 2."""


def build_app(service: Service, origins: set[str]) -> web.Application:
    app = web.Application(client_max_size=1024 * 1024)
    app[rpc.SERVICE] = service
    app[rpc.ORIGINS] = origins

    async def healthz(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "version": __version__, "nodes": len(service.registry)})

    async def agent_on_reused_connection(request: web.Request) -> web.Response:
        # The front routes /ws/agent/* on a connection's first request only.
        return web.json_response(
            {"error": {"code": -32600, "message": "open /ws/agent/<id> on a new connection"}}, status=400
        )

    app.router.add_get("/ws", rpc.registry_ws)
    app.router.add_get("/healthz", healthz)
    app.router.add_route("*", "/ws/agent/{tail:.*}", agent_on_reused_connection)
    app.router.add_get("/{tail:.*}", dashboard.make_handler(service.config.dashboard_dir))
    return app


def allowed_origins(config: Config) -> set[str]:
    names = {socket.gethostname(), socket.getfqdn()}
    if config.host not in ("0.0.0.0", "::", ""):
        names.add(f"[{config.host}]" if ":" in config.host else config.host)
    ports = {config.port, config.dashboard_port}
    return auth.default_origins(names, ports) | set(config.allowed_origins)


async def sweep_loop(service: Service) -> None:
    """Every TTL/2: expire offline nodes and ghosts."""
    interval = service.config.node_ttl / 2
    while True:
        await asyncio.sleep(interval)
        try:
            service.publish(service.registry.sweep(time.time()))
        except Exception as exc:  # noqa: BLE001 - the sweep must keep running
            oplog.log_boundary_error("hypivisor.sweep", exc)


async def listen(ctx: FrontContext, host: str, port: int) -> asyncio.Server:
    loop = asyncio.get_running_loop()
    try:
        return await loop.create_server(ctx.protocol, host, port, backlog=1024, reuse_address=True)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise StartupError(f"port {port} on {host} is already in use (is another hypivisor running?)") from None
        raise StartupError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None


def startup_line(config: Config) -> str:
    shown = "localhost" if config.host in ("0.0.0.0", "::", "") else config.host
    parts = [f"hypivisor {__version__} listening: registry ws://{shown}:{config.port}/ws"]
    if config.dashboard_port:
        built = (config.dashboard_dir / "index.html").is_file()
        parts.append(f"dashboard http://{shown}:{config.dashboard_port}/" + ("" if built else " (Pi-DE not built)"))
    if shown != config.host:
        parts.append("on all interfaces")
    parts.append("token required" if config.token else "NO TOKEN")
    return ", ".join(parts)


async def serve(config: Config, ready: asyncio.Event | None = None) -> None:
    """Run until SIGINT/SIGTERM. Raises StartupError for problems the user must fix."""
    service = Service(config)
    origins = allowed_origins(config)
    runner = web.AppRunner(build_app(service, origins), access_log=None, handle_signals=False)
    await runner.setup()
    ctx = FrontContext(service, origins, runner.server)  # type: ignore[arg-type]
    servers: list[asyncio.Server] = []
    try:
        servers.append(await listen(ctx, config.host, config.port))
        if config.dashboard_port and config.dashboard_port != config.port:  # same port: one listener serves both
            servers.append(await listen(ctx, config.host, config.dashboard_port))
        if not config.token:
            print("hypivisor: WARNING: HYPI_TOKEN is not set; anyone who can reach these ports can drive your agents",
                  file=sys.stderr, flush=True)  # fmt: skip
            log.warning("no HYPI_TOKEN set: WebSocket endpoints are unauthenticated")
        if not service.spawn_allowed():
            print("hypivisor: spawn_agent is disabled (non-loopback address without HYPI_TOKEN)",
                  file=sys.stderr, flush=True)  # fmt: skip
        print(startup_line(config), flush=True)
        log.info("started", port=config.port, dashboard_port=config.dashboard_port, host=config.host, ttl=config.node_ttl)
        await _run_until_signal(service, ready)
    finally:
        for srv in servers:
            srv.close()
        for task in list(ctx.tasks):
            task.cancel()
        await runner.cleanup()


async def _run_until_signal(service: Service, ready: asyncio.Event | None) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    sweeper = loop.create_task(sweep_loop(service))
    if ready is not None:
        ready.set()
    try:
        await stop.wait()
    finally:
        sweeper.cancel()
        log.info("stopping")
