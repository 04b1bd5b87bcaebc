"""Invariant 4: a dashboard that stops reading is disconnected and never slows the others."""

from __future__ import annotations

import asyncio
import json
import socket
import time

import pytest
import websockets
from websockets.exceptions import ConnectionClosed

from integration_tests.harness.hypivisor_proc import RegistryClient, node_params

EVENTS = 3000
BATCH = 50


async def test_slow_dashboard_is_kicked_and_others_keep_receiving(hypivisor_factory):
    hv = hypivisor_factory(args=["--dashboard-queue", "64"])
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # a phone on a bad link
    sock.connect(("127.0.0.1", hv.port))
    slow = await websockets.connect(hv.ws_url, sock=sock, max_size=None, ping_interval=None)
    # The fast dashboard and the bridge read continuously (unbounded client-side queue).
    fast = await RegistryClient.connect(hv, max_queue=None)
    bridge = await RegistryClient.connect(hv, max_queue=None)
    try:
        await fast.event("init")
        assert json.loads(await slow.recv())["event"] == "init"
        slow.transport.pause_reading()  # never reads again

        big_cwd = "/home/u/" + "p" * 3900  # ~4 KB per event
        await bridge.call("register", node_params("busy", 9000, cwd=big_cwd))
        t0 = time.monotonic()
        received = 0
        for start in range(0, EVENTS, BATCH):
            # Batches of 50 with the fast dashboard reading each batch before the next is sent: it never
            # falls more than 50 events (200 KB; its queue is 64 plus socket buffers) behind, however loaded the
            # machine running this test is, while the slow one falls behind by all 3,000 (~12 MB).
            for i in range(start, start + BATCH):
                await bridge.send("heartbeat", {"id": "busy", "session_name": f"turn {i}"})
            while received < start + BATCH:
                ev = await fast.event("node_updated", timeout=10)
                assert ev["node"]["session_name"] == f"turn {received}"
                received += 1
        elapsed = time.monotonic() - t0
        assert elapsed < 20, elapsed  # the fast dashboard was never held up for the slow one

        log_deadline = time.monotonic() + 5
        while "too slow" not in hv.log_lines() and time.monotonic() < log_deadline:
            await asyncio.sleep(0.05)
        assert "too slow: 64 events queued" in hv.log_lines()

        slow.transport.resume_reading()
        closed = False
        try:
            for _ in range(EVENTS + 10):  # bounded: drains what the kernel still held, then the close
                await asyncio.wait_for(slow.recv(), 5)
        except ConnectionClosed:
            closed = True
        assert closed
    finally:
        slow.transport.abort()
        await fast.close()
        await bridge.close()


async def test_a_dashboard_that_reads_slowly_but_keeps_up_stays(hypivisor_factory):
    hv = hypivisor_factory(args=["--dashboard-queue", "64"])
    async with await RegistryClient.connect(hv) as dash, await RegistryClient.connect(hv) as bridge:
        await dash.event("init")
        await bridge.call("register", node_params("n", 9001))
        for i in range(40):
            await bridge.call("heartbeat", {"id": "n", "session_name": f"s{i}"})
        await asyncio.sleep(0.3)
        for i in range(40):
            assert (await dash.event("node_updated"))["node"]["session_name"] == f"s{i}"
        assert (await dash.call("list_nodes"))["result"]["nodes"][0]["id"] == "n"


async def test_overflow_closes_with_1008_and_a_reason(hypivisor_factory):
    """A dashboard that stalled, then reads again in time, learns why it is being dropped."""
    hv = hypivisor_factory(args=["--dashboard-queue", "8"])
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", hv.port))
    dash = await websockets.connect(hv.ws_url, sock=sock, max_size=None, ping_interval=None, max_queue=None)
    bridge = await RegistryClient.connect(hv, max_queue=None)
    try:
        assert json.loads(await dash.recv())["event"] == "init"
        dash.transport.pause_reading()
        await bridge.call("register", node_params("n", 9002, cwd="/home/u/" + "q" * 3900))
        for i in range(EVENTS):  # one at a time until the hypivisor gives up on the stalled dashboard
            await bridge.call("heartbeat", {"id": "n", "session_name": f"s{i}"})
            if i % 20 == 0 and "too slow" in hv.log_lines():
                break
        else:
            pytest.fail("the stalled dashboard was never disconnected")
        dash.transport.resume_reading()  # within the close grace period: the close frame gets through
        with pytest.raises(ConnectionClosed) as e:
            for _ in range(EVENTS + 10):
                await asyncio.wait_for(dash.recv(), 5)
        assert e.value.rcvd is not None and e.value.rcvd.code == 1008
        assert e.value.rcvd.reason.startswith("too slow: 8 events queued (")
    finally:
        dash.transport.abort()
        await bridge.close()


async def test_a_burst_of_pipelined_requests_does_not_kick_a_healthy_dashboard(hypivisor_factory):
    hv = hypivisor_factory(args=["--dashboard-queue", "4"])
    async with await RegistryClient.connect(hv, max_queue=None) as dash:
        bridge = await RegistryClient.connect(hv, max_queue=None)
        try:
            await dash.event("init")
            await bridge.call("register", node_params("n", 9003))
            for i in range(300):  # pipelined, never awaited one by one
                await bridge.send("heartbeat", {"id": "n", "session_name": f"s{i}"})
            for i in range(300):
                assert (await dash.event("node_updated", timeout=10))["node"]["session_name"] == f"s{i}"
        finally:
            await bridge.close()
