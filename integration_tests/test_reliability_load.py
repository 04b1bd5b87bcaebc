"""Load through the real hypivisor proxy: many agents streaming to many dashboards (specs/reliability.md).

Lightweight fake agents (WebSocket servers in this process, one per agent, registered with the real
``python -m hypivisor`` over ``/ws`` like bridges) each stream numbered frames at a fixed token rate. Each
dashboard holds a ``/ws`` roster connection and opens ``/ws/agent/<id>`` through the proxy to its share of
the agents. Every stream must arrive complete and in order (per-stream sequence numbers), the roster must list
every agent, and the hypivisor's RSS must stay bounded.

CI mode (default): 40 agents x 50 tokens/s x 10 s, 20 dashboards, 2 viewers per agent.
Long mode (``HYPI_LONG=1``): 200 agents x 50 tokens/s x 60 s, 20 dashboards, 2 viewers per agent.
Overrides: ``HYPI_LOAD_AGENTS``, ``HYPI_LOAD_SECONDS``, ``HYPI_LOAD_RATE``, ``HYPI_LOAD_DASHBOARDS``,
``HYPI_LOAD_VIEWERS``.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path

import websockets

from integration_tests.harness.hypivisor_proc import RegistryClient, node_params

LONG = os.environ.get("HYPI_LONG") == "1"
AGENTS = int(os.environ.get("HYPI_LOAD_AGENTS") or (200 if LONG else 40))
SECONDS = float(os.environ.get("HYPI_LOAD_SECONDS") or (60 if LONG else 10))
RATE = float(os.environ.get("HYPI_LOAD_RATE") or 50)
DASHBOARDS = int(os.environ.get("HYPI_LOAD_DASHBOARDS") or 20)
VIEWERS = int(os.environ.get("HYPI_LOAD_VIEWERS") or 2)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class FakeAgent:
    """A WebSocket server that streams ``{a, seq, delta}`` frames to every client at ``RATE`` per second."""

    def __init__(self, index: int, start: asyncio.Event, stop_at: list[float]):
        self.index = index
        self.start_evt = start
        self.stop_at = stop_at
        self.sent = 0
        self.clients: set = set()

    async def handler(self, ws):
        self.clients.add(ws)
        try:
            await ws.send(json.dumps({"type": "init_state", "a": self.index}))
            await ws.wait_closed()
        finally:
            self.clients.discard(ws)

    async def stream(self):
        await self.start_evt.wait()
        t0 = time.monotonic()
        while time.monotonic() < self.stop_at[0]:
            frame = json.dumps({"type": "message_update", "a": self.index, "seq": self.sent,
                                "delta": f"tok{self.sent} "})
            for ws in list(self.clients):
                try:
                    await ws.send(frame)
                except websockets.ConnectionClosed:
                    pass
            self.sent += 1
            # fixed schedule (no drift): frame n leaves at t0 + n / RATE
            await asyncio.sleep(max(0.0, t0 + self.sent / RATE - time.monotonic()))
        for ws in list(self.clients):
            try:
                await ws.send(json.dumps({"type": "agent_end", "a": self.index, "total": self.sent}))
            except websockets.ConnectionClosed:
                pass


async def watch(url: str, results: dict, key: tuple) -> None:
    """One proxied agent link: check every frame's seq is the next one until agent_end."""
    expected, gaps = 0, 0
    async with websockets.connect(url, open_timeout=20, max_size=None, compression=None, ping_interval=None) as ws:
        assert json.loads(await ws.recv())["type"] == "init_state"
        results[key] = "open"
        while True:
            msg = json.loads(await asyncio.wait_for(ws.recv(), 30))
            if msg["type"] == "agent_end":
                results[key] = (expected, msg["total"], gaps)
                return
            if msg["seq"] != expected:
                gaps += 1
                expected = msg["seq"]
            expected += 1


async def test_agents_streaming_through_the_proxy_to_dashboards_lose_and_reorder_nothing(hypivisor_factory):
    hv = hypivisor_factory(ttl=30)
    start, stop_at = asyncio.Event(), [float("inf")]
    agents = [FakeAgent(i, start, stop_at) for i in range(AGENTS)]
    servers = []
    registrar = await RegistryClient.connect(hv, max_queue=None)
    dashboards = []
    try:
        for a in agents:
            srv = await websockets.serve(a.handler, "127.0.0.1", 0, compression=None, ping_interval=None,
                                         max_queue=None)
            servers.append(srv)
            port = srv.sockets[0].getsockname()[1]
            r = await registrar.call("register", node_params(f"load-{a.index}", port, machine="load-machine"))
            assert "result" in r, r
        for _ in range(DASHBOARDS):
            d = await RegistryClient.connect(hv, max_queue=None)
            init = await d.event("init")
            assert len(init["nodes"]) == AGENTS
            dashboards.append(d)
        # each agent is watched by VIEWERS dashboards, spread round-robin
        results: dict = {}
        watchers = []
        for a in agents:
            for v in range(VIEWERS):
                dash_no = (a.index * VIEWERS + v) % DASHBOARDS
                watchers.append(asyncio.create_task(watch(hv.agent_url(f"load-{a.index}"), results, (dash_no, a.index))))
        deadline = time.monotonic() + 60
        while len([v for v in results.values() if v == "open"]) < len(watchers):
            assert time.monotonic() < deadline, "proxied links did not all open"
            await asyncio.sleep(0.05)
        rss_before = rss_mb(hv.proc.pid)
        stop_at[0] = time.monotonic() + SECONDS
        streams = [asyncio.create_task(a.stream()) for a in agents]
        start.set()
        peak = rss_before
        while not all(s.done() for s in streams):
            peak = max(peak, rss_mb(hv.proc.pid))
            await asyncio.sleep(0.5)
        await asyncio.wait_for(asyncio.gather(*watchers), 60)
        sent = {a.index: a.sent for a in agents}
        bad = {k: v for k, v in results.items() if not (v[0] == v[1] == sent[k[1]] and v[2] == 0)}
        assert not bad, f"lost or reordered frames: {dict(list(bad.items())[:5])}"
        total = sum(v[0] for v in results.values())
        expected_rate = AGENTS * RATE * SECONDS
        assert sum(sent.values()) >= 0.8 * expected_rate, f"agents fell behind: {sum(sent.values())}/{expected_rate}"
        for d in dashboards:
            assert len((await d.call("list_nodes"))["result"]["nodes"]) == AGENTS
        assert peak - rss_before < 100, f"hypivisor RSS grew {peak - rss_before:.0f} MB"
        print(f"RESULT load: {AGENTS} agents x {RATE:g}/s x {SECONDS:g}s, {DASHBOARDS} dashboards, "
              f"{len(watchers)} proxied streams, {total} frames received, 0 lost, 0 reordered, "
              f"hypivisor RSS {rss_before:.0f}->{peak:.0f} MB")
    finally:
        for d in dashboards:
            await d.close()
        await registrar.close()
        for s in servers:
            s.close()
