"""A toy agent WebSocket server (raw asyncio protocol, uvloop): the far end of the relay benchmark.

Text frames starting with ``!`` are commands, anything else is echoed:

* ``!blast SIZE SECONDS``: send SIZE-byte frames to this connection as fast as flow control allows;
* ``!pace SIZE COUNT RATE``: send COUNT timestamped frames at RATE/s, one write per frame (token-like);
* ``!stop``: stop this connection's tasks.

Every task ends by itself (count and time bounds); run with ``python -m bench.toyagent --port N``.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time

from bench.common import raise_nofile
from bench.wsmini import CLOSE, PING, PONG, TEXT, accept, frame, parse, ts_payload

MAX_SECONDS = 30.0


class Agent(asyncio.Protocol):
    def __init__(self) -> None:
        self.buf = bytearray()
        self.open = False
        self.closed = False
        self.writable = asyncio.Event()
        self.writable.set()
        self.tasks: list[asyncio.Task] = []

    def connection_made(self, transport) -> None:
        self.t = transport
        transport.set_write_buffer_limits(high=256 * 1024)

    def connection_lost(self, exc) -> None:
        self.closed = True
        self.writable.set()
        for task in self.tasks:
            task.cancel()

    def pause_writing(self) -> None:
        self.writable.clear()

    def resume_writing(self) -> None:
        self.writable.set()

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if not self.open:
            i = self.buf.find(b"\r\n\r\n")
            if i < 0:
                return
            key = b""
            for line in bytes(self.buf[:i]).split(b"\r\n")[1:]:
                k, _, v = line.partition(b":")
                if k.strip().lower() == b"sec-websocket-key":
                    key = v.strip()
            del self.buf[: i + 4]
            self.t.write(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                b"Sec-WebSocket-Accept: " + accept(key) + b"\r\n\r\n"
            )
            self.open = True
        for op, payload in parse(self.buf):
            if op == TEXT and payload[:1] == b"!":
                self.command(payload.decode().split())
            elif op == CLOSE:
                self.t.write(frame(payload[:2], CLOSE))
                self.t.close()
                return
            elif op == PING:
                self.t.write(frame(payload, PONG))
            else:
                self.t.write(frame(payload, op))

    def command(self, a: list[str]) -> None:
        loop = asyncio.get_running_loop()
        if a[0] == "!blast":
            self.tasks.append(loop.create_task(self.blast(int(a[1]), min(float(a[2]), MAX_SECONDS))))
        elif a[0] == "!pace":
            self.tasks.append(loop.create_task(self.pace(int(a[1]), int(a[2]), float(a[3]))))
        elif a[0] == "!stop":
            for task in self.tasks:
                task.cancel()

    async def blast(self, size: int, seconds: float) -> None:
        one = frame(ts_payload(size))
        chunk = one * max(1, 65536 // len(one))
        deadline = time.monotonic() + seconds
        while not self.closed and time.monotonic() < deadline:
            self.t.write(chunk)
            if not self.writable.is_set():
                await self.writable.wait()
            else:
                await asyncio.sleep(0)

    async def pace(self, size: int, count: int, rate: float) -> None:
        loop = asyncio.get_running_loop()
        t0 = loop.time() + random.random() / rate  # random phase: streams do not fire in lock-step
        deadline = time.monotonic() + MAX_SECONDS
        for i in range(count):
            if self.closed or time.monotonic() > deadline:
                return
            delay = t0 + i / rate - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            if self.writable.is_set():
                self.t.write(frame(ts_payload(size, i)))


async def main(port: int) -> None:
    server = await asyncio.get_running_loop().create_server(Agent, "127.0.0.1", port, backlog=4096)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    raise_nofile()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(main(ap.parse_args().port))
