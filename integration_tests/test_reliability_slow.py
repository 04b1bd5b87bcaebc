"""A slow consumer end to end: a dashboard that stops reading its proxied agent link (specs/reliability.md).

Real bridge (scripted shim) → real hypivisor proxy → a client that never reads again, while a fast client
(also through the proxy) reads everything. The proxy's flow control pushes back on the bridge, the bridge's
per-client budget closes the slow client with 1008, memory of both processes stays bounded, and the fast
client receives every frame in order. (Each side alone is covered by ``test_hypivisor_slow_dashboard.py``,
``test_hypivisor_proxy.py::test_flow_control_a_slow_agent_does_not_make_the_relay_buffer`` and
``pi_socket/tests/test_bridge_link.py::test_slow_client_is_dropped_and_others_keep_receiving``.)
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from pathlib import Path

import websockets
from websockets.exceptions import ConnectionClosed

from integration_tests.harness.hypivisor_proc import RegistryClient
from pi_socket.tests.fake_shim import FakeShim


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def test_a_stalled_proxied_client_is_dropped_memory_stays_bounded_others_get_everything(
    hypivisor_factory, tmp_path
):
    hv = hypivisor_factory()
    fake = FakeShim(tmp_path, node_id="streamer", env={"HYPIVISOR_WS": hv.ws_url})
    await fake.start()
    try:
        async with await RegistryClient.connect(hv) as dash:
            init = await dash.event("init")
            if not init["nodes"]:
                await dash.event("node_joined", timeout=10)
        url = hv.agent_url("streamer")
        slow = await websockets.connect(url, max_queue=1, compression=None, open_timeout=5)
        slow.transport.pause_reading()  # stalls: the kernel buffers fill, then the proxy pushes back
        fast = await websockets.connect(url, max_size=None, compression=None, open_timeout=5)
        assert json.loads(await fast.recv())["type"] == "init_state"
        rss0 = (rss_mb(hv.proc.pid), rss_mb(fake.proc.pid))
        filler = "y" * 16_000
        total = 3000  # ~48 MB of events: more than every buffer and budget on the way

        async def read_all() -> list[int]:
            got = []
            while len(got) < total:
                m = json.loads(await asyncio.wait_for(fast.recv(), 20))
                if m.get("type") == "tool_execution_update":
                    got.append(m["i"])
            return got

        reader = asyncio.create_task(read_all())
        peak = list(rss0)
        t0 = time.monotonic()
        for i in range(total):
            await fake.emit(
                {
                    "type": "tool_execution_update",
                    "toolCallId": "t",
                    "toolName": "bash",
                    "i": i,
                    "partialResult": {"content": [{"type": "text", "text": filler}]},
                }
            )
            if i % 20 == 19:
                await asyncio.sleep(0.005)
                peak = [max(peak[0], rss_mb(hv.proc.pid)), max(peak[1], rss_mb(fake.proc.pid))]
        assert await asyncio.wait_for(reader, 60) == list(range(total)), "the fast client lost or reordered frames"
        elapsed = time.monotonic() - t0
        growth = (peak[0] - rss0[0], peak[1] - rss0[1])
        assert growth[0] < 20, f"hypivisor grew {growth[0]:.0f} MB"  # the splice holds ~256 KB per side
        assert growth[1] < 80, f"bridge grew {growth[1]:.0f} MB"  # at most one 32 MiB client budget + slack
        assert any(r.get("msg") == "closing slow client" for r in fake.log_lines())
        slow.transport.resume_reading()
        with contextlib.suppress(ConnectionClosed, asyncio.TimeoutError):
            for _ in range(total + 1):
                await asyncio.wait_for(slow.recv(), 5)
        assert slow.close_code == 1008, slow.close_code
        await fast.close()
        print(
            f"RESULT slow proxied client: {total} frames in {elapsed:.1f}s to the fast client, slow one closed "
            f"1008, RSS growth hypivisor {growth[0]:.1f} MB, bridge {growth[1]:.1f} MB"
        )
    finally:
        await fake.stop()
