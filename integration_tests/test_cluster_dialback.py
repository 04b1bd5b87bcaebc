"""Agent links across hypivisors without the extra hop (specs/cluster.md §7): real ``python -m hypivisor --nats``
processes on the 3-node NATS fixture, the real bridge process (its shim faked) registered on A, a browser-like
client on B.

* a bridge whose ``HYPIVISOR_WS`` lists A and B dials B itself when the browser is on B (asked through its owner A):
  B splices the browser to that connection, A's proxy never carries the link, and the link outlives a SIGKILL of A;
* a bridge that cannot (B not in its list; an older bridge without ``dial_back_url``) is reached through A at once,
  never after the nonce's 5 s, and an older bridge is never handed B's nonce;
* ``HYPI_CLUSTER_TOKEN``: hypivisors with different ``HYPI_TOKEN``s link through each other with it, and it opens
  nothing else (not ``/ws``, not as a browser's carrier, not an agent the hypivisor does not hold).

Everything listens on 127.0.0.1; every wait is bounded.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import websockets

from integration_tests.harness.hypivisor_proc import HypivisorProc, RegistryClient, free_port, node_params
from integration_tests.test_dialback import closed_port, dial, hv_log, read_head, serve_one_link
from pi_socket.handshake import encode_token_protocol
from pi_socket.tests.fake_shim import FakeShim

TOKEN = "cluster-dialback-token"
LEASE_TTL = 2.0
FAST_S = 3.0  # a fallback that waited out the 5 s nonce would exceed this
_sites = itertools.count(1)


def start_pair(
    nats_cluster: Any,
    hypivisor_factory: Callable[..., HypivisorProc],
    tokens: tuple[str, str] = (TOKEN, TOKEN),
    env: dict[str, str] | None = None,
) -> tuple[HypivisorProc, HypivisorProc]:
    site = f"db{next(_sites)}x{int(time.time()) % 100000}"  # a fresh roster per test (the NATS cluster is shared)
    urls = nats_cluster.urls
    a, b = (
        hypivisor_factory(
            token=tokens[i],
            args=["--nats", ",".join(urls[i:] + urls[:i])],
            env={"HYPI_NATS_SITE": site, "HYPI_NATS_LEASE_TTL": str(LEASE_TTL), **(env or {})},
        )
        for i in range(2)
    )
    return a, b


async def in_roster(hv: HypivisorProc, node_id: str, remote: bool, timeout: float = 10.0) -> dict:
    """``node_id`` active in ``hv``'s roster (``remote``: as another hypivisor's agent, with ``hv`` set)."""
    deadline = time.monotonic() + timeout
    async with await RegistryClient.connect(hv) as reg:
        while time.monotonic() < deadline:
            for node in (await reg.call("list_nodes", {}))["result"]["nodes"]:
                if node["id"] == node_id and node["status"] == "active" and bool(node.get("hv")) == remote:
                    return node
            await asyncio.sleep(0.1)
    raise AssertionError(f"{node_id} not in the roster within {timeout} s")


def link_lines(hv: HypivisorProc, node_id: str) -> list[str]:
    """What ``hv`` logged about agent links to ``node_id``."""
    wanted = ("agent link dialled back", "agent link through the owner", "no dial-back in time; through the owner")
    return [r["msg"] for r in hv_log(hv) if r.get("msg") in wanted and r.get("node_id") == node_id]


async def bridge_on(tmp: Path, node_id: str, hypivisors: list[HypivisorProc], token: str) -> FakeShim:
    """The real bridge process, its agent port unreachable (every link must be dialled back), registered on the
    first of ``hypivisors``."""
    home = tmp / node_id
    home.mkdir()
    shim = FakeShim(
        home,
        node_id=node_id,
        env={
            "HYPIVISOR_WS": ",".join(hv.ws_url for hv in hypivisors),
            "HYPI_TOKEN": token,
            "PI_SOCKET_ADVERTISE_PORT": str(closed_port()),
        },
    )
    await shim.start()
    return shim


async def prompt(ws: Any, pid: str) -> dict:
    await ws.send(json.dumps({"type": "prompt", "id": pid, "text": f"hello {pid}"}))
    while True:
        frame = json.loads(await asyncio.wait_for(ws.recv(), 10))
        if frame.get("type") == "ack" and frame.get("id") == pid:
            return frame


async def open_link(hv: HypivisorProc, node_id: str, headers: dict[str, str]) -> tuple[Any, float]:
    """A browser-like agent link on ``hv``, its ``init_state`` read; (socket, seconds to init_state)."""
    t0 = time.monotonic()
    ws = await websockets.connect(hv.agent_url(node_id), additional_headers=headers, open_timeout=15, max_size=None)
    init = json.loads(await asyncio.wait_for(ws.recv(), 10))
    assert init["type"] == "init_state" and init["node"]["id"] == node_id, init
    return ws, time.monotonic() - t0


async def test_the_bridge_dials_the_browsers_hypivisor_and_the_link_outlives_the_owner(
    tmp_path: Path, nats_cluster: Any, hypivisor_factory: Callable[..., HypivisorProc]
) -> None:
    a, b = start_pair(nats_cluster, hypivisor_factory)
    shim = await bridge_on(tmp_path, "both-listed", [a, b], TOKEN)
    try:
        await in_roster(a, "both-listed", remote=False)
        await in_roster(b, "both-listed", remote=True)
        ws, took = await open_link(b, "both-listed", b.auth_headers)
        try:
            assert (await prompt(ws, "p-1"))["id"] == "p-1"
            sent = await shim.wait_for_request("send")
            assert "hello p-1" in json.dumps(sent[-1])  # the prompt's bytes reached the agent unchanged
            await asyncio.sleep(0.3)  # the hypivisors' log lines are written
            assert link_lines(b, "both-listed") == ["agent link dialled back"]  # spliced on B to the bridge
            assert link_lines(a, "both-listed") == []  # A's proxy carried nothing: no extra hop
            a.kill()  # SIGKILL the owner: the link does not go through it
            assert (await prompt(ws, "p-2"))["id"] == "p-2"
            await shim.wait_for_request("send", count=2)
        finally:
            await ws.close()
        print(f"\nlink on B dialled back by the bridge of A's agent in {took:.2f} s; it outlived A's SIGKILL")
        assert took < FAST_S
    finally:
        await shim.stop()


async def test_a_bridge_that_cannot_dial_the_browsers_hypivisor_is_reached_through_the_owner_at_once(
    tmp_path: Path, nats_cluster: Any, hypivisor_factory: Callable[..., HypivisorProc]
) -> None:
    a, b = start_pair(nats_cluster, hypivisor_factory)
    # a bridge whose list lacks B: it refuses to dial B, says so, and B splices through A without waiting
    shim = await bridge_on(tmp_path, "a-only", [a], TOKEN)
    try:
        await in_roster(b, "a-only", remote=True)
        ws, took = await open_link(b, "a-only", b.auth_headers)
        try:
            assert (await prompt(ws, "p-1"))["id"] == "p-1"
        finally:
            await ws.close()
        await asyncio.sleep(0.3)
        assert link_lines(b, "a-only") == ["agent link through the owner"]
        assert link_lines(a, "a-only") == ["agent link dialled back"]  # A's own dial-back, to A
        refused = [r for r in shim.log_lines() if r.get("event", r.get("msg")) == "dial-back refused: the "
                   "hypivisor it names is not in HYPIVISOR_WS"]  # fmt: skip
        assert len(refused) == 1, shim.log_lines()[-5:]
        assert took < FAST_S, f"the fallback took {took:.2f} s"
    finally:
        await shim.stop()

    # an older bridge (dial_back without dial_back_url): never handed B's nonce; A's own dial-back, at once
    async with await RegistryClient.connect(a) as old:
        await old.event("init")
        params = node_params("old-bridge", closed_port(), machine="old-machine", capabilities=["dial_back"])
        assert "result" in await old.call("register", params)
        await in_roster(b, "old-bridge", remote=True)
        t0 = time.monotonic()

        async def browser_on_b() -> Any:
            return await websockets.connect(b.agent_url("old-bridge"), additional_headers=b.auth_headers,
                                            open_timeout=15)  # fmt: skip

        browser = asyncio.create_task(browser_on_b())
        event = await old.event("dial_back", timeout=10)
        assert "url" not in event, event  # A's own link (the hop's), to be dialled to A as before
        s = await asyncio.to_thread(dial, a, event["nonce"], token=TOKEN)
        head, early = await asyncio.to_thread(read_head, s)
        assert head.startswith(b"HTTP/1.1 101"), head
        await asyncio.to_thread(serve_one_link, s, early)
        ws = await browser
        try:
            assert await asyncio.wait_for(ws.recv(), 10) == "dialled"
            took = time.monotonic() - t0
        finally:
            s.close()  # the fake bridge goes first: the browser's close then needs no answer
            await ws.close()
        assert took < FAST_S, f"the older bridge's link took {took:.2f} s"
        assert not [ev for ev in old.events if ev.get("event") == "dial_back"]  # one dial-back event, A's own


async def test_the_cluster_token_carries_the_hop_between_hypivisors_and_nothing_else(
    tmp_path: Path, nats_cluster: Any, hypivisor_factory: Callable[..., HypivisorProc]
) -> None:
    cluster_token = "hop-only-token-42"
    a, b = start_pair(nats_cluster, hypivisor_factory, ("token-of-a", "token-of-b"),
                      {"HYPI_CLUSTER_TOKEN": cluster_token})  # fmt: skip
    # the bridge holds A's token only: its dial-back to B is refused (401), so the link takes the hop with the
    # cluster token, at once
    shim = await bridge_on(tmp_path, "hop-agent", [a, b], "token-of-a")
    try:
        await in_roster(b, "hop-agent", remote=True)
        ws, took = await open_link(b, "hop-agent", b.auth_headers)
        try:
            assert (await prompt(ws, "p-1"))["id"] == "p-1"
        finally:
            await ws.close()
        await asyncio.sleep(0.3)
        assert link_lines(b, "hop-agent") == ["agent link through the owner"]
        assert took < FAST_S, f"the hop took {took:.2f} s"

        hop = {"Authorization": f"Bearer {cluster_token}"}

        async def status(url: str, headers: dict[str, str], **kwargs: Any) -> int:
            try:
                async with websockets.connect(url, additional_headers=headers, open_timeout=10, **kwargs):
                    return 101
            except websockets.InvalidStatus as exc:
                return exc.response.status_code

        # a hypivisor's hop on A's proxy, as B makes it: accepted for A's own agent
        hop_ws, _ = await open_link(a, "hop-agent", hop)
        await hop_ws.close()
        # never a dashboard's token: not on /ws of either, not as a browser's carrier, not for an agent not held
        assert await status(a.ws_url, hop) == 401
        assert await status(b.ws_url, hop) == 401
        assert await status(a.agent_url("hop-agent"), {}, subprotocols=[encode_token_protocol(cluster_token)]) == 401
        assert await status(f"{a.agent_url('hop-agent')}?token={cluster_token}", {}) == 401
        assert await status(a.agent_url("hop-agent"), {**hop, "Origin": f"http://127.0.0.1:{a.dashboard_port}"}) == 401
        assert await status(b.agent_url("hop-agent"), hop) == 401  # B does not hold it: never forwarded again
    finally:
        await shim.stop()
    assert cluster_token not in a.log_lines() + b.log_lines()


async def test_without_a_cluster_token_the_hop_carries_the_shared_token(
    nats_cluster: Any, hypivisor_factory: Callable[..., HypivisorProc]
) -> None:
    """Unchanged setups: no HYPI_CLUSTER_TOKEN, one HYPI_TOKEN everywhere; the agent (no dial-back) via the hop."""
    a, b = start_pair(nats_cluster, hypivisor_factory)
    port = free_port()

    async def agent_side(ws: Any) -> None:
        async for message in ws:
            await ws.send(f"echo {message}")

    async with websockets.serve(agent_side, "127.0.0.1", port), await RegistryClient.connect(a) as agent:
        await agent.event("init")
        assert "result" in await agent.call("register", node_params("plain-agent", port, machine="m-a"))
        await in_roster(b, "plain-agent", remote=True)
        t0 = time.monotonic()
        async with websockets.connect(b.agent_url("plain-agent"), additional_headers=b.auth_headers) as ws:
            await ws.send("x")
            assert await asyncio.wait_for(ws.recv(), 10) == "echo x"
        assert time.monotonic() - t0 < FAST_S
