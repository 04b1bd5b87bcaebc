"""Target 8: Pi-DE's inbox with 1,000 items across 200 agents, in headless Debian Chromium via Playwright, served
by a real hypivisor. The agents register and report their attention the way bridges do (one registry connection
for all of them: ``integration_tests/test_pide_inbox.seed_inbox``).

* open the inbox from the header (a click on "Inbox") until its first rows are drawn (the frame after they are
  in the DOM), the page already connected with the 1,000 items loaded; median of 5 opens, each a fresh page
  load, paired with opening the same page's empty roster → spawn dialog (the floor: what any screen change costs);
* the list_attention answer: its size and the time from the registry link's open to the count in the header.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from bench.common import Row, median

FLOOR_PROBE = """async () => {
  const t0 = performance.now();
  [...document.querySelectorAll('button')].find((b) => b.textContent.includes('Spawn agent')).click();
  while (!document.querySelector('[role=dialog]')) await new Promise(requestAnimationFrame);
  await new Promise(requestAnimationFrame);
  return performance.now() - t0;
}"""


def run(smoke: bool, log=print) -> list[Row]:
    from playwright.sync_api import sync_playwright

    from integration_tests.harness.hypivisor_proc import HypivisorProc
    from integration_tests.harness.pide import CHROMIUM, CHROMIUM_ARGS, dashboard_url, ensure_dist
    from integration_tests.test_pide_inbox import OPEN_PROBE, seed_inbox

    agents_n, per_agent = (20, 5) if smoke else (200, 5)
    total = agents_n * per_agent
    loads = 1 if smoke else 5
    tmp = Path(tempfile.mkdtemp(prefix="bench-inbox-"))
    hv = HypivisorProc(home=tmp, env={"HYPI_DASHBOARD_DIR": str(ensure_dist())})
    opens: list[float] = []
    floors: list[float] = []
    loaded: list[float] = []
    bulk = None
    try:
        hv.start()
        bulk = seed_inbox(hv, agents_n, per_agent)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                page = browser.new_context(viewport={"width": 1440, "height": 900}).new_page()
                page.set_default_timeout(30_000)
                for _ in range(loads):
                    page.goto(dashboard_url(hv))
                    page.wait_for_selector("[data-testid=roster]")
                    floors.append(page.evaluate(FLOOR_PROBE))
                    page.goto(dashboard_url(hv) + "#/")
                    page.reload()
                    page.wait_for_selector(f"[data-testid=inbox-link] >> text={total}")
                    loaded.append(page.evaluate("performance.now()"))
                    opens.append(page.evaluate(OPEN_PROBE))
            finally:
                browser.close()
    finally:
        if bulk is not None:
            bulk.close()
        hv.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    log(f"  inbox: opens {[round(x) for x in opens]} ms (spawn dialog: {[round(x) for x in floors]} ms)")
    sec = "8 Pi-DE inbox"
    ratio = median([o / f for o, f in zip(opens, floors, strict=False) if f > 0])
    return [
        Row(
            sec,
            f"open the inbox with {total:,} items across {agents_n} agents (first rows drawn)",
            median(opens),
            "ms",
            "open the spawn dialog",
            median(floors),
            target="<= 300 ms",
            met=median(opens) <= 300,
            reps=loads,
            paired_ratio=ratio,
            note=f"{min(300, total)} rows rendered, more on request",
        ),
        Row(
            sec,
            f"page load until the header counts {total:,} items",
            median(loaded),
            "ms",
            note="navigation start to the count in the header: roster, list_attention and first render",
            reps=loads,
        ),
    ]
