"""/ws/agent/<id>: the byte-splice relay to a toy agent WebSocket server, both directions."""

from __future__ import annotations

import asyncio
import json
import os

import pytest
import websockets
from websockets.exceptions import ConnectionClosed, InvalidStatus

from integration_tests.harness.hypivisor_proc import RegistryClient, free_port, node_params

MB = 1024 * 1024


class ToyAgent:
    """A bridge stand-in: sends ``init_state`` the moment a client connects, then echoes every frame."""

    def __init__(self):
        self.requests: list = []
        self.connections: list = []
        self.closed = asyncio.Event()
        self.server = None
        self.port = 0

    async def handler(self, ws):
        self.requests.append(ws.request)
        self.connections.append(ws)
        await ws.send(json.dumps({"type": "init_state", "messages": []}))
        try:
            async for msg in ws:
                if msg == "close-4000":
                    await ws.close(4000, "agent says bye")
                    return
                await ws.send(msg)
        except ConnectionClosed:
            pass
        finally:
            self.closed.set()

    async def __aenter__(self):
        self.server = await websockets.serve(self.handler, "127.0.0.1", 0, max_size=None, compression=None)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc):
        self.server.close()
        await self.server.wait_closed()


async def register(hv, node_id: str, port: int) -> RegistryClient:
    bridge = await RegistryClient.connect(hv)
    res = await bridge.call("register", node_params(node_id, port))
    assert "result" in res, res
    return bridge


async def test_relay_text_binary_large_frames_and_immediate_init(hypivisor):
    async with ToyAgent() as agent:
        bridge = await register(hypivisor, "a1", agent.port)
        try:
            async with websockets.connect(hypivisor.agent_url("a1"), max_size=None) as ws:
                first = json.loads(await asyncio.wait_for(ws.recv(), 5))
                assert first["type"] == "init_state"  # sent in the same read as the 101: not lost
                await ws.send("hello")
                assert await ws.recv() == "hello"
                blob = os.urandom(MB)
                await ws.send(blob)
                assert await asyncio.wait_for(ws.recv(), 10) == blob
                text = "x" * MB
                await ws.send(text)
                assert await asyncio.wait_for(ws.recv(), 10) == text
                for i in range(200):  # many small frames, in order
                    await ws.send(f"m{i}")
                assert [await ws.recv() for _ in range(200)] == [f"m{i}" for i in range(200)]
            await asyncio.wait_for(agent.closed.wait(), 5)  # client close reached the agent
        finally:
            await bridge.close()
        req = agent.requests[0]
        assert req.path == "/" and req.headers["Host"] == f"127.0.0.1:{agent.port}"


async def test_query_string_and_origin_rewrite(hypivisor):
    async with ToyAgent() as agent:
        bridge = await register(hypivisor, "a2", agent.port)
        try:
            origin = f"http://localhost:{hypivisor.dashboard_port}"
            async with websockets.connect(hypivisor.agent_url("a2") + "?x=1", origin=origin) as ws:
                await ws.recv()
        finally:
            await bridge.close()
        req = agent.requests[0]
        assert req.path == "/?x=1" and "Origin" not in req.headers


async def test_agent_close_reaches_client_with_its_code(hypivisor):
    async with ToyAgent() as agent:
        bridge = await register(hypivisor, "a3", agent.port)
        try:
            async with websockets.connect(hypivisor.agent_url("a3")) as ws:
                await ws.recv()
                await ws.send("close-4000")
                with pytest.raises(ConnectionClosed) as e:
                    await asyncio.wait_for(ws.recv(), 5)
                assert e.value.rcvd is not None and e.value.rcvd.code == 4000  # close frame end to end
        finally:
            await bridge.close()


async def test_agent_process_dying_closes_the_client(hypivisor):
    async with ToyAgent() as agent:
        bridge = await register(hypivisor, "a4", agent.port)
        try:
            async with websockets.connect(hypivisor.agent_url("a4")) as ws:
                await ws.recv()
                agent.connections[0].transport.abort()  # TCP reset, no close frame
                with pytest.raises(ConnectionClosed):
                    await asyncio.wait_for(ws.recv(), 5)
        finally:
            await bridge.close()


async def status_of(url: str, **kw) -> tuple[int, dict]:
    with pytest.raises(InvalidStatus) as e:
        await websockets.connect(url, open_timeout=5, **kw)
    resp = e.value.response
    return resp.status_code, json.loads(resp.body)


async def test_unknown_offline_and_unreachable_agents(hypivisor):
    code, body = await status_of(hypivisor.agent_url("nobody"))
    assert code == 404 and body["error"]["code"] == 1006 and "nobody" in body["error"]["message"]

    async with ToyAgent() as agent:
        bridge = await register(hypivisor, "gone", agent.port)
        await bridge.close()
        async with await RegistryClient.connect(hypivisor) as dash:
            await dash.event("init")
            for _ in range(50):  # bounded wait for the offline mark
                if dash.events or (await dash.call("list_nodes"))["result"]["nodes"][0]["status"] == "offline":
                    break
                await asyncio.sleep(0.05)
        code, body = await status_of(hypivisor.agent_url("gone"))
        assert code == 410 and "offline" in body["error"]["message"]

    bridge = await register(hypivisor, "unreachable", free_port())
    try:
        code, body = await status_of(hypivisor.agent_url("unreachable"))
        assert code == 502 and "unreachable" in body["error"]["message"]
    finally:
        await bridge.close()


async def test_non_upgrade_request_to_agent_path_is_400(hypivisor):
    reader, writer = await asyncio.open_connection("127.0.0.1", hypivisor.port)
    writer.write(b"GET /ws/agent/x HTTP/1.1\r\nHost: a\r\n\r\n")
    data = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    assert data.startswith(b"HTTP/1.1 400 ")


async def test_oversized_or_garbage_heads_are_rejected(hypivisor):
    for payload, status in ((b"GET /" + b"a" * 20000, b"431"), (b"NONSENSE\r\n\r\n", b"400")):
        reader, writer = await asyncio.open_connection("127.0.0.1", hypivisor.port)
        writer.write(payload)
        data = await asyncio.wait_for(reader.read(), 5)
        writer.close()
        assert data.split(b" ")[1] == status


async def test_proxy_through_the_dashboard_port_too(hypivisor):
    async with ToyAgent() as agent:
        bridge = await register(hypivisor, "a5", agent.port)
        try:
            url = f"ws://127.0.0.1:{hypivisor.dashboard_port}/ws/agent/a5"
            async with websockets.connect(url) as ws:
                assert json.loads(await ws.recv())["type"] == "init_state"
        finally:
            await bridge.close()


async def test_bytes_in_the_same_segment_as_the_101_are_not_lost(hypivisor):
    """A raw agent writes its 101 and its first frame in ONE write: the relay must pass both."""
    import base64
    import hashlib

    async def raw_agent(reader, writer):
        head = await reader.readuntil(b"\r\n\r\n")
        key = next(
            ln.split(b":", 1)[1].strip() for ln in head.split(b"\r\n") if ln.lower().startswith(b"sec-websocket-key")
        )
        accept = base64.b64encode(hashlib.sha1(key + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest())
        payload = b'{"type":"init_state"}'
        writer.write(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n" + bytes([0x81, len(payload)]) + payload
        )
        await writer.drain()
        await reader.read(1)  # hold the connection until the client goes
        writer.close()

    server = await asyncio.start_server(raw_agent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    bridge = await register(hypivisor, "raw", port)
    try:
        async with websockets.connect(hypivisor.agent_url("raw")) as ws:
            assert await asyncio.wait_for(ws.recv(), 5) == '{"type":"init_state"}'
    finally:
        await bridge.close()
        server.close()


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as fh:
        line = next(ln for ln in fh if ln.startswith("VmRSS:"))
    return int(line.split()[1]) / 1024


async def test_flow_control_a_slow_agent_does_not_make_the_relay_buffer(hypivisor):
    """64 MB towards an agent that is not reading: the relay pauses the client instead of buffering it all."""
    reading = asyncio.Event()
    got: list[int] = []

    async def lazy_agent(ws):
        await reading.wait()
        async for msg in ws:
            got.append(len(msg))
            if len(got) == 64:
                await ws.send("done")

    server = await websockets.serve(lazy_agent, "127.0.0.1", 0, max_size=None, max_queue=1, compression=None)
    bridge = await register(hypivisor, "lazy", server.sockets[0].getsockname()[1])
    try:
        before = rss_mb(hypivisor.proc.pid)
        async with websockets.connect(hypivisor.agent_url("lazy"), max_size=None, compression=None) as ws:
            blob = b"z" * MB

            async def pump():
                for _ in range(64):
                    await ws.send(blob)

            sender = asyncio.create_task(pump())
            await asyncio.sleep(1.5)
            assert not sender.done()  # the client is being held back...
            grown = rss_mb(hypivisor.proc.pid) - before
            assert grown < 24, f"relay buffered {grown:.0f} MB"  # ...not the relay's memory
            reading.set()
            await asyncio.wait_for(sender, 20)
            assert await asyncio.wait_for(ws.recv(), 20) == "done"
        assert got == [MB] * 64
    finally:
        await bridge.close()
        server.close()
