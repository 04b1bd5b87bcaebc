"""Agent lifecycle faults against a real hypivisor (specs/reliability.md).

What the user sees in the roster when pi ends:
- clean quit, or pi SIGKILLed (its bridge sees stdin EOF): the node leaves at once (deregistered);
- pi and bridge both SIGKILLed (a crash): the kernel closes the socket, the node is offline at once and
  removed after the TTL;
- the agent hangs (SIGSTOP, socket open, silent): offline within ~1.5 heartbeat intervals, removed after TTL;
- no ghost nodes: 5 real-pi cycles mixing those exits, and 50 start/stop cycles of real bridge processes
  (the cheap stand-in registrant: ``pi_socket/tests/fake_shim.py``), end with an empty roster and exactly one
  join and one removal per agent.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time

import pytest

from integration_tests.harness.hypivisor_proc import RegistryClient
from integration_tests.harness.pi_proc import pid_alive, wait_until
from pi_socket.tests.fake_shim import FakeShim

TTL = 2.0  # heartbeat interval TTL/3, sweep every TTL/2


async def next_about(dash: RegistryClient, node_id: str, timeout: float) -> dict:
    """The next roster event naming ``node_id`` (bounded)."""
    deadline = time.monotonic() + timeout
    while True:
        for i, ev in enumerate(dash.events):
            if ev.get("id") == node_id or ev.get("node", {}).get("id") == node_id:
                return dash.events.pop(i)
        await dash._read_one(max(0.01, deadline - time.monotonic()))


async def gone(dash: RegistryClient, node_id: str, timeout: float) -> list[tuple[str, float]]:
    """Events about ``node_id`` until it is removed: [(event or reason, seconds)]."""
    t0, seen = time.monotonic(), []
    while True:
        ev = await next_about(dash, node_id, timeout)
        if ev["event"] == "node_updated" and ev["node"]["status"] == "active":
            continue  # heartbeats with news (model, session name) are not part of leaving
        label = ev["event"] + (f":{ev['reason']}" if ev["event"] == "node_removed" else "")
        seen.append((label, round(time.monotonic() - t0, 2)))
        if ev["event"] == "node_removed":
            return seen


def kill(pid: int | None, sig=signal.SIGKILL) -> None:
    if pid and pid_alive(pid):
        os.kill(pid, sig)


@pytest.mark.pi
async def test_real_pi_exits_five_cycles_roster_follows_and_no_ghosts(hypivisor_factory, start_pi):
    hv = hypivisor_factory(ttl=TTL)
    modes = ["quit", "sigkill-pi", "crash-both", "quit", "sigkill-pi"]
    report = []
    async with await RegistryClient.connect(hv) as dash:
        await dash.event("init")
        for mode in modes:
            # crash-both SIGKILLs pi's own bridge child (a service-served agent's crash: test_machine_hosting.py)
            pi = await asyncio.to_thread(
                start_pi, "0.73.1", "rpc", env={"HYPIVISOR_WS": hv.ws_url, "PI_SOCKET_MODE": "bridge"}
            )
            joined = await next_about(dash, pi.node_id, 20)
            assert joined["event"] == "node_joined" and joined["node"]["pid"] == pi.proc.pid
            bridge = pi.bridge_pid()
            if mode == "quit":
                await asyncio.to_thread(pi.stop)
            elif mode == "sigkill-pi":
                kill(pi.proc.pid)
            else:  # crash-both: nothing runs any cleanup
                kill(bridge)
                kill(pi.proc.pid)
            events = await gone(dash, pi.node_id, 3 * TTL + 5)
            report.append((mode, events))
            if mode == "crash-both":
                assert events[0][0] == "node_offline" and events[0][1] < 1.5, events
                assert events[-1][0] == "node_removed:ttl" and events[-1][1] <= TTL + TTL / 2 + 2, events
            else:  # the bridge deregisters: gone at once, never a ghost
                assert events == [("node_removed:deregistered", events[0][1])] and events[0][1] < 3, events
            if bridge:
                await asyncio.to_thread(wait_until, lambda pid=bridge: not pid_alive(pid), 5, "the bridge to exit")
        assert (await dash.call("list_nodes"))["result"]["nodes"] == []
    print(f"RESULT real pi exits: {report}")


async def test_hung_agent_goes_offline_by_heartbeat_then_removed(hypivisor_factory, tmp_path):
    hv = hypivisor_factory(ttl=TTL)
    async with await RegistryClient.connect(hv) as dash:
        await dash.event("init")
        fake = FakeShim(tmp_path, node_id="hung", env={"HYPIVISOR_WS": hv.ws_url})
        await fake.start()
        try:
            assert (await next_about(dash, "hung", 10))["event"] == "node_joined"
            fake.proc.send_signal(signal.SIGSTOP)  # socket open, process silent: no FIN, no close frame
            events = await gone(dash, "hung", 3 * TTL + 5)
            assert events[0][0] == "node_offline" and events[0][1] <= 1.5 * TTL / 3 + 1.5, events
            assert events[-1][0] == "node_removed:ttl" and events[-1][1] <= events[0][1] + TTL + TTL / 2 + 1, events
            print(f"RESULT hung agent: {events}")
        finally:
            if fake.proc and fake.proc.returncode is None:
                fake.proc.send_signal(signal.SIGCONT)
            await fake.stop()


async def test_fifty_start_stop_cycles_leave_no_ghost_nodes(hypivisor_factory, tmp_path):
    ttl = 3.0  # a shorter TTL pings the dashboard every 0.33 s: a busy test loop would miss a pong and be dropped
    hv = hypivisor_factory(ttl=ttl)
    cycles, parallel = 50, 5
    joined, removed = {}, {}
    async with await RegistryClient.connect(hv, max_queue=None) as dash:
        await dash.event("init")

        async def one(i: int) -> None:
            d = tmp_path / f"a{i}"
            d.mkdir()
            fake = FakeShim(d, node_id=f"cycle-{i}", env={"HYPIVISOR_WS": hv.ws_url})
            await fake.start()
            try:
                deadline = time.monotonic() + 15
                while not any(r.get("msg") == "registered with hypivisor" for r in fake.log_lines()):
                    assert time.monotonic() < deadline, f"cycle-{i} never registered"
                    await asyncio.sleep(0.05)
                if i % 2 == 0:
                    await fake.close_stdin()  # pi quit: clean exit
                    assert await fake.wait_exit(5) == 0
                else:
                    fake.proc.kill()  # crash
                    await fake.proc.wait()
            finally:
                await fake.stop()

        async def collect(stop: asyncio.Event) -> None:
            while not stop.is_set() or len(removed) < cycles:
                try:
                    ev = await dash._read_one(0.5)
                except TimeoutError:
                    if stop.is_set() and time.monotonic() > collect_deadline[0]:
                        return
                    continue
                if ev.get("event") == "node_joined":
                    joined[ev["node"]["id"]] = joined.get(ev["node"]["id"], 0) + 1
                elif ev.get("event") == "node_removed":
                    removed[ev["id"]] = removed.get(ev["id"], 0) + 1

        stop, collect_deadline = asyncio.Event(), [0.0]
        collector = asyncio.create_task(collect(stop))
        for start in range(0, cycles, parallel):
            await asyncio.gather(*(one(i) for i in range(start, start + parallel)))
        stop.set()
        collect_deadline[0] = time.monotonic() + 3 * ttl + 3  # a ghost would need 3xTTL to go
        await asyncio.wait_for(collector, 30)
        nodes = (await dash.call("list_nodes"))["result"]["nodes"]
    ids = {f"cycle-{i}" for i in range(cycles)}
    assert nodes == [], f"ghost nodes: {[n['id'] for n in nodes]}"
    assert joined == {i: 1 for i in ids} and removed == {i: 1 for i in ids}
    print(f"RESULT {cycles} bridge start/stop cycles: {len(joined)} joined, {len(removed)} removed, 0 left")
