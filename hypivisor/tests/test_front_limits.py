"""Connection accounting (pure) and request-head checks (pure), plus the front's limiter on a real socket."""

from __future__ import annotations

import asyncio

import pytest
from aiohttp import web

from hypivisor import front, httphead
from hypivisor.config import Config
from hypivisor.connlimit import SMALL_HOLDER, ConnectionLimiter, total_for_fd_limit
from hypivisor.server import AIOHTTP_HANDLER_ARGS, build_app
from hypivisor.service import Service


def test_per_peer_cap_then_total_cap_then_release():
    lim = ConnectionLimiter(total=64, per_peer=4)
    assert all(lim.admit("a") is None for _ in range(4))
    assert "this address" in lim.admit("a").reason
    lim.release("a")
    assert lim.admit("a") is None
    assert lim.open == 4 and lim.by_peer == {"a": 4}
    for _ in range(4):
        lim.release("a")
    assert lim.open == 0 and lim.by_peer == {}
    lim.release("a")  # an extra release never goes negative
    assert lim.open == 0


def test_the_reserve_is_kept_for_addresses_holding_few():
    lim = ConnectionLimiter(total=64, per_peer=64)  # reserve: the last 8
    assert all(lim.admit("hog") is None for _ in range(56))
    assert lim.admit("hog") is not None  # the hog holds >= 8: the reserve is not for it
    for i in range(SMALL_HOLDER - 1):
        assert lim.admit("dashboard") is None, i  # a small holder gets in
    assert lim.admit("other") is None  # 64 open now
    refusal = lim.admit("late")
    assert refusal is not None and "64 open" in refusal.reason


def test_the_total_follows_the_descriptor_limit():
    assert total_for_fd_limit(1024, 0) == 1024  # unknown / unlimited
    assert total_for_fd_limit(1024, 1 << 20) == 1024
    assert total_for_fd_limit(1024, 1024) == (1024 - 64) // 2  # a splice holds two descriptors
    assert total_for_fd_limit(1024, 10) == SMALL_HOLDER


@pytest.mark.parametrize(
    "raw",
    [
        b"GET / HTTP/1.1\r\nX: a\nInjected: 1\r\n\r\n",  # bare LF in a value
        b"GET / HTTP/1.1\r\nX: a\rb\r\n\r\n",  # bare CR
        b"GET / HTTP/1.1\r\nX: a\x00b\r\n\r\n",  # NUL
        b"GET / HTTP/1.1\r\nX: a\x7fb\r\n\r\n",  # DEL
        b"GET /a\x00b HTTP/1.1\r\n\r\n",  # NUL in the target
        b"GET /a\rb HTTP/1.1\r\n\r\n",
        b"GET /\xe9 HTTP/1.1\r\n\r\n",  # raw non-ASCII in the target
        b"GET / HTTP/1.1\nHost: x\r\n\r\n",  # bare LF ending the request line
        b"GET / HTTP/1.1\r\nX\x00: a\r\n\r\n",
        b"GET / HTTP/1.2\r\n\r\n",
        b"GET / HTTP/1.1\r\n" + b"X: y\r\n" * (httphead.MAX_HEADERS + 1) + b"\r\n",
    ],
)
def test_control_bytes_and_odd_heads_are_refused(raw: bytes):
    with pytest.raises(httphead.HeadError):
        httphead.parse_head(raw)


def test_tabs_obs_text_and_the_header_count_limit_are_accepted():
    head = httphead.parse_head(b"GET /%00?q=%0d HTTP/1.0\r\nX: a\tb \xe9\r\n" + b"Y: z\r\n" * 99 + b"\r\n")
    assert head.get("x") == "a\tb \xe9" and head.path == "/%00"


def test_head_end_found_when_the_blank_line_is_split_across_appends():
    buf = bytearray(b"GET / HTTP/1.1\r\nHost: x\r\n\r")
    assert httphead.find_head_end(buf, 0) == -1
    scanned = len(buf)
    buf += b"\n"
    assert httphead.find_head_end(buf, scanned) == len(buf)


@pytest.fixture
async def small_front(tmp_path):
    cfg = Config(host="127.0.0.1", port=1, dashboard_dir=tmp_path / "none", max_connections=64,
                 max_connections_per_peer=3)  # fmt: skip
    service = Service(cfg, env={"HOME": str(tmp_path)})
    runner = web.AppRunner(build_app(service, set()), access_log=None, handle_signals=False, **AIOHTTP_HANDLER_ARGS)
    await runner.setup()
    ctx = front.FrontContext(service, set(), runner.server)
    srv = await asyncio.get_running_loop().create_server(ctx.protocol, "127.0.0.1", 0)
    try:
        yield ctx, srv.sockets[0].getsockname()[1]
    finally:
        srv.close()
        await runner.cleanup()


async def test_each_owner_releases_its_connection(small_front):
    """Counted while open whoever owns the socket (front, aiohttp, aiohttp's WebSocket), uncounted on close."""
    ctx, port = small_front
    idle = [await asyncio.open_connection("127.0.0.1", port) for _ in range(2)]  # front-owned, head pending
    r, w = await asyncio.open_connection("127.0.0.1", port)
    w.write(b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")  # fmt: skip
    assert (await asyncio.wait_for(r.readline(), 5)).startswith(b"HTTP/1.1 101")
    r4, _w4 = await asyncio.open_connection("127.0.0.1", port)
    refused = await asyncio.wait_for(r4.read(), 5)
    assert refused.startswith(b"HTTP/1.1 503 ") and b'"code":1008' in refused and b"Retry-After: 1" in refused
    assert ctx.limiter.open == 3
    w.close()
    for _, wi in idle:
        wi.close()
    for _ in range(100):
        if ctx.limiter.open == 0:
            break
        await asyncio.sleep(0.02)
    assert ctx.limiter.open == 0 and ctx.limiter.by_peer == {}
    r5, w5 = await asyncio.open_connection("127.0.0.1", port)
    w5.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    assert (await asyncio.wait_for(r5.read(), 5)).startswith(b"HTTP/1.1 200")
    w5.close()
