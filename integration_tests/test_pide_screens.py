"""Screenshots of Pi-DE's main screens with real pi agents, for people to look at (#20).

A real hypivisor serves the built dashboard; real pi agents (fake LLM, the shim installed as a user installs it) fill
it: one that ran a bash call, an edit (a diff) and answered in markdown with a code block; one, asked about writes,
whose finished run and waiting approval fill the inbox; a past ``pi -p`` session for the Sessions screen; a spending
budget. Each main screen (roster + conversation, inbox, spawn dialog, sessions, budget) is saved at 1440x900 and at
390x844 (a phone), in the dark and the light theme, as ``<screen>-<desktop|phone>-<theme>.png`` in
``HYPI_SCREENSHOT_DIR`` when set, else in the test's temp dir (its path is printed).

Besides saving them, the test checks what a person would see first: no text of the screen's main element is cut off
or spills out of the viewport horizontally, no line of an agent card is cut off, every control in view on the phone is
a 40x40 px tap target, the budget chart's labels are readable, and nothing shows a page error.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from integration_tests.harness.pide import dashboard_url, ensure_dist
from integration_tests.test_sessions import hypivisor_for, run_print

pytestmark = [pytest.mark.browser, pytest.mark.pi, pytest.mark.slow]

PI = "0.73.1"
DEVICES = {
    "desktop": {"viewport": {"width": 1440, "height": 900}},
    "phone": {
        "viewport": {"width": 390, "height": 844},
        "has_touch": True,
        "is_mobile": True,
        "device_scale_factor": 2,
    },
}
THEMES = ("dark", "light")
RUN_MS = 60_000

NOTES = "# Release notes\n\nversion = 1.4.0\nchannel = beta\nowner = platform team\n"
ANSWER = """## What changed

The release is now **1.5.0** on the `stable` channel:

- `notes.md` bumps the version and the channel
- nothing else refers to the old version

| file | lines |
|---|---:|
| notes.md | 2 |

```python
def release(version: str) -> str:
    return f"v{version}"
```
"""


def screenshot_dir(tmp_path: Path) -> Path:
    d = Path(os.environ.get("HYPI_SCREENSHOT_DIR") or tmp_path / "screens")
    d.mkdir(parents=True, exist_ok=True)
    return d


def overflowing(page) -> list[str]:
    """Elements of the page wider than the viewport (a horizontal scroll a person would have to do)."""
    return page.evaluate(
        """() => {
          const w = document.documentElement.clientWidth, out = [];
          for (const el of document.querySelectorAll('body *')) {
            const r = el.getBoundingClientRect();
            if (r.width === 0 || r.height === 0) continue;
            if (getComputedStyle(el).position === 'fixed' && r.right <= w + 1) continue;
            if (r.right > w + 1 && !el.closest('pre, .diff, table, [data-scroll-x]')) {
              let p = el.parentElement, clipped = false;
              for (; p; p = p.parentElement) {
                const s = getComputedStyle(p);
                if (/(auto|scroll|hidden|clip)/.test(s.overflowX) && p.getBoundingClientRect().right <= w + 1) { clipped = true; break; }
              }
              if (!clipped) out.push(`${el.tagName.toLowerCase()}.${el.className} right=${Math.round(r.right)}`);
            }
          }
          return out.slice(0, 10);
        }"""
    )


def header_links_differ(page) -> list[str]:
    """The header's links (Inbox, Budget, Sessions) in different sizes or on different lines."""
    return page.evaluate(
        """() => {
          const links = [...document.querySelectorAll('.brand .link-btn')];
          const looks = new Set(links.map((l) => getComputedStyle(l).fontSize + ' ' + getComputedStyle(l).fontWeight));
          const lines = new Set(links.map((l) => Math.round(l.getBoundingClientRect().top)));
          return looks.size > 1 || lines.size > 1 ? links.map((l) => `${l.textContent}: ${[...looks]} at ${[...lines]}`) : [];
        }"""
    )


def small_targets(page) -> list[str]:
    """Controls in view smaller than 40x40 px: on a phone a finger misses them."""
    return page.evaluate(
        """() => [...document.querySelectorAll('button, select, input, textarea, a[href], [role=button]')]
          .filter((el) => { const r = el.getBoundingClientRect(), s = getComputedStyle(el);
            return r.width > 0 && r.height > 0 && r.bottom > 0 && r.top < innerHeight && r.right > 0
              && r.left < innerWidth && s.visibility !== 'hidden' && (r.width < 40 || r.height < 40); })
          .map((el) => `${el.tagName.toLowerCase()} "${(el.getAttribute('aria-label') || el.textContent || '')
            .trim().slice(0, 30)}" ${Math.round(el.getBoundingClientRect().width)}x${Math.round(el.getBoundingClientRect().height)}`)
          .slice(0, 10)"""
    )


def broken_words(page, selector: str) -> list[str]:
    """Words (runs without spaces) inside ``selector`` that the layout broke over two lines."""
    return page.evaluate(
        """(sel) => {
          const out = [];
          for (const el of document.querySelectorAll(sel)) {
            const walker = document.createTreeWalker(el, NodeFilter.SHOW_TEXT);
            for (let n = walker.nextNode(); n; n = walker.nextNode()) {
              for (const m of n.data.matchAll(/\\S+/g)) {
                const r = document.createRange();
                r.setStart(n, m.index);
                r.setEnd(n, m.index + m[0].length);
                const tops = new Set([...r.getClientRects()].map((c) => Math.round(c.top)));
                if (tops.size > 1) out.push(m[0]);
              }
            }
          }
          return out.slice(0, 10);
        }""",
        selector,
    )


def test_main_screens_desktop_and_phone_dark_and_light(hypivisor_factory, pi_home, start_pi, fake_llm, tmp_path,
                                                         tmux_env, page_factory):  # fmt: skip
    if not shutil.which("tmux"):
        pytest.skip("tmux is not installed (run integration_tests/setup_env.sh)")
    out = screenshot_dir(tmp_path)
    run_print(start_pi, PI, "summarise the release checklist for 1.4")  # a past session for #/sessions
    work, site = pi_home.cwd / "api-server", pi_home.cwd / "website"
    for d in (work, site):
        d.mkdir()
    (work / "notes.md").write_text(NOTES)
    hv = hypivisor_for(
        hypivisor_factory,
        pi_home,
        PI,
        tmp_path,
        {"HYPI_DASHBOARD_DIR": str(ensure_dist()), **tmux_env},
    )
    worker = start_pi(PI, mode="rpc", cwd=work, env={"HYPIVISOR_WS": hv.ws_url})
    asker = start_pi(PI, mode="tui", cwd=site, env={"HYPIVISOR_WS": hv.ws_url, "PI_SOCKET_APPROVAL": "writes"})
    asker.wait_ready()

    # the worker's conversation: a bash call, an edit (shown as a diff), a markdown answer with a code block
    fake_llm.script(
        [
            {"tool_calls": [{"name": "bash", "arguments": {"command": "grep -n 'version\\|channel' notes.md"}}]},
            {
                "tool_calls": [
                    {
                        "name": "edit",
                        "arguments": {
                            "path": "notes.md",
                            "edits": [
                                {
                                    "oldText": "version = 1.4.0\nchannel = beta",
                                    "newText": "version = 1.5.0\nchannel = stable",
                                }
                            ],
                        },
                    }
                ]
            },
            {"text": ANSWER},
        ]
    )
    page = page_factory(viewport={"width": 1440, "height": 900})
    for agent, name in ((asker, "Launch checklist"), (worker, "Release 1.5.0")):  # the worker stays open
        page.goto(dashboard_url(hv) + f"#/agent/{agent.node_id}")
        page.get_by_title("Rename this pi session").click(timeout=20_000)
        page.fill("input[aria-label='Session name']", name)
        page.keyboard.press("Enter")
        page.wait_for_selector(f"[data-node-id='{agent.node_id}'] >> text={name}", timeout=15_000)
    page.fill("textarea[aria-label=Prompt]", "Bump the release to 1.5.0 on stable and check the build")
    page.get_by_role("button", name="Send").click()
    page.wait_for_selector("[data-tool=edit] .diff", timeout=RUN_MS)
    page.wait_for_selector(".md:not(.md-plain) >> text=What changed", timeout=RUN_MS)
    page.wait_for_selector(f"[data-node-id='{worker.node_id}'][data-activity=idle]", timeout=RUN_MS)
    assert "version = 1.5.0" in (work / "notes.md").read_text()
    page.goto(dashboard_url(hv) + "#/")  # nobody watches the asker: its finished run and its approval go to the inbox
    page.wait_for_selector(f"[data-node-id='{asker.node_id}']", timeout=20_000)
    asker.submit("What is left before the release?")
    page.wait_for_selector(f"[data-node-id='{asker.node_id}'] [data-testid=unread-badge]", timeout=RUN_MS)
    asker.submit("TOOLCALL: touch RELEASED")
    page.wait_for_selector(f"[data-node-id='{asker.node_id}'][data-waiting='1']", timeout=RUN_MS)

    screens = {
        "chat": (f"#/agent/{worker.node_id}", ".md:not(.md-plain) >> text=What changed"),
        "roster": ("#/", f"[data-node-id='{asker.node_id}']"),
        "inbox": ("#/inbox", "[data-testid=inbox-item] >> nth=1"),
        "spawn": ("#/spawn", "[role=dialog]"),
        "sessions": ("#/sessions", "[data-testid=session-row]"),
        "budget": ("#/budget", "[data-testid=totals-row]"),
    }
    saved, problems = [], []
    for theme in THEMES:
        for device, options in DEVICES.items():
            p = page_factory(color_scheme=theme, **options)
            p.add_init_script(f"localStorage.setItem('pi-de-theme', '{theme}')")
            for screen, (route, ready) in screens.items():
                p.goto(dashboard_url(hv) + route)
                p.wait_for_selector(ready, timeout=20_000)
                p.wait_for_timeout(300)  # fonts, the markdown chunk, the last layout pass
                path = out / f"{screen}-{device}-{theme}.png"
                p.screenshot(path=str(path))
                saved.append(path)
                if spill := overflowing(p):
                    problems.append(f"{path.name}: wider than the screen: {spill}")
                if cut := p.evaluate(
                    """() => [...document.querySelectorAll('.node-meta')]
                         .filter((m) => m.scrollWidth > m.clientWidth + 1).map((m) => m.textContent)"""
                ):
                    problems.append(f"{path.name}: a card's line is cut off: {cut}")
                if device == "phone" and (small := small_targets(p)):
                    problems.append(f"{path.name}: tap targets under 40 px: {small}")
                if differ := header_links_differ(p):
                    problems.append(f"{path.name}: the header's links differ: {differ}")
                if screen == "budget" and (
                    tiny := p.evaluate(
                        """() => [...document.querySelectorAll('.bar-label')].map((t) => t.getBoundingClientRect().height)
                             .filter((h) => h < 9).map(Math.round)"""
                    )
                ):
                    problems.append(f"{path.name}: chart labels too small to read (px): {tiny}")
                if screen == "budget" and (
                    broken := broken_words(p, "[data-testid=budget-totals] td:not(:first-child)")
                ):
                    problems.append(f"{path.name}: amounts broken over two lines: {broken}")
    print(f"\nPi-DE screenshots: {out}")
    assert len(saved) == len(screens) * len(DEVICES) * len(THEMES)
    assert all(p.stat().st_size > 10_000 for p in saved)
    assert not problems, "\n".join(problems)
