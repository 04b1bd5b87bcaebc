"""Target 10 (watchdogs issue): the detectors' CPU per pi event against the bridge's own CPU per forwarded event.

The same recorded pi events (``pi_socket/tests/fixtures``: two real runs of pi 0.73.1, a plain reply and a tool
call), repeated, in the same run:
- the bridge's CPU per forwarded event: a real bridge process (``python -m pi_socket.bridge``, driven by the
  bridge tests' stand-in shim) forwarding them to one connected client; its CPU time (``/proc``) over the
  events, which includes the detectors it runs;
- the detectors' CPU per event: ``Notice.observe`` (the inbox tracker and the watchdogs: what the bridge adds),
  timed in this process on the same events. An in-process reference (decode, ``apply_event``, the frame) is
  reported beside it, for scale.
Target: detectors ≤ 5 % of the bridge's CPU per forwarded event.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import orjson

from bench.common import Row, median
from pi_socket.bridge.frames import frame
from pi_socket.bridge.notice import Notice
from pi_socket.bridge.state import AgentState
from pi_socket.protocol import PiEvent
from pi_socket.tests.fake_shim import FakeShim, sample_events

SECTION = "10 watchdogs"


def _lines() -> list[bytes]:
    return [orjson.dumps({"t": "event", "e": e}) for e in sample_events()]


def _bridge_pass(lines: list[bytes]) -> None:
    state = AgentState()
    for raw in lines:
        event = orjson.loads(raw)["e"]
        effect = state.apply_event(event)
        if effect.forward is not None:
            frame(PiEvent.model_validate(effect.forward))


def _detector_pass(events: list[dict]) -> None:
    notice = Notice()
    now = 1_700_000_000.0
    for event in events:
        now += 0.01
        notice.observe(event, True, now)


def _cpu_per_event(fn: Callable[[], None], events: int, loops: int) -> float:
    start = time.process_time()
    for _ in range(loops):
        fn()
    return (time.process_time() - start) / (loops * events) * 1e6  # µs per event


def _proc_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


async def _real_bridge(events: list[dict], rounds: int) -> float:
    """CPU seconds per forwarded event of a real bridge process with one client."""
    import websockets

    with tempfile.TemporaryDirectory(prefix="bench-wd-") as tmp:
        fake = FakeShim(Path(tmp))
        await fake.start()
        try:
            async with websockets.connect(fake.url, max_size=None) as ws:
                await ws.recv()  # init_state
                assert fake.proc is not None
                before = _proc_cpu(fake.proc.pid)
                for _ in range(rounds):
                    await fake.emit(*events)
                want, got = rounds * len(events), 0
                deadline = time.monotonic() + 60
                while got < want and time.monotonic() < deadline:
                    try:
                        await asyncio.wait_for(ws.recv(), 5)
                    except TimeoutError:
                        break
                    got += 1
                await asyncio.sleep(0.2)
                return (_proc_cpu(fake.proc.pid) - before) / max(1, got)
        finally:
            await fake.stop()


def run(smoke: bool, reps: int | None, log: Callable[[str], None]) -> list[Row]:
    lines = _lines()
    events = [orjson.loads(raw)["e"] for raw in lines]
    loops = 20 if smoke else 400
    rounds = 20 if smoke else 200
    reps = reps or (1 if smoke else 3)
    real, inproc, detectors = [], [], []
    for _ in range(reps):
        real.append(asyncio.run(_real_bridge(events, rounds)) * 1e6)
        inproc.append(_cpu_per_event(lambda: _bridge_pass(lines), len(lines), loops))
        detectors.append(_cpu_per_event(lambda: _detector_pass(events), len(events), loops))
    r, b, d = median(real), median(inproc), median(detectors)
    ratio = d / r if r else float("nan")
    log(f"watchdogs: bridge process {r:.1f} µs/event (in-process core {b:.1f}), detectors {d:.2f} µs ({ratio:.3f}x)")
    return [
        Row(
            SECTION,
            "bridge process CPU per forwarded event",
            r,
            "µs",
            note=f"{len(events)} recorded events x {rounds}, one client",
            reps=reps,
        ),  # fmt: skip
        Row(SECTION, "bridge core per event (in-process)", b, "µs", note="decode, apply_event, frame", reps=reps),
        Row(
            SECTION,
            "detectors CPU per event",
            d,
            "µs",
            ref="bridge process per event",
            ref_value=r,
            target="<= 0.05x bridge",
            met=ratio <= 0.05,
            reps=reps,
        ),  # fmt: skip
    ]
