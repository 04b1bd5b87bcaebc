"""A toy agent WebSocket server (raw asyncio protocol, uvloop): the far end of the relay benchmark.

Text frames starting with ``!`` are commands, anything else is echoed:

* ``!blast SIZE SECONDS``: send SIZE-byte frames to this connection as fast as flow control allows;
* ``!pace SIZE COUNT RATE``: send COUNT timestamped frames at RATE/s, one write per frame (token-like);
* ``!stop``: stop this connection's tasks.

Every task ends by itself (count and time bounds); run with ``python -m bench.toyagent --port N``.

``--dialback URL --node ID --advertise PORT``: also register ID with the hypivisor at URL with the ``dial_back``
capability and a port nothing listens on (so every proxied link must be dialled back: a failed dial-back is an
error, never a silent direct connection), and serve each dialled-back connection with the same protocol, through
the bridge's own dial-back code (``pi_socket/bridge/dialback.py``).
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


def adopt(transport: asyncio.Transport, early: bytes) -> None:
    """A dialled-back connection becomes an agent connection, as an accepted one would."""
    agent = Agent()
    transport.set_protocol(agent)
    agent.connection_made(transport)
    if early:
        agent.data_received(early)


async def dial_backs(url: str, node: str, advertise: int, others: tuple[str, ...] = ()) -> None:
    """Stay registered at ``url`` as ``node`` and dial back every link asked for (bounded: one process's life).

    With ``others`` (more hypivisors of its list, as a bridge's ``HYPIVISOR_WS``) it also honours a dial-back that
    names another hypivisor's ``url`` (cluster mode: ``dial_back_url``) when that one is in its list, and answers each
    such request with ``dial_back_result``, as the bridge does."""
    import json

    import websockets

    from pi_socket.bridge.dialback import dial
    from pi_socket.hypivisors import listed

    tasks: set[asyncio.Task] = set()
    urls = (url, *others)

    async def dial_and_report(ws, target: str | None, nonce: str, report: bool) -> None:
        error = None if target is not None else "that hypivisor is not in the list"
        if target is not None:
            try:
                await dial(target, None, nonce, adopt)
            except Exception as exc:  # noqa: BLE001 - reported, as the bridge does
                error = f"{type(exc).__name__}: {exc}"[:300]
        if report:
            result = {"nonce": nonce, "ok": error is None} | ({"error": error} if error else {})
            await ws.send(json.dumps({"id": None, "method": "dial_back_result", "params": result}))

    async with websockets.connect(url, open_timeout=10, max_size=None) as ws:
        caps = ["dial_back", "dial_back_url"] if others else ["dial_back"]
        params = {"id": node, "machine": "bench", "cwd": "/", "port": advertise, "host": "127.0.0.1",
                  "capabilities": caps}  # fmt: skip
        await ws.send(json.dumps({"id": 1, "method": "register", "params": params}))
        async for raw in ws:
            msg = json.loads(raw)
            if msg.get("id") == 1 and "result" not in msg:
                raise SystemExit(f"register refused: {msg}")
            if msg.get("event") == "dial_back":
                named = msg.get("url")
                target = url if named is None else listed(named, urls)
                job = dial_and_report(ws, target, msg["nonce"], report=named is not None)
                task = asyncio.get_running_loop().create_task(job)
                tasks.add(task)
                task.add_done_callback(tasks.discard)


async def main(
    port: int, dialback: str | None = None, node: str = "", advertise: int = 0, others: tuple[str, ...] = ()
) -> None:
    server = await asyncio.get_running_loop().create_server(Agent, "127.0.0.1", port, backlog=4096)
    async with server:
        if dialback:
            await dial_backs(dialback, node, advertise, others)
        else:
            await server.serve_forever()


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--dialback", help="the hypivisor's registry URL: register and serve dial-backs")
    ap.add_argument("--node", default="bench-agent")
    ap.add_argument("--advertise", type=int, default=9, help="the port to register (nothing listens there)")
    ap.add_argument(
        "--also", action="append", default=[], help="another hypivisor of its list (cluster dial-backs to it)"
    )
    raise_nofile()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    a = ap.parse_args()
    asyncio.run(main(a.port, a.dialback, a.node, a.advertise, tuple(a.also)))
