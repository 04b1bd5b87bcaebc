"""Security issue #16 items 3, 4 and 8 against a real hypivisor process: what a large or hostile roster costs.

Nodes here are the largest the protocol stores (every string field at its maximum length, ~5 KB each), so the
figures are worst cases: a client that pipelines requests and never reads holds a bounded amount of the
hypivisor's memory, and a roster of 10,000 such nodes (~50 MB) still lets dashboards and bridges in.
"""

from __future__ import annotations

import asyncio
import json
import time

import pytest
import websockets

from integration_tests.harness.hypivisor_proc import RegistryClient
from pi_socket.protocol import MAX_MODEL_LEN, MAX_NAME_LEN, MAX_PATH_LEN, MAX_VERSION_LEN

BRIDGE_FRAME_LIMIT = 2**24  # what a bridge's registry client accepts (pi_socket/bridge/hypivisor_client.py)


def biggest_node(node_id: str, port: int, machine: str = "m") -> dict:
    """Register params with every stored string at its maximum length."""
    return {"id": node_id, "machine": machine.ljust(255, "m"), "cwd": "/" + "c" * (MAX_PATH_LEN - 1), "port": port,
            "pid": 2**31 - 1, "session_name": "s" * MAX_NAME_LEN, "model": "o" * MAX_MODEL_LEN,
            "pi_version": "v" * MAX_VERSION_LEN, "protocol_version": "1" * MAX_VERSION_LEN, "started_at": 1e9,
            "tokens": {"input": 2**53 - 1, "output": 2**53 - 1, "cache_read": 2**53 - 1, "cache_write": 2**53 - 1,
                       "total": 2**53 - 1}, "cost": 1e12}  # fmt: skip


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("VmRSS:")) / 1024


async def register_many(client: RegistryClient, params: list[dict], timeout: float = 120) -> list[dict]:
    """Pipelined 100 at a time: a client that sends without reading its answers is no longer read from."""
    results = []
    for start in range(0, len(params), 100):
        ids = [await client.send("register", p) for p in params[start : start + 100]]
        results += [await client.reply(i, timeout=timeout) for i in ids]
    assert all("result" in r for r in results), next(r for r in results if "result" not in r)
    return [r["result"] for r in results]


async def test_a_client_that_pipelines_list_nodes_and_never_reads_holds_a_bounded_amount(hypivisor):
    """400 pipelined list_nodes of a ~1.5 MB roster (300 largest nodes) from a socket that never reads: responses
    count against the connection's 8 MiB outbox budget and the hypivisor stops reading that socket, so it grows
    by less than 64 MB (400 queued copies were ~600 MB before) and keeps answering everyone else."""
    async with await RegistryClient.connect(hypivisor) as owner:
        await register_many(owner, [biggest_node(f"big-{i}", 10_000 + i) for i in range(300)])
        roster = (await owner.call("list_nodes"))["result"]["nodes"]
        assert len(roster) == 300 and len(json.dumps(roster)) > 1_400_000
        before = rss_mb(hypivisor.proc.pid)
        hog = await websockets.connect(hypivisor.ws_url, max_queue=1, max_size=None)
        try:
            for i in range(400):  # bounded: 400 requests
                await asyncio.wait_for(hog.send(json.dumps({"id": i, "method": "list_nodes"})), 5)
            await asyncio.sleep(3)
            grown = rss_mb(hypivisor.proc.pid) - before
            print(
                f"RSS grew {grown:.1f} MB for 400 unread list_nodes of a {len(json.dumps(roster)) / 1e6:.1f} MB roster"
            )
            started = time.monotonic()
            assert len((await owner.call("list_nodes"))["result"]["nodes"]) == 300  # everyone else is answered
            assert time.monotonic() - started < 5
        finally:
            hog.transport.abort()
    assert grown < 64, f"the hypivisor grew {grown:.0f} MB for a client that never reads"


@pytest.mark.slow
async def test_ten_thousand_of_the_largest_nodes_still_let_dashboards_and_bridges_in(hypivisor):
    """10,000 largest nodes (~50 MB of roster, registered through 10 connections of up to 1,000, the per-connection
    cap; 10,000 is also the total cap): no frame passes a bridge's 16 MiB limit; a new bridge (the 10,000th node)
    and a reconnecting one register; a new dashboard receives every node (init, then node_joined); list_nodes
    pages stay within 4 MiB."""
    owners: list[RegistryClient] = []
    try:
        secrets: dict[str, str] = {}
        for k in range(10):  # one after the other: a connection that waits unread as a dashboard would be kicked
            owners.append(owner := await RegistryClient.connect(hypivisor))
            results = await register_many(owner, [biggest_node(f"n{k}-{i}", 1 + i, machine=f"m{k}")
                                                  for i in range(1000 if k < 9 else 999)])  # fmt: skip
            secrets.update({r["node"]["id"]: r["node_secret"] for r in results})
        over = await owners[0].call("register", biggest_node("one-too-many", 60_000, machine="m0"))
        assert over["error"]["code"] == 1008 and "at most 1000" in over["error"]["message"], over
        await owners[9].close()  # its 1,000 agents lose the hypivisor; one of them comes back below

        async with await RegistryClient.connect(hypivisor, max_size=BRIDGE_FRAME_LIMIT) as bridge:
            started = time.monotonic()
            init = await bridge.event("init", timeout=60)
            assert init["total"] == 9_999 and 0 < len(init["nodes"]) < 9_999
            res = await bridge.call("register", biggest_node("new-bridge", 61_000, machine="new"), timeout=120)
            assert res.get("result", {}).get("status") == "registered", res
            new_bridge_s = time.monotonic() - started
            full = await bridge.call("register", biggest_node("past-the-cap", 61_001, machine="new"), timeout=120)
            assert full["error"]["code"] == 1008 and "roster is full" in full["error"]["message"], full
        async with await RegistryClient.connect(hypivisor, max_size=BRIDGE_FRAME_LIMIT) as back:
            await back.event("init", timeout=60)
            res = await back.call("register", {**biggest_node("n9-7", 8, machine="m9"), "node_secret": secrets["n9-7"]},
                                  timeout=120)  # fmt: skip
            assert res["result"]["node"]["status"] == "active", res

        async with await RegistryClient.connect(hypivisor, max_size=BRIDGE_FRAME_LIMIT) as dash:
            started = time.monotonic()
            init = await dash.event("init", timeout=60)
            seen = {n["id"] for n in init["nodes"]}
            while len(seen) < init["total"]:
                seen.add((await dash.event("node_joined", timeout=60))["node"]["id"])
            dashboard_s = time.monotonic() - started
            assert len(seen) == 10_000
            listed, cursor, pages = set(), 0, 0
            while cursor is not None:
                page = (await dash.call("list_nodes", {"cursor": cursor}, timeout=60))["result"]
                assert len(json.dumps(page)) < 4.5 * 2**20
                listed |= {n["id"] for n in page["nodes"]}
                cursor, pages = page["next_cursor"], pages + 1
            assert listed == seen and pages > 1
        # Pi-DE's way (/ws?roster=chunks): the same roster as init and nodes_joined frames of up to 1 MiB of nodes
        async with await RegistryClient.connect(hypivisor, "?roster=chunks", max_size=BRIDGE_FRAME_LIMIT) as dash:
            init = await dash.event("init", timeout=60)
            chunked, frames = {n["id"] for n in init["nodes"]}, 1
            while len(chunked) < init["total"]:
                chunk = await dash.event("nodes_joined", timeout=60)
                assert len(json.dumps(chunk["nodes"], separators=(",", ":"), ensure_ascii=False).encode()) <= 2**20 + 2
                chunked |= {n["id"] for n in chunk["nodes"]}
                frames += 1
            assert chunked == seen and 10 < frames < 100  # ~5 KB nodes: ~200 per MiB
            assert not [e for e in dash.events if e["event"] == "node_joined"]
        print(
            f"10,000 largest nodes: new bridge registered in {new_bridge_s:.1f} s, dashboard had the roster in "
            f"{dashboard_s:.1f} s, list_nodes took {pages} pages"
        )
    finally:
        for owner in owners:
            await owner.close()
