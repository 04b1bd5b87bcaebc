"""permessage-deflate bombs at the agent port: inflation is bounded before allocating and freed at once.

Unit tests drive ``deflate.BoundedPerMessageDeflate`` with frames made by websockets' own encoder; the
process test sends nine bombs (about 64 KB each, inflating past the 64 MiB frame limit) to a real bridge and
reads its peak resident memory from /proc.
"""

from __future__ import annotations

import asyncio
import base64
import gc
import json
import os
import tracemalloc
from pathlib import Path

import pytest
from websockets.exceptions import ConnectionClosed, PayloadTooBig
from websockets.extensions.permessage_deflate import PerMessageDeflate
from websockets.frames import CONT, TEXT, Frame

from pi_socket.bridge import deflate
from pi_socket.bridge.config import MAX_FRAME_BYTES

from .bridge_helpers import open_client, recv_json
from .fake_shim import FakeShim

MIB = 1024 * 1024


def pair() -> tuple[PerMessageDeflate, deflate.BoundedPerMessageDeflate]:
    """A client-side encoder and the bridge's bounded decoder, as negotiated with context takeover."""
    return PerMessageDeflate(False, False, 15, 12), deflate.BoundedPerMessageDeflate(False, False, 15, 12)


def fragments(encoder: PerMessageDeflate, payload: bytes, parts: int) -> list[Frame]:
    step = -(-len(payload) // parts)
    chunks = [payload[i : i + step] for i in range(0, len(payload), step)]
    out = []
    for i, chunk in enumerate(chunks):
        opcode = TEXT if i == 0 else CONT
        frame = encoder.encode(Frame(opcode, chunk, fin=i == len(chunks) - 1))
        out.append(Frame(frame.opcode, frame.data, frame.fin, i == 0))  # rsv1 on the first frame only
    return out


@pytest.mark.parametrize(
    "payload",
    [
        b'{"type":"prompt","id":"p1","text":"hello"}',
        b"a" * (6 * MIB),  # any message below the floor, whatever its ratio
        base64.b64encode(os.urandom(15 * MIB)),  # attachments: about 1.3x, 20 MiB inflated
    ],
    ids=["small", "compressible-under-floor", "base64-20MiB"],
)
@pytest.mark.parametrize("parts", [1, 3])
def test_ordinary_messages_inflate_unchanged(payload: bytes, parts: int):
    encoder, decoder = pair()
    for _ in range(2):  # twice: the shared context (context takeover) keeps working
        frames = fragments(encoder, payload, parts)
        out = b"".join(bytes(decoder.decode(f, max_size=MAX_FRAME_BYTES).data) for f in frames)
        assert out == payload


def test_a_bomb_is_refused_within_the_bound_and_nothing_stays_allocated():
    encoder, decoder = pair()
    bomb = fragments(encoder, b"\0" * (MAX_FRAME_BYTES + 1), 1)[0]
    bound = deflate.inflate_limit(len(bomb.data), MAX_FRAME_BYTES, deflate.DEFAULT_FLOOR, deflate.DEFAULT_RATIO)
    assert len(bomb.data) < 128 * 1024 and bound < 16 * MIB
    gc.collect()
    tracemalloc.start()
    try:
        with pytest.raises(PayloadTooBig) as info:
            decoder.decode(bomb, max_size=MAX_FRAME_BYTES)
        held, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < bound + 2 * deflate.STEP, f"peak {peak / MIB:.1f} MiB while inflating a bomb"
    assert held < 2 * deflate.STEP, f"{held / MIB:.1f} MiB still held while the error is alive"
    del info


def test_the_ratio_counts_the_whole_fragmented_message():
    encoder, decoder = pair()
    frames = fragments(encoder, b"\0" * (40 * MIB), 8)  # each fragment alone is under the floor
    with pytest.raises(PayloadTooBig):
        for f in frames:
            decoder.decode(f, max_size=MAX_FRAME_BYTES)


def _rss_peak_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


@pytest.fixture
async def bridge(tmp_path):
    fake = FakeShim(tmp_path)
    await fake.start()
    yield fake
    await fake.stop()


async def test_nine_bombs_close_1009_and_the_bridge_peak_memory_stays_small(bridge: FakeShim):
    assert bridge.proc is not None
    pid = bridge.proc.pid
    bomb = "\0" * (MAX_FRAME_BYTES + 1)
    async with await open_client(bridge) as ws:
        assert (await recv_json(ws))["type"] == "init_state"
        assert ws.protocol.extensions, "permessage-deflate was not negotiated"
    await asyncio.sleep(0.5)
    baseline = _rss_peak_kib(pid)
    for _ in range(9):
        async with await open_client(bridge) as ws:
            assert (await recv_json(ws))["type"] == "init_state"
            await ws.send(bomb)
            with pytest.raises(ConnectionClosed):
                for _ in range(10):  # bounded: the close arrives after at most a few queued frames
                    await asyncio.wait_for(ws.recv(), 10)
            assert ws.close_code == 1009
    growth_mib = (_rss_peak_kib(pid) - baseline) / 1024
    print(f"RESULT bridge peak RSS growth over 9 deflate bombs: {growth_mib:.1f} MiB")
    assert growth_mib < 40, f"peak RSS grew {growth_mib:.1f} MiB over 9 bombs"
    # Still serving, and a large ordinary message (about 1.3x compression) inflates and is answered.
    async with await open_client(bridge) as ws:
        assert (await recv_json(ws))["type"] == "init_state"
        await ws.send(json.dumps({"type": "nonsense", "pad": base64.b64encode(os.urandom(9 * MIB)).decode()}))
        answer = await recv_json(ws, timeout=20)
        assert answer["type"] == "error", answer
