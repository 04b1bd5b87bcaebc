"""Target 6: Pi-DE (the built ``pi_de/dist``) in headless Debian Chromium via Playwright, served by a real
hypivisor, the conversation served through its ``/ws/agent/<id>`` proxy by a scripted agent registered the
way a bridge registers (``integration_tests/test_pide_helpers.RegisteredAgent``, as the Pi-DE perf test).

* open a 10,000-message conversation (all of it in ``init_state``: the worst case; the bridge itself sends
  at most 500 KiB) until the newest message is on screen; median of 3 page loads;
* stream tokens at 100/s for 3 s and record every animation frame interval (requestAnimationFrame);
* bundle size: every JS file of ``pi_de/dist``, gzip -9.
"""

from __future__ import annotations

import gzip
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from bench.common import Row, median, pct

FRAME_PROBE = """() => {
  window.__frames = [];
  let last = performance.now();
  const tick = (t) => { window.__frames.push(t - last); last = t; if (window.__frames.length < 20000) requestAnimationFrame(tick); };
  requestAnimationFrame(tick);
}"""


def bundle() -> tuple[int, int]:
    from integration_tests.test_pide_helpers import ensure_dist

    js = sorted(Path(ensure_dist()).rglob("*.js"))
    raw = sum(p.stat().st_size for p in js)
    gz = sum(len(gzip.compress(p.read_bytes(), 9)) for p in js)
    return raw, gz


def run(smoke: bool, log=print) -> list[Row]:
    from playwright.sync_api import sync_playwright

    from integration_tests.harness.hypivisor_proc import HypivisorProc
    from integration_tests.test_pide_helpers import (CHROMIUM, CHROMIUM_ARGS, RegisteredAgent, assistant_msg,
                                                     dashboard_url, ensure_dist)
    from integration_tests.test_pide_perf import conversation

    n = 500 if smoke else 10_000
    rate, secs = 100, (1.0 if smoke else 3.0)
    loads = 1 if smoke else 3
    raw, gz = bundle()
    tmp = Path(tempfile.mkdtemp(prefix="bench-pide-"))
    hv = HypivisorProc(home=tmp, env={"HYPI_DASHBOARD_DIR": str(ensure_dist())})
    agent = None
    opens: list[float] = []
    frames: list[float] = []
    try:
        hv.start()
        agent = RegisteredAgent(hv, "n-big", "/srv/big", messages=conversation(n), init_limit=n)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
                page.set_default_timeout(20_000)
                for _ in range(loads):
                    page.goto(dashboard_url(hv))
                    page.wait_for_selector("[data-node-id='n-big']")
                    t0 = time.monotonic()
                    page.click("[data-node-id='n-big']")
                    page.wait_for_selector(f"text=LAST-{n - 1}")
                    opens.append(time.monotonic() - t0)
                page.wait_for_timeout(500)
                page.evaluate(FRAME_PROBE)
                agent.push({"type": "agent_start"},
                           {"type": "message_start", "message": {"role": "assistant", "content": []}},
                           {"type": "message_update", "assistantMessageEvent": {"type": "text_start", "contentIndex": 0}})
                count = int(rate * secs)
                agent.push(*[{"type": "message_update", "assistantMessageEvent": {
                    "type": "text_delta", "contentIndex": 0, "delta": f"tok{i} "}} for i in range(count)],
                    delay=1 / rate)
                page.wait_for_selector(f"text=tok{count - 1}")
                frames = page.evaluate("window.__frames.slice(2)")
                agent.push({"type": "message_end", "message": assistant_msg("streamed DONE")}, {"type": "agent_end"})
                page.wait_for_selector("text=streamed DONE")
            finally:
                browser.close()
    finally:
        if agent is not None:
            agent.close()
        hv.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    p95 = pct(frames, 95)
    dropped = sum(f > 20 for f in frames) / max(1, len(frames))
    log(f"  pide: opens {[round(x, 2) for x in opens]} s; {len(frames)} frames median {statistics.median(frames):.1f} "
        f"p95 {p95:.1f} max {max(frames):.1f} ms")
    sec = "6 Pi-DE"
    return [
        Row(sec, f"open a {n:,}-message conversation (newest on screen)", median(opens) * 1000, "ms",
            target="<= 1,000 ms", met=median(opens) <= 1.0, reps=loads),
        Row(sec, f"frame interval while streaming {rate} tokens/s, median", statistics.median(frames), "ms",
            reps=len(frames)),
        Row(sec, "frame interval while streaming, p95", p95, "ms", target="<= 16.7 ms (60 fps)",
            met=p95 <= 16.7 * 1.05, reps=len(frames), note=f"{100 * dropped:.1f}% of frames > 20 ms; max {max(frames):.0f} ms"),
        Row(sec, "bundle: JS of pi_de/dist, gzip -9", gz / 1024, "KiB", note=f"{raw / 1024:.0f} KiB uncompressed"),
    ]
