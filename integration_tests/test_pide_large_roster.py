"""Pi-DE with a roster past one ``init`` chunk (1 MiB), in Chromium, against a real hypivisor.

The page connects to ``/ws?roster=chunks``, so the nodes past ``init`` come as a few ``nodes_joined`` frames, each
applied in one roster copy, instead of one ``node_joined`` frame (and one roster copy) per node: every agent is
listed, in its folder group, and a later join or update still shows. Nodes are registered over the real ``/ws``
exactly as bridges register them (pipelined, up to 1,000 per connection).
"""

from __future__ import annotations

import contextlib
import json

import pytest

from integration_tests.harness.pide import dashboard_url, shot, wait_until

pytestmark = [pytest.mark.browser]

N = 4_000  # ~330 bytes per node: about 1.3 MB of roster, so init holds ~3,000 and the rest follow
FOLDERS = 8
PER_CONNECTION = 1_000  # the hypivisor's per-connection cap


def register_many(stack: contextlib.ExitStack, hv, first: int, count: int):
    """One registry connection carrying ``count`` agents, as a bridge host does; open until ``stack`` closes."""
    from websockets.sync.client import connect

    headers = {**hv.auth_headers, "X-Hypi-Role": "agent"}
    ws = stack.enter_context(connect(hv.ws_url, additional_headers=headers, max_size=None))
    for i in range(first, first + count):
        params = {"id": f"agent-{i:05d}", "machine": "big-box", "cwd": f"/srv/fleet/p{i % FOLDERS}",
                  "port": 20_000 + i, "pid": 100_000 + i, "session_name": f"task {i}"}  # fmt: skip
        ws.send(json.dumps({"id": i, "method": "register", "params": params}))
    for _ in range(count):
        reply = json.loads(ws.recv(timeout=60))
        assert "result" in reply, reply
    return ws


def test_a_roster_past_one_chunk_is_listed_in_full_from_a_few_frames(dash_hv, page_factory):
    with contextlib.ExitStack() as stack:
        for k in range(0, N, PER_CONNECTION):
            register_many(stack, dash_hv, k, min(PER_CONNECTION, N - k))
        page = page_factory(viewport={"width": 1440, "height": 900})
        roster_frames: list[str] = []
        urls: list[str] = []

        def on_socket(ws) -> None:
            if "/ws/agent/" in ws.url:
                return
            urls.append(ws.url)
            ws.on("framereceived", lambda payload: roster_frames.append(str(payload)[:40]))

        page.on("websocket", on_socket)
        page.goto(dashboard_url(dash_hv))

        def listed() -> int:
            return page.evaluate(
                "[...document.querySelectorAll('[data-testid=roster-group] .badge')]"
                ".reduce((sum, b) => sum + Number(b.textContent), 0)"
            )

        wait_until(lambda: listed() == N, timeout=60, what=f"{N} agents listed")
        assert page.locator("[data-testid=roster-group]").count() == FOLDERS
        assert page.locator("[data-node-id='agent-03999']").count() == 1  # one past the init chunk
        assert urls and all(u.endswith("/ws?roster=chunks") for u in urls)
        kinds = [f.split('"event":"', 1)[1].split('"', 1)[0] for f in roster_frames if f.startswith('{"event":"')]
        chunks = kinds.count("nodes_joined")
        assert kinds[0] == "init" and 1 <= chunks <= 3, kinds[:10]
        assert "node_joined" not in kinds  # the nodes past init came in chunks, not one frame each

        # the roster stays live after the chunks: a new agent joins, an update shows
        more = register_many(stack, dash_hv, N, 1)
        page.wait_for_selector("[data-node-id='agent-04000']", timeout=20_000)
        more.send(json.dumps({"id": "hb", "method": "heartbeat",
                              "params": {"id": "agent-04000", "session_name": "renamed at the end"}}))  # fmt: skip
        page.wait_for_selector("[data-node-id='agent-04000'] >> text=renamed at the end", timeout=20_000)
        wait_until(lambda: listed() == N + 1, timeout=20, what="one more agent listed")
        shot(page, "large-roster")
