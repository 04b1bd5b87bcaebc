"""The front protocol in-process on a real loopback socket: hand-off to aiohttp, head limits, timeouts."""

from __future__ import annotations

import asyncio

import pytest
from aiohttp import web

from hypivisor import front
from hypivisor.config import Config
from hypivisor.server import build_app
from hypivisor.service import Service


@pytest.fixture
async def server(tmp_path):
    service = Service(Config(host="127.0.0.1", port=1, dashboard_dir=tmp_path / "none"), env={"HOME": str(tmp_path)})
    runner = web.AppRunner(build_app(service, set()), access_log=None, handle_signals=False)
    await runner.setup()
    ctx = front.FrontContext(service, set(), runner.server)
    srv = await asyncio.get_running_loop().create_server(ctx.protocol, "127.0.0.1", 0)
    try:
        yield srv.sockets[0].getsockname()[1]
    finally:
        srv.close()
        await runner.cleanup()


async def exchange(port: int, payload: bytes, timeout: float = 5) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(payload)
    try:
        return await asyncio.wait_for(reader.read(), timeout)
    finally:
        writer.close()


async def test_one_request_per_connection_a_pipelined_second_is_never_served(server):
    """Every head must pass the front's checks, so aiohttp closes after its first response."""
    data = await exchange(
        server,
        b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET /ws/agent/x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    assert data.startswith(b"HTTP/1.1 200 OK") and b'"status": "ok"' in data
    assert b"Connection: close" in data and data.count(b"HTTP/1.1 ") == 1


async def test_head_split_across_many_segments_is_reassembled(server):
    reader, writer = await asyncio.open_connection("127.0.0.1", server)
    for byte in b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n":
        writer.write(bytes([byte]))
        await writer.drain()
    data = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    assert data.startswith(b"HTTP/1.1 200 OK")


async def test_a_client_that_never_finishes_its_head_is_timed_out(server, monkeypatch):
    monkeypatch.setattr(front, "HEAD_TIMEOUT", 0.2)
    data = await exchange(server, b"GET /healthz HTTP/1.1\r\nHost:", timeout=5)
    assert data.startswith(b"HTTP/1.1 408 ")


async def test_unknown_agent_is_404_before_any_upgrade(server):
    data = await exchange(
        server,
        b"GET /ws/agent/ghost HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )
    assert data.startswith(b"HTTP/1.1 404 ") and b'"code":1006' in data
