"""Odd handshakes at the agent port get a clean 4xx before any upgrade, never a 500 (real bridge process)."""

from __future__ import annotations

import asyncio

import pytest

from .fake_shim import FakeShim

TOKEN = "odd-heads-token"
KEY = "dGhlIHNhbXBsZSBub25jZQ=="


@pytest.fixture
async def secured(tmp_path):
    fake = FakeShim(tmp_path, env={"HYPI_TOKEN": TOKEN})
    await fake.start()
    yield fake
    await fake.stop()


async def status_for(port: int, extra: str) -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(
            (
                f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
            ).encode("latin-1")
        )
        line = await asyncio.wait_for(reader.readline(), 5)
    finally:
        writer.close()
    return int(line.split()[1]) if line else 0  # 0: closed without an answer


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (f"Authorization: Bearer {TOKEN}\r\nAuthorization: Bearer {TOKEN}\r\n", 400),
        (f"Authorization: Bearer {TOKEN}\r\nAuthorization: Bearer wrong\r\n", 400),
        (f"Authorization: Bearer {TOKEN}\r\nOrigin: http://localhost:5180\r\nOrigin: http://localhost:5180\r\n", 400),
        (f"Authorization: Bearer {TOKEN}\r\nX-A: a\x00b\r\n", 0),  # websockets refuses to parse it: closed
        (f"Authorization: Bearer {TOKEN}\r\n", 101),  # control
    ],
    ids=["two-auth-same", "two-auth-different", "two-origins", "nul-in-value", "control"],
)
async def test_odd_handshake_headers_are_a_clean_4xx(secured: FakeShim, extra: str, expected: int):
    assert await status_for(secured.port, extra) == expected
    assert "needsHardening" not in (secured.log_path.read_text() if secured.log_path.exists() else "")
