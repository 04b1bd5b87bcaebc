"""Network faults between real processes, through a TCP proxy the test controls (specs/reliability.md).

``ChaosProxy`` forwards bytes between a client and a real server. ``blackhole()`` keeps every socket open
but silently drops what flows (a cable pulled, a laptop asleep: no FIN, no close frame); ``cut()`` resets
every connection (RST). Scenarios:

- hypivisor <-> agent (the bridge's registry link) black-holed: the hypivisor marks the node offline within
  ~1.5 heartbeat intervals, the bridge notices within one interval plus its 5 s RPC timeout, and re-registers
  when the path is back;
- dashboard <-> hypivisor black-holed: the hypivisor drops the dashboard (its side of the proxy sees the close)
  and a client pinging at the heartbeat interval notices too;
- 200 prompts through the bridge with the link reset at random moments: every prompt is acknowledged, pi
  receives each exactly once (none lost, none doubled); the same with real pi, counting pi's own user messages.
"""

from __future__ import annotations

import asyncio
import json
import random
import time

import pytest
import websockets
from websockets.exceptions import ConnectionClosed

from integration_tests.harness.hypivisor_proc import RegistryClient
from pi_socket.tests.fake_shim import FakeShim

HEARTBEAT = 1.0  # hypivisor --node-ttl 3 → heartbeat_interval 1 s


class ChaosProxy:
    """A loopback TCP relay to ``target`` whose connections can be black-holed or reset on demand."""

    def __init__(self, target_port: int):
        self.target_port = target_port
        self.pairs: list[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = []
        self.black = False
        self.upstream_closed_at: list[float] = []  # when a server closed its side (it noticed)
        self.tasks: set[asyncio.Task] = set()

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self.port

    async def _accept(self, c_reader, c_writer):
        try:
            u_reader, u_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            c_writer.transport.abort()
            return
        pair = (c_writer, u_writer)
        self.pairs.append(pair)
        for args in ((c_reader, u_writer, False), (u_reader, c_writer, True)):
            t = asyncio.create_task(self._pump(*args))
            self.tasks.add(t)
            t.add_done_callback(self.tasks.discard)

    async def _pump(self, reader, writer, from_upstream: bool):
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                if not self.black:
                    writer.write(data)
                    await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            if from_upstream:
                self.upstream_closed_at.append(time.monotonic())
            if not self.black:
                writer.transport.abort() if writer.transport else None

    def blackhole(self, on: bool = True) -> None:
        self.black = on

    def cut(self) -> int:
        """Reset every live connection (RST both ways); returns how many were cut."""
        n = 0
        for c, u in self.pairs:
            for w in (c, u):
                if not w.transport.is_closing():
                    w.transport.abort()
                    n += 1
        self.pairs = [p for p in self.pairs if not p[0].transport.is_closing()]
        return n

    async def close(self):
        self.black = False
        self.cut()
        self.server.close()
        for t in list(self.tasks):
            t.cancel()


async def wait_for(pred, timeout: float, what: str, step: float = 0.05):
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(step)


def log_msgs(fake: FakeShim) -> list[str]:
    return [r.get("msg", "") for r in fake.log_lines()]


async def test_agent_registry_link_blackholed_both_sides_notice_then_reregister(hypivisor_factory, tmp_path):
    hv = hypivisor_factory(ttl=3 * HEARTBEAT)
    proxy = ChaosProxy(hv.port)
    await proxy.start()
    fake = FakeShim(
        tmp_path,
        node_id="cut-node",
        env={"HYPIVISOR_WS": f"ws://127.0.0.1:{proxy.port}/ws", "PI_SOCKET_RECONNECT_MS": "200"},
    )
    await fake.start()
    try:
        async with await RegistryClient.connect(hv) as dash:
            await wait_for(lambda: "registered with hypivisor" in log_msgs(fake), 10, "registration")
            proxy.blackhole()
            t0 = time.monotonic()
            await dash.event("node_offline", timeout=10, id="cut-node")
            hv_noticed = time.monotonic() - t0
            await wait_for(lambda: any("lost" in m for m in log_msgs(fake)), 15, "the bridge to notice")
            bridge_noticed = time.monotonic() - t0
            assert hv_noticed <= 2.5 * HEARTBEAT + 0.5, hv_noticed  # aiohttp ping + pong timeout
            assert bridge_noticed <= HEARTBEAT + 5.0 + 3.0, bridge_noticed  # next heartbeat + RPC timeout
            proxy.blackhole(False)  # the path is back: the bridge re-registers on a new connection
            deadline = time.monotonic() + 20  # removed by TTL meanwhile, so it comes back as node_joined
            while True:
                ev = await dash._read_one(max(0.01, deadline - time.monotonic()))
                if ev.get("event") in ("node_joined", "node_updated") and ev["node"]["status"] == "active":
                    break
            assert ev["node"]["id"] == "cut-node"
            nodes = (await dash.call("list_nodes"))["result"]["nodes"]
            assert [(n["id"], n["status"]) for n in nodes] == [("cut-node", "active")]
            print(f"RESULT registry-link blackhole: hypivisor noticed {hv_noticed:.2f}s, bridge {bridge_noticed:.2f}s")
    finally:
        await fake.stop()
        await proxy.close()


async def test_dashboard_link_blackholed_both_sides_notice(hypivisor_factory):
    hv = hypivisor_factory(ttl=3 * HEARTBEAT)
    proxy = ChaosProxy(hv.port)
    await proxy.start()
    try:
        ws = await websockets.connect(
            f"ws://127.0.0.1:{proxy.port}/ws",
            ping_interval=HEARTBEAT,
            ping_timeout=HEARTBEAT,
            open_timeout=5,
            close_timeout=0.5,
        )
        assert json.loads(await ws.recv())["event"] == "init"
        t0, client_noticed = await blackhole_until_client_notices(proxy, ws)
        await wait_for(lambda: proxy.upstream_closed_at, 10, "the hypivisor to drop the silent dashboard")
        hv_noticed = proxy.upstream_closed_at[0] - t0
        assert client_noticed <= 2 * HEARTBEAT + 2.0, client_noticed
        assert hv_noticed <= 2.5 * HEARTBEAT + 0.5, hv_noticed
        # the hypivisor is fine and serves a new dashboard at once
        async with await RegistryClient.connect(hv) as again:
            assert (await again.event("init"))["nodes"] == []
        print(f"RESULT dashboard blackhole: client noticed {client_noticed:.2f}s, hypivisor {hv_noticed:.2f}s")
    finally:
        await proxy.close()


async def send_until_acked(url: str, prompt_id: str, text: str, stats: dict, timeout: float = 30.0) -> None:
    """What Pi-DE does: (re)connect, send the prompt with the same id, until an ack for it arrives."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            async with websockets.connect(url, open_timeout=3, close_timeout=0.2, max_size=None) as ws:
                while json.loads(await asyncio.wait_for(ws.recv(), 3))["type"] != "init_state":
                    pass
                await ws.send(json.dumps({"type": "prompt", "id": prompt_id, "text": text}))
                stats["sends"] += 1
                while True:
                    msg = json.loads(await asyncio.wait_for(ws.recv(), 5))
                    if msg.get("type") == "ack" and msg.get("id") == prompt_id:
                        stats["acks"] += 1
                        stats["dup_acks"] += bool(msg.get("duplicate"))
                        return
                    if msg.get("type") == "error" and msg.get("id") == prompt_id:
                        stats["errors"] += 1  # reported failed: the client resends (same id)
                        break
        except (TimeoutError, ConnectionClosed, OSError, websockets.InvalidHandshake):
            stats["reconnects"] += 1
            await asyncio.sleep(0.02)
    raise AssertionError(f"prompt {prompt_id} never acknowledged")


async def chaos(proxy: ChaosProxy, stop: asyncio.Event, rng: random.Random, stats: dict) -> None:
    while not stop.is_set():
        await asyncio.sleep(rng.uniform(0.005, 0.08))
        stats["cuts"] += bool(proxy.cut())


async def test_200_prompts_under_random_disconnects_none_lost_none_doubled(tmp_path):
    rng = random.Random(20261123)
    fake = FakeShim(tmp_path)
    fake.send_delay = 0.01  # pi takes a moment to accept: disconnects land while a prompt is in flight too
    await fake.start()
    proxy = ChaosProxy(fake.port)
    await proxy.start()
    stats = dict(sends=0, acks=0, dup_acks=0, errors=0, reconnects=0, cuts=0)
    stop = asyncio.Event()
    chaos_task = asyncio.create_task(chaos(proxy, stop, rng, stats))
    try:
        ids = [f"p{i:03d}" for i in range(200)]

        async def lane(chunk):
            for pid in chunk:
                await send_until_acked(f"ws://127.0.0.1:{proxy.port}/", pid, f"text of {pid}", stats)

        await asyncio.wait_for(asyncio.gather(*(lane(ids[i::4]) for i in range(4))), 240)
        stop.set()
        await chaos_task
        delivered = [r["prompt_id"] for r in fake.delivered]
        assert sorted(delivered) == ids, "each prompt reached pi exactly once"
        assert all(r["text"] == f"text of {r['prompt_id']}" for r in fake.delivered)
        sent_to_shim = [r["prompt_id"] for r in fake.sent("send")]
        assert len(sent_to_shim) == len(set(sent_to_shim)) == 200, "the bridge never handed a prompt over twice"
        assert stats["acks"] == 200
        # the disconnects really happened mid-way: prompts were resent and acknowledged as duplicates (how many cuts
        # fall inside the run depends on the machine's speed; what they caused is the proof)
        assert stats["cuts"] >= 10 and stats["sends"] > 200 and stats["dup_acks"] > 0, stats
        print(f"RESULT 200 prompts under disconnects: {stats}")
    finally:
        stop.set()
        await proxy.close()
        await fake.stop()


async def blackhole_until_client_notices(proxy, ws) -> tuple[float, float]:
    """Black-hole ``proxy`` and wait (bounded) until the pinging client ``ws`` sees its connection die.
    Returns (the moment the hole opened, seconds the client took to notice)."""
    proxy.blackhole()
    t0 = time.monotonic()
    with pytest.raises(ConnectionClosed):
        for _ in range(100):
            await asyncio.wait_for(ws.recv(), 10)
    return t0, time.monotonic() - t0


@pytest.mark.pi
def test_real_pi_prompts_under_random_disconnects_each_user_message_once(start_pi, fake_llm):
    pi = start_pi("0.73.1", mode="rpc")
    n = 12
    fake_llm.script([{"text": f"answer {i}"} for i in range(n)])

    async def run():
        proxy = ChaosProxy(pi.port)
        await proxy.start()
        stats = dict(sends=0, acks=0, dup_acks=0, errors=0, reconnects=0, cuts=0)
        stop = asyncio.Event()
        task = asyncio.create_task(chaos(proxy, stop, random.Random(7), stats))
        try:
            for i in range(n):
                await send_until_acked(f"ws://127.0.0.1:{proxy.port}/", f"real-{i}", f"real prompt {i}", stats, 60)
        finally:
            stop.set()
            await task
            await proxy.close()
        return stats

    stats = asyncio.run(run())
    from integration_tests.harness.pi_proc import AgentClient, wait_until

    c = AgentClient(pi.url)

    def user_texts():
        start = len(c.frames)
        c.send({"type": "fetch_history", "before": 10_000, "limit": 500})
        page = c.wait_for(lambda f: f["type"] == "history_page", start=start)
        texts = []
        for m in page["messages"]:
            if m.get("role") == "user":
                content = m.get("content")
                texts.append(content if isinstance(content, str) else "".join(p.get("text", "") for p in content))
        return texts

    wait_until(lambda: sum(t.startswith("real prompt") for t in user_texts()) >= n, 60, "pi to record every prompt")
    texts = [t for t in user_texts() if t.startswith("real prompt")]
    assert sorted(texts) == sorted(f"real prompt {i}" for i in range(n)), texts
    assert stats["acks"] == n
    c.close()
    print(f"RESULT real pi {n} prompts under disconnects: {stats}")


@pytest.mark.slow
async def test_agent_link_blackholed_between_proxy_and_bridge_both_sides_notice(hypivisor_factory, tmp_path):
    """Dashboard -> hypivisor proxy -> [black hole] -> bridge. The client notices by its own pings; the bridge by
    its keepalive (PI_SOCKET_KEEPALIVE: ping every k s, k+1 s timeout, 1 s close wait), here k = HEARTBEAT."""
    hv = hypivisor_factory()
    fake = FakeShim(tmp_path, node_id="direct", env={"PI_SOCKET_KEEPALIVE": str(HEARTBEAT)})
    await fake.start()
    proxy = ChaosProxy(fake.port)
    await proxy.start()
    try:
        async with await RegistryClient.connect(hv) as holder:  # the node's address is the chaos proxy
            assert "result" in await holder.call(
                "register", {"id": "via-chaos", "machine": "m", "cwd": "/tmp", "port": proxy.port, "host": "127.0.0.1"}
            )
            ws = await websockets.connect(
                hv.agent_url("via-chaos"),
                ping_interval=HEARTBEAT,
                ping_timeout=HEARTBEAT,
                close_timeout=0.5,
                open_timeout=5,
            )
            assert json.loads(await ws.recv())["type"] == "init_state"
            t0, client_noticed = await blackhole_until_client_notices(proxy, ws)
            await wait_for(lambda: "client disconnected" in log_msgs(fake), 60, "the bridge to drop the client")
            bridge_noticed = time.monotonic() - t0
            assert client_noticed <= 2 * HEARTBEAT + 2.0, client_noticed
            # ping interval + ping timeout + close wait, plus slack for a loaded machine
            assert bridge_noticed <= HEARTBEAT + (HEARTBEAT + 1) + 1 + 3.0, bridge_noticed
            proxy.blackhole(False)
            stats = dict(sends=0, acks=0, dup_acks=0, errors=0, reconnects=0, cuts=0)
            await send_until_acked(hv.agent_url("via-chaos"), "after-cut", "hello again", stats)
            assert [r["prompt_id"] for r in fake.delivered] == ["after-cut"]
            print(f"RESULT agent link blackhole: client noticed {client_noticed:.2f}s, bridge {bridge_noticed:.2f}s")
    finally:
        await proxy.close()
        await fake.stop()
