"""Target 5: history on a real bridge process (``python -m pi_socket.bridge``) fed by the bridge tests'
stand-in shim (``pi_socket/tests/fake_shim.py``), for sessions of 1,000 and 10,000 messages and one of
5 MB.

Per session: time from the bridge's start until a client holds its ``init_state`` (the ``history``
request over stdio included), ``init_state`` on a fresh connection (connect -> frame parsed, bytes),
walking the whole history back with ``fetch_history`` pages of 100, and the in-process cost of the
bridge's own modules (mirror build, ``init_state`` build + serialise, one page).
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import time
from pathlib import Path

import orjson
import websockets

from bench.common import Row, median
from pi_socket.tests.fake_shim import FakeShim, assistant_message, user_message


def session(n: int, size: int) -> list[dict]:
    """n alternating user/assistant messages of about ``size`` bytes of text each."""
    word = "lorem ipsum dolor sit amet, consectetur adipiscing elit. "
    out = []
    for i in range(n):
        text = f"m{i}: " + (word * (size // len(word) + 1))[:size]
        out.append(
            user_message(text, 1_700_000_000_000 + i) if i % 2 == 0 else assistant_message(text, 1_700_000_000_000 + i)
        )
    return out


async def recv_json(ws, want: str, timeout: float = 60) -> tuple[dict, int]:
    deadline = time.monotonic() + timeout
    while True:
        raw = await asyncio.wait_for(ws.recv(), max(0.01, deadline - time.monotonic()))
        msg = orjson.loads(raw)
        if msg.get("type") == want:
            return msg, len(raw.encode() if isinstance(raw, str) else raw)


async def one_session(label: str, msgs: list[dict], reps: int, starts: int, log) -> dict:
    """``starts`` bridge start-ups (each timed to its first init_state); on the first bridge ``reps`` new
    connections, each taking its init_state and walking the whole history back."""
    out: dict = {"label": label, "n": len(msgs), "bytes": len(orjson.dumps(msgs))}
    ready, init_ms, sizes, page_ms, walks = [], [], [], [], []
    for start in range(starts):
        tmp = Path(tempfile.mkdtemp(prefix="bench-history-"))
        shim = FakeShim(tmp, history=msgs)
        try:
            t0 = time.monotonic()
            await shim.start(timeout=60)
            async with websockets.connect(shim.url, max_size=None, compression=None, open_timeout=30) as ws:
                await recv_json(ws, "init_state")
            ready.append(1000 * (time.monotonic() - t0))
            for _ in range(reps if start == 0 else 0):
                t = time.monotonic()
                async with websockets.connect(shim.url, max_size=None, compression=None, open_timeout=30) as ws:
                    init, nbytes = await recv_json(ws, "init_state")
                    init_ms.append(1000 * (time.monotonic() - t))
                    sizes.append(nbytes)
                    # walk back to the first message
                    cursor, pages, seen = init["cursor"], 0, len(init["messages"])
                    tw = time.monotonic()
                    while cursor > 0 and pages < 10_000:
                        t = time.monotonic()
                        await ws.send(orjson.dumps({"type": "fetch_history", "before": cursor, "limit": 100}).decode())
                        page, _ = await recv_json(ws, "history_page")
                        page_ms.append(1000 * (time.monotonic() - t))
                        cursor, pages, seen = page["cursor"], pages + 1, seen + len(page["messages"])
                    walks.append(1000 * (time.monotonic() - tw))
                assert seen == len(msgs), (seen, len(msgs))
        finally:
            await shim.stop()
            shutil.rmtree(tmp, ignore_errors=True)
    out.update(
        ready_ms=median(ready),
        ready_range=(min(ready), max(ready)),
        starts=len(ready),
        init_ms=median(init_ms),
        init_bytes=median(sizes),
        init_msgs=len(init["messages"]),
        pages=pages,
        page_n=len(page_ms),
        page_ms=median(page_ms) if page_ms else 0.0,
        walk_ms=median(walks),
        walks=len(walks),
    )
    out.update(in_process(msgs))
    log(
        f"  history {label}: "
        + ", ".join(
            f"{k}={v:.1f}" if isinstance(v, float) else f"{k}={v}" for k, v in out.items() if k != "ready_range"
        )
    )
    return out


def in_process(msgs: list[dict]) -> dict:
    """The bridge's own modules without I/O: mirror build, init_state build + serialise, one page."""
    from pi_socket.bridge.history import HistoryMirror
    from pi_socket.bridge.state import AgentState
    from pi_socket.protocol import AgentNode

    t = time.perf_counter()
    state = AgentState()
    state.begin_history()
    state.finish_history(msgs)
    mirror_ms = 1000 * (time.perf_counter() - t)
    node = AgentNode(id="n", machine="m", cwd="/", port=1, pid=1, pi_version="1.5.2")
    builds = []
    for _ in range(3):
        t = time.perf_counter()
        frame = state.init_state(node).model_dump_json()
        builds.append(1000 * (time.perf_counter() - t))
    h: HistoryMirror = state.history
    t = time.perf_counter()
    for before in range(len(msgs), 0, -100):
        h.page(before, 100, 500 * 1024)
    per_page = 1000 * (time.perf_counter() - t) / max(1, len(range(len(msgs), 0, -100)))
    return {"mirror_ms": mirror_ms, "build_ms": median(builds), "page_build_ms": per_page, "frame_len": len(frame)}


async def run(smoke: bool, log=print, reps: int | None = None) -> list[Row]:
    """``reps`` new connections (init_state + whole walk) per session (default 5, smoke 2) and
    ``min(reps, 3)`` bridge start-ups (smoke 1); rows give medians."""
    if smoke:
        cases = [
            ("1,000 messages", session(300, 2000)),
            ("10,000 messages", session(2000, 300)),
            ("5 MB", session(40, 25_000)),
        ]
    else:
        cases = [
            ("1,000 messages", session(1000, 300)),
            ("10,000 messages", session(10_000, 300)),
            ("5 MB", session(200, 25_000)),
        ]
    reps = reps or (2 if smoke else 5)
    starts = 1 if smoke else min(reps, 3)
    rows: list[Row] = []
    sec = "5 history"
    for label, msgs in cases:
        r = await one_session(label, msgs, reps, starts, log)
        size = f"{r['n']:,} msgs, {r['bytes'] / 1e6:.1f} MB"
        rows += [
            Row(
                sec,
                f"{label}: bridge start -> first init_state ({size})",
                r["ready_ms"],
                "ms",
                reps=r["starts"],
                note="includes the stdio history transfer"
                + (f"; range {r['ready_range'][0]:.0f}–{r['ready_range'][1]:.0f} ms" if r["starts"] > 1 else ""),
                extra={"key": f"ready {label}"},
            ),
            Row(
                sec,
                f"{label}: init_state on a new connection",
                r["init_ms"],
                "ms",
                reps=reps,
                note=f"{r['init_bytes'] / 1024:.0f} KiB, {r['init_msgs']:,} newest messages",
                extra={"key": f"init {label}"},
            ),
            Row(
                sec,
                f"{label}: init_state build + serialise in the bridge",
                r["build_ms"],
                "ms",
                reps=3,
                note=f"mirror build {r['mirror_ms']:.0f} ms",
                extra={"key": f"build {label}"},
            ),
            Row(
                sec,
                f"{label}: fetch_history page of 100, round trip",
                r["page_ms"],
                "ms",
                reps=r["page_n"],
                note=f"median of {r['page_n']} pages; whole history ({r['pages']} pages) walked in "
                f"{r['walk_ms']:.0f} ms (median of {r['walks']} walks); "
                f"page slice {r['page_build_ms'] * 1000:.0f} µs",
                extra={"key": f"page {label}"},
            ),
        ]
    # Each figure against the same figure for the smallest session of this run: how the cost scales
    # (init_state is capped at 500 KiB and pages are 100 messages, so both should stay near 1x).
    first = cases[0][0]
    base = {r.extra["key"].split(" ", 1)[0]: r.value for r in rows if r.extra["key"].endswith(" " + first)}
    for r in rows:
        r.ref, r.ref_value = first, base.get(r.extra["key"].split(" ", 1)[0])
    return rows
