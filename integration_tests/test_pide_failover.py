"""Pi-DE fails over to another hypivisor (specs/cluster.md §8): two real hypivisors A and B on one real 3-node NATS
cluster, each given the other's dashboard origin with ``--peer``; a simulated agent registered on B (listed on A
through the shared roster); the built Pi-DE served by A in Chromium, on a desktop and on a phone. SIGKILL A → within
a few seconds the page shows the roster from B, the header says it is on B, and opening the agent works through B's
proxy (the agent refuses a browser's direct link, so nothing else could carry it). The peer list is never put in the
address or in storage.

Every wait is bounded; everything listens on 127.0.0.1.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from typing import Any

import pytest

from integration_tests.harness.hypivisor_proc import free_port
from integration_tests.harness.pide import shot, wait_until

pytestmark = [pytest.mark.browser]

TOKEN = "failover-test-token"  # the hypivisors of a cluster share it
FAILOVER_S = 5.0  # the first fail-over attempt is immediate; this bounds a loaded machine
_sites = itertools.count(1)


def start_peers(nats_cluster: Any, dash_hv_factory: Callable[..., Any]) -> tuple[Any, Any]:
    site = f"pf{next(_sites)}x{int(time.time()) % 100000}"  # a fresh roster (the NATS cluster is shared)
    ports = [free_port(), free_port()]
    made = []
    for i in range(2):
        urls = nats_cluster.urls[i:] + nats_cluster.urls[:i]
        made.append(
            dash_hv_factory(
                token=TOKEN,
                dashboard_port=ports[i],
                args=["--nats", ",".join(urls), "--peer", f"http://127.0.0.1:{ports[1 - i]}"],
                env={"HYPI_NATS_SITE": site, "HYPI_NATS_LEASE_TTL": "2"},
            )
        )
    return made[0], made[1]


def test_the_page_moves_to_the_peer_when_its_hypivisor_dies(
    nats_cluster: Any, dash_hv_factory: Callable[..., Any], agents: Callable[..., Any], page_factory: Callable[..., Any]
) -> None:
    a, b = start_peers(nats_cluster, dash_hv_factory)
    agent = agents(b, "agent-on-b", "/home/u/proj", session_name="failover")  # registered on B, listed on A
    home = f"http://127.0.0.1:{a.dashboard_port}/"
    on_b = f"127.0.0.1:{b.dashboard_port}"
    desk = page_factory(viewport={"width": 1280, "height": 800})
    phone = page_factory(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    for page in (desk, phone):
        page.goto(f"{home}#token={TOKEN}")
        page.wait_for_selector("[data-node-id='agent-on-b']", timeout=20_000)
        assert page.locator("[data-testid=on-peer]").count() == 0  # on its own hypivisor: nothing shown
        # a page that can fail over fetches what a conversation loads on first use while its origin is up (no
        # peer serves this page's chunks): the markdown renderer and highlight.js with its languages
        wait_until(
            lambda page=page: page.evaluate(
                "['MarkdownRenderer-', '/core-', '/python-', '/typescript-'].every(part =>"
                " performance.getEntriesByType('resource').some(e => e.name.includes(part)))"
            ),
            10,
            what="the conversation's chunks fetched before the fail-over",
        )

    a.kill()
    t0 = time.monotonic()
    for page in (desk, phone):
        page.wait_for_selector(f"[data-testid=on-peer] >> text=on {on_b}", timeout=FAILOVER_S * 1000)
    moved = time.monotonic() - t0
    print(f"\nSIGKILL of the page's hypivisor -> the page on its peer after {moved:.2f} s")
    for page in (desk, phone):
        page.wait_for_selector("[data-testid=disconnected-banner]", state="detached", timeout=5_000)
        page.wait_for_selector("[data-node-id='agent-on-b']")
        assert page.url.startswith(home) and str(b.dashboard_port) not in page.url  # the address is A's, unchanged
        stored = page.evaluate("JSON.stringify(Object.entries(localStorage))")
        assert str(b.dashboard_port) not in stored, stored  # the peer list is never stored
        # the phone's header keeps the name, the links and the hypivisor on screen, nothing clipped
        box = page.locator("[data-testid=on-peer]").bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= page.viewport_size["width"]
    shot(desk, "failover-desktop")
    shot(phone, "failover-phone")

    # opening the agent goes through B's proxy (its port refuses a browser's direct link)
    desk.click("[data-node-id='agent-on-b']")
    desk.wait_for_selector("textarea[aria-label=Prompt]", timeout=10_000)
    desk.fill("textarea[aria-label=Prompt]", "hello through B")
    desk.get_by_role("button", name="Send").click()
    wait_until(lambda: any(f.get("type") == "prompt" for f in agent.received), 10, what="the prompt at the agent")
    assert desk.locator("[data-testid=direct-link]").count() == 0
    assert [f["text"] for f in agent.received if f.get("type") == "prompt"] == ["hello through B"]
    assert moved < FAILOVER_S
