"""Target 6: Pi-DE (the built ``pi_de/dist``) in headless Debian Chromium via Playwright, served by a real
hypivisor, the conversation served through its ``/ws/agent/<id>`` proxy by a scripted agent registered the
way a bridge registers (``integration_tests/harness/pide.RegisteredAgent``, as the Pi-DE perf test).

* open a 10,000-message conversation (all of it in ``init_state``: the worst case; the bridge itself sends
  at most 500 KiB) until the newest message is on screen; median of 3 page loads, each paired with opening
  a 12-message conversation on the same page (the floor: what opening any conversation costs);
* stream tokens at 100/s for 3 s and record every animation frame interval (requestAnimationFrame), paired
  with the intervals of the same page idle just before (the floor: the display's own frame clock); the
  main-thread work per frame is Chromium's own ``TaskDuration`` (DevTools Performance metrics) over the
  streaming window divided by the frames drawn;
* bundle size: every JS file of ``pi_de/dist``, gzip -9, against React's own runtime (react, react-dom
  client, scheduler production builds from ``pi_de/node_modules``) compressed the same way.
"""

from __future__ import annotations

import gzip
import shutil
import statistics
import tempfile
from pathlib import Path

from bench.common import Row, median, pct

FRAME_PROBE = """() => {
  window.__frames = [];
  let last = performance.now();
  const tick = (t) => { window.__frames.push(t - last); last = t; if (window.__frames.length < 20000) requestAnimationFrame(tick); };
  requestAnimationFrame(tick);
}"""


REACT_RUNTIME = (
    "react/cjs/react.production.js",
    "react-dom/cjs/react-dom-client.production.js",
    "scheduler/cjs/scheduler.production.js",
)


def bundle() -> tuple[int, int, int | None]:
    """(raw, gzip -9) bytes of Pi-DE's JS and gzip -9 bytes of the React runtime alone (None if not found)."""
    from integration_tests.harness.pide import ensure_dist

    js = sorted(Path(ensure_dist()).rglob("*.js"))
    raw = sum(p.stat().st_size for p in js)
    gz = sum(len(gzip.compress(p.read_bytes(), 9)) for p in js)
    mods = Path(__file__).resolve().parents[1] / "pi_de" / "node_modules"
    runtime = [mods / f for f in REACT_RUNTIME]
    react = sum(len(gzip.compress(p.read_bytes(), 9)) for p in runtime) if all(p.exists() for p in runtime) else None
    return raw, gz, react


def run(smoke: bool, log=print) -> list[Row]:
    from playwright.sync_api import sync_playwright

    from integration_tests.harness.hypivisor_proc import HypivisorProc
    from integration_tests.harness.pide import (
        CHROMIUM,
        CHROMIUM_ARGS,
        RegisteredAgent,
        assistant_msg,
        dashboard_url,
        ensure_dist,
    )
    from integration_tests.test_pide_perf import conversation, main_thread_ms, open_conversation

    n = 500 if smoke else 10_000
    rate, secs = 100, (1.0 if smoke else 3.0)
    loads = 1 if smoke else 3
    raw, gz, react_gz = bundle()
    tmp = Path(tempfile.mkdtemp(prefix="bench-pide-"))
    hv = HypivisorProc(home=tmp, env={"HYPI_DASHBOARD_DIR": str(ensure_dist())})
    agent = None
    small = None
    opens: list[float] = []
    floor_opens: list[float] = []
    frames: list[float] = []
    idle_frames: list[float] = []
    busy = 0.0
    try:
        hv.start()
        agent = RegisteredAgent(hv, "n-big", "/srv/big", messages=conversation(n), init_limit=n)
        small = RegisteredAgent(hv, "n-small", "/srv/small", messages=conversation(12), init_limit=12)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
                page.set_default_timeout(20_000)
                for _ in range(loads):
                    for node, last, out in (("n-small", 11, floor_opens), ("n-big", n - 1, opens)):
                        out.append(open_conversation(page, dashboard_url(hv), node, last))
                page.wait_for_timeout(500)
                cdp = page.context.new_cdp_session(page)
                cdp.send("Performance.enable")
                page.evaluate(FRAME_PROBE)
                page.wait_for_timeout(int(1000 * min(secs, 2.0)))
                idle_frames = page.evaluate("window.__frames.slice(2)")
                page.evaluate(FRAME_PROBE)
                busy0 = main_thread_ms(cdp)
                agent.push(
                    {"type": "agent_start"},
                    {"type": "message_start", "message": {"role": "assistant", "content": []}},
                    {"type": "message_update", "assistantMessageEvent": {"type": "text_start", "contentIndex": 0}},
                )
                count = int(rate * secs)
                agent.push(
                    *[
                        {
                            "type": "message_update",
                            "assistantMessageEvent": {"type": "text_delta", "contentIndex": 0, "delta": f"tok{i} "},
                        }
                        for i in range(count)
                    ],
                    delay=1 / rate,
                )
                page.wait_for_selector(f"text=tok{count - 1}")
                busy = (main_thread_ms(cdp) - busy0) / 1000
                frames = page.evaluate("window.__frames.slice(2)")
                agent.push({"type": "message_end", "message": assistant_msg("streamed DONE")}, {"type": "agent_end"})
                page.wait_for_selector("text=streamed DONE")
            finally:
                browser.close()
    finally:
        for a in (agent, small):
            if a is not None:
                a.close()
        hv.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    p95, idle_p95 = pct(frames, 95), pct(idle_frames, 95)
    per_frame = 1000 * busy / max(1, len(frames))
    dropped = sum(f > 20 for f in frames) / max(1, len(frames))
    log(
        f"  pide: opens {[round(x, 2) for x in opens]} s (12 messages: {[round(x, 2) for x in floor_opens]}); "
        f"{len(frames)} frames median {statistics.median(frames):.1f} p95 {p95:.1f} max {max(frames):.1f} ms "
        f"(idle p95 {idle_p95:.1f}); main thread {per_frame:.2f} ms per frame"
    )
    sec = "6 Pi-DE"
    open_ratio = median([big / floor for big, floor in zip(opens, floor_opens, strict=False) if floor > 0])
    return [
        Row(
            sec,
            f"open a {n:,}-message conversation (newest on screen)",
            median(opens) * 1000,
            "ms",
            "12-message conversation",
            median(floor_opens) * 1000,
            target="<= 1,000 ms",
            met=median(opens) <= 1.0,
            reps=loads,
            paired_ratio=open_ratio,
            note=f"opening a 12-message conversation on the same page: {median(floor_opens) * 1000:.0f} ms",
        ),
        Row(
            sec,
            f"main-thread work per frame while streaming {rate} tokens/s",
            per_frame,
            "ms",
            "frame budget",
            1000 / 60,
            target="<= 16 ms",
            met=per_frame <= 16,
            reps=len(frames),
            note=f"Chromium TaskDuration {1000 * busy:.0f} ms over {len(frames)} frames",
        ),
        Row(
            sec,
            "frame interval while streaming, p95",
            p95,
            "ms",
            "idle page",
            idle_p95,
            target="<= 16.7 ms (60 fps)",
            met=p95 <= 16.7 * 1.05,
            reps=len(frames),
            note=f"median {statistics.median(frames):.1f} ms; {100 * dropped:.1f}% of frames > 20 ms; "
            f"max {max(frames):.0f} ms; idle p95 {idle_p95:.1f} ms",
        ),
        Row(
            sec,
            "bundle: JS of pi_de/dist, gzip -9",
            gz / 1024,
            "KiB",
            "React runtime alone",
            react_gz / 1024 if react_gz else None,
            note=f"{raw / 1024:.0f} KiB uncompressed"
            + (f"; react + react-dom client + scheduler: {react_gz / 1024:.0f} KiB gzip" if react_gz else ""),
        ),
    ]
