"""Cluster mode end to end (specs/cluster.md "Built"): real ``python -m hypivisor --nats …`` processes on a real
3-node NATS cluster (JetStream) on loopback, each hypivisor connected to its own NATS node first.

* the shared roster: an agent registered on hypivisor A (over ``/ws``, as a bridge registers) is in B's
  ``list_nodes`` (marked with A's ``hv``) and B's dashboard gets ``node_joined``, ``node_updated`` and
  ``node_removed``; SIGKILL of A drops A's agents from B within the lease TTL (bounded, the time printed);
* agent links across hypivisors: a browser on B opening ``/ws/agent/<id>`` of an agent registered on A reaches
  it (B asks A over NATS where its agent proxy is and splices to it), both ways, bytes unchanged; and a real pi
  (its bridge registered on A) is prompted through B and answers.

Every wait is bounded; everything listens on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable
from typing import Any

import pytest
import websockets

from integration_tests.harness.hypivisor_proc import HypivisorProc, RegistryClient, free_port, node_params, until
from integration_tests.harness.pi_proc import wait_until

TOKEN = "cluster-test-token"  # every hypivisor of the cluster shares it (it authenticates the hop between them)
LEASE_TTL = 2.0
_sites = itertools.count(1)


def start_pair(nats_cluster: Any, hypivisor_factory: Callable[..., HypivisorProc]) -> tuple[HypivisorProc, ...]:
    site = f"hv{next(_sites)}x{int(time.time()) % 100000}"  # a fresh roster per test (the NATS cluster is shared)
    urls = nats_cluster.urls
    made = []
    for i in range(2):
        own_first = urls[i:] + urls[:i]
        made.append(
            hypivisor_factory(
                token=TOKEN,
                args=["--nats", ",".join(own_first)],
                env={"HYPI_NATS_SITE": site, "HYPI_NATS_LEASE_TTL": str(LEASE_TTL)},
            )
        )
    return tuple(made)


async def node_event(client: RegistryClient, name: str, node_id: str, timeout: float = 10.0) -> dict:
    """The next ``name`` event about ``node_id`` (events of other kinds and nodes are skipped)."""
    deadline = time.monotonic() + timeout
    while True:
        for i, ev in enumerate(client.events):
            if ev["event"] == name and (ev.get("id") == node_id or (ev.get("node") or {}).get("id") == node_id):
                return client.events.pop(i)
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"no {name} for {node_id} within {timeout} s; got {client.events}")
        try:
            await client._read_one(remaining)
        except TimeoutError:
            pass


async def listed(client: RegistryClient, node_id: str) -> dict | None:
    reply = await client.call("list_nodes")
    return next((n for n in reply["result"]["nodes"] if n["id"] == node_id), None)


async def test_an_agent_on_one_hypivisor_is_on_every_dashboard_and_leaves_with_its_hypivisor(
    nats_cluster: Any, hypivisor_factory: Callable[..., HypivisorProc]
) -> None:
    a, b = start_pair(nats_cluster, hypivisor_factory)
    # a lease this short is accepted, with a warning that says why it is risky
    assert "cluster lease shorter than a NATS leader election" in a.log_lines() + a.stderr()
    async with await RegistryClient.connect(b) as dash_b, await RegistryClient.connect(a) as agent:
        await dash_b.event("init")
        await agent.event("init")
        reply = await agent.call("register", node_params("agent-on-a", 40001, machine="machine-a"))
        assert "result" in reply, reply
        joined = await node_event(dash_b, "node_joined", "agent-on-a")
        assert joined["node"]["machine"] == "machine-a" and joined["node"]["hv"], joined
        owner = joined["node"]["hv"]
        node = await listed(dash_b, "agent-on-a")
        assert node is not None and node["hv"] == owner
        # A's own dashboards see the agent as A's own (no hv): nothing changes for a hypivisor's own agents
        mine = await listed(agent, "agent-on-a")
        assert mine is not None and "hv" not in mine

        await agent.call("heartbeat", {"id": "agent-on-a", "activity": "working"})
        updated = await node_event(dash_b, "node_updated", "agent-on-a")
        assert updated["node"]["activity"] == "working"

        await agent.call("deregister", {"id": "agent-on-a"})
        await node_event(dash_b, "node_removed", "agent-on-a")
        assert await listed(dash_b, "agent-on-a") is None

        reply = await agent.call("register", node_params("agent-2-on-a", 40002, machine="machine-a"))
        assert "result" in reply, reply
        await node_event(dash_b, "node_joined", "agent-2-on-a")

    # the agent's registry connection closed: offline on A, and so on B
    async with await RegistryClient.connect(b) as dash_b:
        await dash_b.event("init")
        node = await until(lambda: _status(dash_b, "agent-2-on-a", "offline"), 10, "agent-2-on-a offline on B")
        assert node["hv"]
        a.kill()  # SIGKILL: no clean stop, its lease lapses
        t0 = time.monotonic()
        await node_event(dash_b, "node_removed", "agent-2-on-a", timeout=LEASE_TTL + 10)
        gone_after = time.monotonic() - t0
        assert await listed(dash_b, "agent-2-on-a") is None
    print(f"\nSIGKILL of the owner -> its agent left the other hypivisor's roster after {gone_after:.2f} s "
          f"(lease TTL {LEASE_TTL} s)")  # fmt: skip
    assert gone_after < LEASE_TTL + 8


async def test_an_agent_that_moves_while_its_old_hypivisor_stays_up_shows_live_there_at_once(
    nats_cluster: Any, hypivisor_factory: Callable[..., HypivisorProc]
) -> None:
    """Its connection to A drops (a network blip) and its bridge registers with B: A's dashboards show it live on B
    within moments, not offline until A's TTL, and A raises no "stopped responding" for it."""
    a, b = start_pair(nats_cluster, hypivisor_factory)
    async with await RegistryClient.connect(a) as dash_a:
        await dash_a.event("init")
        async with await RegistryClient.connect(a) as agent:
            await agent.event("init")
            reply = await agent.call("register", node_params("mover", 40011, machine="machine-m"))
            assert "result" in reply, reply
            await node_event(dash_a, "node_joined", "mover")
        await node_event(dash_a, "node_offline", "mover")
        async with await RegistryClient.connect(b) as agent_b:
            await agent_b.event("init")
            reply = await agent_b.call("register", node_params("mover", 40011, machine="machine-m"))
            assert "result" in reply, reply
            node = await until(lambda: _status(dash_a, "mover", "active"), 10, "the moved agent live on A's dashboard")
            assert node["hv"] and node["hv"] != "", node
            joined = await node_event(dash_a, "node_joined", "mover")
            assert joined["node"]["status"] == "active" and joined["node"]["hv"] == node["hv"], joined
            items = (await dash_a.call("list_attention"))["result"]
            assert not [i for i in items["items"] if i["node_id"] == "mover" and i["kind"] == "error"], items


async def _status(client: RegistryClient, node_id: str, status: str) -> dict | None:
    node = await listed(client, node_id)
    return node if node is not None and node["status"] == status else None


async def test_a_prompt_through_one_hypivisor_reaches_an_agent_on_another(
    nats_cluster: Any, hypivisor_factory: Callable[..., HypivisorProc]
) -> None:
    a, b = start_pair(nats_cluster, hypivisor_factory)
    received: list[str] = []

    async def agent_side(ws: Any) -> None:  # the agent's end: what pi-socket's bridge would be
        async for message in ws:
            received.append(message)
            await ws.send(f"reply to {message}")

    port = free_port()
    async with websockets.serve(agent_side, "127.0.0.1", port), await RegistryClient.connect(a) as agent:
        await agent.event("init")
        reply = await agent.call("register", node_params("linked-agent", port, machine="machine-a"))
        assert "result" in reply, reply
        async with await RegistryClient.connect(b) as dash_b:
            await dash_b.event("init")
            await until(lambda: listed(dash_b, "linked-agent"), 10, "the agent in B's roster")
        headers = {"Authorization": f"Bearer {TOKEN}"}
        async with websockets.connect(b.agent_url("linked-agent"), additional_headers=headers, open_timeout=10) as ws:
            await ws.send('{"type":"prompt","message":"hello from B"}')
            answer = await asyncio.wait_for(ws.recv(), 10)
        assert answer == 'reply to {"type":"prompt","message":"hello from B"}'
        assert received == ['{"type":"prompt","message":"hello from B"}']
        # an agent nobody holds is still 404 on B, as an unknown agent on one hypivisor
        with pytest.raises(websockets.InvalidStatus) as refused:
            async with websockets.connect(b.agent_url("nobody"), additional_headers=headers, open_timeout=10):
                pass
        assert refused.value.response.status_code == 404
        # an agent of A that went offline (its registry connection closed) is 410 on B at once, as on A
        async with await RegistryClient.connect(a) as gone:
            await gone.event("init")
            assert "result" in await gone.call("register", node_params("gone-agent", free_port(), machine="machine-a"))
        async with await RegistryClient.connect(b) as dash_b:
            await dash_b.event("init")
            await until(lambda: _status(dash_b, "gone-agent", "offline"), 10, "gone-agent offline on B")
        with pytest.raises(websockets.InvalidStatus) as refused:
            async with websockets.connect(b.agent_url("gone-agent"), additional_headers=headers, open_timeout=10):
                pass
        assert refused.value.response.status_code == 410


@pytest.mark.pi
@pytest.mark.pi_smoke
def test_a_real_pi_registered_on_one_hypivisor_is_prompted_through_another(
    nats_cluster: Any,
    hypivisor_factory: Callable[..., HypivisorProc],
    start_pi: Any,
    pi_version: str,
    agent_client: Any,
) -> None:
    from integration_tests.test_pi_link import assistant_end, prompt, text_of
    from integration_tests.test_pi_resilience import node_event as joined_event
    from integration_tests.test_pi_resilience import registry

    a, b = start_pair(nats_cluster, hypivisor_factory)
    dash_b = registry(agent_client, b)
    pi = start_pi(pi_version, mode="rpc", env={"HYPIVISOR_WS": a.ws_url, "HYPI_TOKEN": TOKEN})
    joined = dash_b.wait_for(joined_event("node_joined", pi.node_id), timeout=20)
    assert joined["node"]["hv"], joined  # owned by A, shown on B
    link = agent_client(b.agent_url(pi.node_id), b.auth_headers)  # a browser on B opening the agent A holds
    init = link.wait_for(lambda f: f.get("type") == "init_state")
    assert init["node"]["id"] == pi.node_id
    prompt(link, "hello through B")
    end = link.wait_for(assistant_end, timeout=30)
    assert text_of(end["message"]) == "Hello from fake LLM. You said: hello through B"


@pytest.mark.pi
@pytest.mark.pi_smoke
def test_an_approval_is_decided_once_across_hypivisors(
    nats_cluster: Any,
    hypivisor_factory: Callable[..., HypivisorProc],
    start_pi: Any,
    pi_version: str,
    agent_client: Any,
    pi_home: Any,
) -> None:
    """Two people decide the same approval at once, one through A (which holds the agent), one through B: exactly
    one decision counts (the shim at the end of every link is the judge), the other is refused with 1013, both
    links see the same outcome, and B's roster shows the pending approval while it is open."""
    from integration_tests.test_pi_approvals import WRITES, ask
    from integration_tests.test_pi_link import is_type, prompt, run_done
    from integration_tests.test_pi_resilience import node_event as roster_event
    from integration_tests.test_pi_resilience import registry

    a, b = start_pair(nats_cluster, hypivisor_factory)
    dash_b = registry(agent_client, b)
    pi = start_pi(pi_version, mode="rpc", env={**WRITES, "HYPIVISOR_WS": a.ws_url, "HYPI_TOKEN": TOKEN})
    dash_b.wait_for(roster_event("node_joined", pi.node_id), timeout=20)
    via_a = agent_client(a.agent_url(pi.node_id), a.auth_headers)
    via_b = agent_client(b.agent_url(pi.node_id), b.auth_headers)
    for link in (via_a, via_b):
        link.wait_for(is_type("init_state"))
    prompt(via_b, "TOOLCALL: touch raced.txt")
    req = ask(via_b)
    assert ask(via_a)["id"] == req["id"]
    dash_b.wait_for(roster_event("node_updated", pi.node_id, pending_approvals=1), timeout=20)
    marks = (len(via_a.frames), len(via_b.frames))
    via_a.send({"type": "approval_decision", "id": req["id"], "decision": "deny", "reason": "from A"})
    via_b.send({"type": "approval_decision", "id": req["id"], "decision": "allow"})

    resolved_a = via_a.wait_for(is_type("approval_resolved", id=req["id"]), start=marks[0])
    resolved_b = via_b.wait_for(is_type("approval_resolved", id=req["id"]), start=marks[1])
    assert resolved_a["decision"] == resolved_b["decision"]  # one outcome, seen the same on both hypivisors
    winner = resolved_a["decision"]
    loser = via_b if winner == "deny" else via_a
    refused = loser.wait_for(is_type("error", id=req["id"]), start=marks[1] if loser is via_b else marks[0])
    assert refused["code"] == 1013
    via_b.wait_for(run_done(pi_version), start=marks[1])
    assert (pi_home.cwd / "raced.txt").exists() == (winner == "allow")
    assert len([f for f in via_b.frames[marks[1] :] if f.get("type") == "approval_resolved"]) == 1


@pytest.mark.pi
def test_a_pi_failing_over_to_the_other_hypivisor_stays_listed_after_the_dead_ones_lease_lapses(
    nats_cluster: Any, hypivisor_factory: Callable[..., HypivisorProc], start_pi: Any, agent_client: Any
) -> None:
    """The pinned pi with ``HYPIVISOR_WS=A,B``: on B's dashboard as A's; SIGKILL A → it registers on B, which then
    shows it as its own (no ``hv``), and the lapse of A's lease (which drops A's records everywhere) leaves it:
    its record, re-put by B, is newer than what A left."""
    from integration_tests.test_pi_resilience import registry

    a, b = start_pair(nats_cluster, hypivisor_factory)
    dash_b = registry(agent_client, b)
    pi = start_pi(env={"HYPIVISOR_WS": f"{a.ws_url},{b.ws_url}", "HYPI_TOKEN": TOKEN})

    def on_b() -> dict | None:
        rid = f"ls-{time.monotonic_ns()}"
        mark = len(dash_b.frames)
        dash_b.send({"id": rid, "method": "list_nodes"})
        reply = dash_b.wait_for(lambda f: f.get("id") == rid, start=mark, timeout=10)
        return next((n for n in reply["result"]["nodes"] if n["id"] == pi.node_id), None)

    first = wait_until(on_b, 20, "the pi on B's roster")
    assert first["hv"], first  # A holds it
    a.kill()
    t0 = time.monotonic()
    wait_until(lambda: (n := on_b()) is not None and "hv" not in n and n["status"] == "active", 15, "the pi on B")
    moved = time.monotonic() - t0
    time.sleep(LEASE_TTL + 1.5)  # A's lease lapses: every hypivisor drops A's records
    after = on_b()
    assert after is not None and "hv" not in after and after["status"] == "active", after
    print(f"\nthe pi moved to B {moved:.2f} s after A's SIGKILL and stayed after A's lease lapsed")
    link = agent_client(b.agent_url(pi.node_id), b.auth_headers)
    assert link.wait_for(lambda f: f.get("type") == "init_state")["node"]["id"] == pi.node_id


def test_no_nats_server_is_one_clear_line_and_exit_2(hypivisor_factory: Callable[..., HypivisorProc]) -> None:
    import subprocess

    hv = hypivisor_factory(token=TOKEN, args=["--nats", f"nats://127.0.0.1:{free_port()}"], start=False)
    t0 = time.monotonic()
    done = subprocess.run(hv.argv, env=hv.env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    assert "no NATS server of nats://127.0.0.1:" in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert time.monotonic() - t0 < 30


async def test_a_burst_of_registrations_on_one_hypivisor_all_reach_the_other(
    nats_cluster: Any, hypivisor_factory: Callable[..., HypivisorProc]
) -> None:
    a, b = start_pair(nats_cluster, hypivisor_factory)
    count = 200
    async with await RegistryClient.connect(a) as agents, await RegistryClient.connect(b) as dash_b:
        await agents.event("init")
        await dash_b.event("init")
        t0 = time.monotonic()
        ids = [await agents.send("register", node_params(f"burst-{i}", 41000 + i, machine="machine-a"))
               for i in range(count)]  # fmt: skip
        for rid in ids:
            assert "result" in await agents.reply(rid, timeout=20)

        async def all_on_b() -> bool:
            reply = await dash_b.call("list_nodes", timeout=20)
            return sum(1 for n in reply["result"]["nodes"] if n["id"].startswith("burst-") and n.get("hv")) == count

        await until(all_on_b, 20, f"{count} agents of A on B")
        took = time.monotonic() - t0
    print(f"\n{count} registrations on A listed on B after {took:.2f} s")
