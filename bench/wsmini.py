"""Minimal WebSocket framing for the benchmark instruments (toy agent and load clients).

Instruments must cost far less than the relay under test: frames are pre-built,
throughput receivers only count bytes, no extensions, no fragmentation.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import struct
import time

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
TEXT, CLOSE, PING, PONG = 1, 8, 9, 10
MASK = b"\x00\x00\x00\x00"  # a zero mask keeps client frames cheap to build and still valid


def frame(payload: bytes, opcode: int = TEXT, masked: bool = False) -> bytes:
    n = len(payload)
    b0 = 0x80 | opcode
    m = 0x80 if masked else 0
    if n < 126:
        head = bytes((b0, m | n))
    elif n < 65536:
        head = bytes((b0, m | 126)) + struct.pack("!H", n)
    else:
        head = bytes((b0, m | 127)) + struct.pack("!Q", n)
    return head + (MASK if masked else b"") + payload


def parse(buf: bytearray) -> list[tuple[int, bytes]]:
    """Consume complete frames (zero or real masks are both handled) from ``buf``."""
    out, pos, n = [], 0, len(buf)
    while n - pos >= 2:
        b1 = buf[pos + 1]
        ln, hl = b1 & 0x7F, 2
        if ln == 126:
            if n - pos < 4:
                break
            ln, hl = struct.unpack_from("!H", buf, pos + 2)[0], 4
        elif ln == 127:
            if n - pos < 10:
                break
            ln, hl = struct.unpack_from("!Q", buf, pos + 2)[0], 10
        mask = None
        if b1 & 0x80:
            mask = bytes(buf[pos + hl : pos + hl + 4])
            hl += 4
        if n - pos < hl + ln:
            break
        payload = bytes(buf[pos + hl : pos + hl + ln])
        if mask and mask != MASK:
            payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        out.append((buf[pos] & 0x0F, payload))
        pos += hl + ln
    if pos:
        del buf[:pos]
    return out


def handshake_request(port: int, path: str, extra: str = "") -> bytes:
    """``extra``: more header lines, each ending in CRLF."""
    key = base64.b64encode(os.urandom(16))
    return (
        (
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"{extra}Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: "
        ).encode()
        + key
        + b"\r\n\r\n"
    )


def accept(key: bytes) -> bytes:
    return base64.b64encode(hashlib.sha1(key + GUID).digest())


def ts_payload(size: int, seq: int = 0) -> bytes:
    """A JSON-looking text payload of ``size`` bytes starting with a monotonic_ns timestamp."""
    head = b'{"ts":%020d,"seq":%010d,"d":"' % (time.monotonic_ns(), seq)
    return head + b"z" * max(0, size - len(head) - 2) + b'"}'


def ts_of(payload: bytes) -> int:
    return int(payload[6:26])


class Client(asyncio.Protocol):
    """WebSocket client: ``count`` mode only counts received bytes; ``parse`` mode calls ``on_msg``."""

    def __init__(self, port: int, path: str, on_msg=None, extra_headers: str = ""):
        loop = asyncio.get_running_loop()
        self.req = handshake_request(port, path, extra_headers)
        self.on_msg = on_msg
        self.buf = bytearray()
        self.open = False
        self.nbytes = 0
        self.ready = loop.create_future()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport) -> None:
        self.transport = transport
        transport.write(self.req)

    def data_received(self, data: bytes) -> None:
        if not self.open:
            self.buf += data
            i = self.buf.find(b"\r\n\r\n")
            if i < 0:
                return
            status = bytes(self.buf[:i].split(b"\r\n", 1)[0])
            rest = bytes(self.buf[i + 4 :])
            self.buf.clear()
            if b" 101 " not in status:
                if not self.ready.done():
                    self.ready.set_exception(RuntimeError(f"handshake refused: {status!r}"))
                self.transport.close()
                return
            self.open = True
            if not self.ready.done():
                self.ready.set_result(None)
            data = rest
            if not data:
                return
        if self.on_msg is None:
            self.nbytes += len(data)
            return
        self.buf += data
        for op, payload in parse(self.buf):
            if op == PING:  # servers drop peers that do not answer their pings (the hypivisor does)
                self.send(payload, PONG)
            elif op == CLOSE:
                self.close()
            elif op != PONG:
                self.on_msg(op, payload)

    def connection_lost(self, exc) -> None:
        if not self.ready.done():
            self.ready.set_exception(RuntimeError("connection lost during handshake"))

    def send(self, payload: bytes, opcode: int = TEXT) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(frame(payload, opcode, masked=True))

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(frame(b"\x03\xe8", CLOSE, masked=True))
            self.transport.close()


async def connect(port: int, path: str = "/", on_msg=None, timeout: float = 20.0) -> Client:
    loop = asyncio.get_running_loop()
    _, c = await asyncio.wait_for(
        loop.create_connection(lambda: Client(port, path, on_msg), "127.0.0.1", port), timeout
    )
    await asyncio.wait_for(c.ready, timeout)
    return c


async def connect_many(port: int, path: str, n: int, on_msg=None, concurrency: int = 50) -> list[Client]:
    sem = asyncio.Semaphore(concurrency)

    async def one() -> Client:
        async with sem:
            return await connect(port, path, on_msg)

    return list(await asyncio.gather(*(one() for _ in range(n))))
