"""Fail-over across a list of hypivisors (specs/cluster.md §8): ``HYPIVISOR_WS=ws://a/ws,ws://b/ws``.

Two real hypivisors with no backplane (each its own registry), the same ``HYPI_TOKEN``. A bridge (the real bridge
process, its shim faked) and a machine service (``python -m pi_socket serve``) register with the first; when it is
killed with SIGKILL they appear on the second within 2 s, and work there: an agent link through it (a dial-back to
it, since the agent's advertised port is one nothing listens on), a spawn on the machine through it.
"""

from __future__ import annotations

import asyncio
import json
import time

import pytest
import websockets

from integration_tests.harness.hypivisor_proc import HypivisorProc, RegistryClient
from integration_tests.harness.machines import Machine
from integration_tests.harness.pi_proc import wait_until
from integration_tests.harness.spawn import NEEDS_TMUX
from integration_tests.test_dialback import closed_port, hv_log, node_of
from pi_socket.tests.fake_shim import FakeShim

TOKEN = "failover-token-0123456789"
FAILOVER_S = 2.0


async def wait_node(dash: RegistryClient, node_id: str, timeout: float) -> float:
    """Seconds until ``node_id`` is active in ``dash``'s hypivisor (polled, bounded)."""
    start = deadline = time.monotonic()
    deadline += timeout
    while time.monotonic() < deadline:
        nodes = (await dash.call("list_nodes", {}))["result"]["nodes"]
        if any(n["id"] == node_id and n["status"] == "active" for n in nodes):
            return time.monotonic() - start
        await asyncio.sleep(0.05)
    raise AssertionError(f"{node_id} not on this hypivisor within {timeout} s")


async def wait_machine(dash: RegistryClient, name: str, timeout: float) -> float:
    start = deadline = time.monotonic()
    deadline += timeout
    while time.monotonic() < deadline:
        machines = (await dash.call("list_machines"))["result"]["machines"]
        if any(m["name"] == name and m["online"] for m in machines):
            return time.monotonic() - start
        await asyncio.sleep(0.05)
    raise AssertionError(f"machine {name} not online on this hypivisor within {timeout} s")


async def node_ids(hv: HypivisorProc) -> set[str]:
    async with await RegistryClient.connect(hv) as dash:
        return {n["id"] for n in (await dash.call("list_nodes", {}))["result"]["nodes"] if n["status"] == "active"}


async def test_a_bridge_fails_over_to_the_next_hypivisor_and_is_reached_through_it(tmp_path, hypivisor_factory):
    a, b = hypivisor_factory(token=TOKEN), hypivisor_factory(token=TOKEN)
    (tmp_path / "agent").mkdir()
    bridge = FakeShim(
        tmp_path / "agent",
        node_id="failover-bridge",
        env={
            "HYPIVISOR_WS": f"{a.ws_url},{b.ws_url}",
            "HYPI_TOKEN": TOKEN,
            "PI_SOCKET_ADVERTISE_PORT": str(closed_port()),  # links must come over the dial-back
        },
    )
    await bridge.start()
    try:
        await node_of(a, "failover-bridge")  # the first of the list
        assert "failover-bridge" not in await node_ids(b)
        async with await RegistryClient.connect(b) as dash_b:
            a.kill()  # SIGKILL: no goodbye on the connection
            took = await wait_node(dash_b, "failover-bridge", timeout=10)
            assert took <= FAILOVER_S, f"fail-over took {took:.2f} s"

        async with websockets.connect(b.agent_url("failover-bridge"), additional_headers=b.auth_headers) as ws:
            init = json.loads(await asyncio.wait_for(ws.recv(), 10))
            assert init["type"] == "init_state" and init["node"]["id"] == "failover-bridge"
        await asyncio.sleep(0.3)
        assert any(r.get("msg") == "agent link dialled back" for r in hv_log(b))  # dialled back to B, who asked

        a.start()  # A back: the bridge stays where it works (no flapping back to the first of the list)
        await asyncio.sleep(1.5)
        assert "failover-bridge" not in await node_ids(a)
        assert "failover-bridge" in await node_ids(b)
    finally:
        await bridge.stop()


async def test_a_bridge_whose_first_hypivisor_is_down_registers_with_the_next_at_once(tmp_path, hypivisor_factory):
    a = hypivisor_factory(token=TOKEN, start=False)  # never started: its port refuses
    b = hypivisor_factory(token=TOKEN)
    (tmp_path / "agent").mkdir()
    bridge = FakeShim(
        tmp_path / "agent",
        node_id="second-choice",
        env={"HYPIVISOR_WS": f"{a.ws_url},{b.ws_url}", "HYPI_TOKEN": TOKEN, "PI_SOCKET_RECONNECT_MS": "5000"},
    )
    started = time.monotonic()
    await bridge.start()
    try:
        async with await RegistryClient.connect(b) as dash_b:
            await wait_node(dash_b, "second-choice", timeout=10)
        assert time.monotonic() - started < 5.0  # not after the 5 s backoff: the next one is tried at once
    finally:
        await bridge.stop()


@NEEDS_TMUX
async def test_a_machine_service_fails_over_and_spawns_through_the_next_hypivisor(tmp_path, hypivisor_factory):
    a = hypivisor_factory(token=TOKEN, env={"PI_SOCKET_MACHINE": "hub-a"})
    b = hypivisor_factory(token=TOKEN, env={"PI_SOCKET_MACHINE": "hub-b"})
    m = Machine(tmp_path, "gamma", f"{a.ws_url},{b.ws_url}", token=TOKEN).start()
    (m.home / "work").mkdir()
    try:
        async with await RegistryClient.connect(a) as dash_a:
            await wait_machine(dash_a, "gamma", timeout=20)
        async with await RegistryClient.connect(b) as dash_b:
            assert not [x for x in (await dash_b.call("list_machines"))["result"]["machines"] if x["name"] == "gamma"]
            a.kill()
            took = await wait_machine(dash_b, "gamma", timeout=10)
            assert took <= FAILOVER_S, f"fail-over took {took:.2f} s\n{m.stderr()}"
            # a spawn through B: the machine starts pi with HYPIVISOR_WS naming B first, and it registers on B
            res = await dash_b.call("spawn_agent", {"machine": "gamma", "path": "work"}, timeout=60)
            assert "result" in res, (res, m.stderr())
            assert res["result"]["node"]["machine"] == "gamma"
    finally:
        m.kill()
        m.tmux("kill-server")


@pytest.mark.pi
def test_a_real_pi_fails_over_and_is_prompted_through_the_next_hypivisor(
    hypivisor_factory, start_pi, agent_client, fake_llm
):
    """The pinned pi (fake LLM, the shim and its bridge as installed): registered on A, on B within 2 s of A's
    SIGKILL, then prompted through B with a streamed answer."""
    a, b = hypivisor_factory(token=TOKEN), hypivisor_factory(token=TOKEN)
    env = {
        "HYPIVISOR_WS": f"{a.ws_url},{b.ws_url}",
        "HYPI_TOKEN": TOKEN,
        "PI_SOCKET_ADVERTISE_PORT": str(closed_port()),
    }
    pi = start_pi(env=env)
    asyncio.run(node_of(a, pi.node_id))

    async def fail_over() -> float:
        async with await RegistryClient.connect(b) as dash_b:
            a.kill()
            return await wait_node(dash_b, pi.node_id, timeout=10)

    took = asyncio.run(fail_over())
    assert took <= FAILOVER_S, f"fail-over took {took:.2f} s"
    c = agent_client(b.agent_url(pi.node_id), headers=b.auth_headers)
    assert c.wait_for(lambda f: f["type"] == "init_state")["node"]["id"] == pi.node_id
    text = fake_llm.slow(words=8, delay=0.02)
    c.send({"type": "prompt", "id": "p1", "text": "through the second hypivisor"})
    c.wait_for(lambda f: f["type"] == "ack" and f.get("id") == "p1")
    end = c.wait_for(lambda f: f["type"] == "message_end" and f["message"]["role"] == "assistant", timeout=30)
    assert text.split()[-1] in json.dumps(end["message"])
    wait_until(lambda: any(r.get("msg") == "agent link dialled back" for r in hv_log(b)), 5, "a dial-back to B")


async def test_a_spawned_agents_tmux_session_is_back_after_its_hypivisor_restarts(tmp_path, hypivisor_factory):
    """A restarted hypivisor knows no spawn: the bridge reports the tmux session its spawn named
    (PI_SOCKET_TMUX_SESSION), so the card still shows `tmux attach -t …`; a bad name is not taken."""
    hv = hypivisor_factory(token=TOKEN)
    shims = []
    for node_id, session in (("tmux-bridge", "pi-app-1a2b3c"), ("odd-bridge", "x;rm -rf ~")):
        (tmp_path / node_id).mkdir()
        shim = FakeShim(
            tmp_path / node_id,
            node_id=node_id,
            env={"HYPIVISOR_WS": hv.ws_url, "HYPI_TOKEN": TOKEN, "PI_SOCKET_TMUX_SESSION": session},
        )
        await shim.start()
        shims.append(shim)
    try:
        for _ in range(2):  # before and after a SIGKILL and restart on the same port
            deadline = time.monotonic() + 15
            while True:
                async with await RegistryClient.connect(hv) as dash:
                    nodes = {n["id"]: n for n in (await dash.call("list_nodes", {}))["result"]["nodes"]}
                if {"tmux-bridge", "odd-bridge"} <= nodes.keys() or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.2)
            assert nodes["tmux-bridge"]["tmux_session"] == "pi-app-1a2b3c"
            assert nodes["odd-bridge"].get("tmux_session") is None  # registered, without the bad name
            hv.restart()
    finally:
        for shim in shims:
            await shim.stop()
