"""The /ws registry of a real `python -m hypivisor`: roster lifecycle, errors, sweeps, concurrency, CLI."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time

import pytest
import websockets

from integration_tests.harness.hypivisor_proc import HypivisorProc, RegistryClient, node_params

SECRET = "node-secret-of-test-0001"


async def test_roster_lifecycle_pushes_to_dashboards_only(hypivisor):
    async with await RegistryClient.connect(hypivisor) as dash:
        init = await dash.event("init")
        assert init["protocol_version"] == "1.1" and init["nodes"] == []
        async with await RegistryClient.connect(hypivisor) as bridge:
            res = await bridge.call("register", node_params("n1", 8001, pid=123, node_secret=SECRET))
            assert res["result"]["status"] == "registered" and res["result"]["heartbeat_interval"] == pytest.approx(10)
            joined = await dash.event("node_joined")
            assert joined["node"]["id"] == "n1" and joined["node"]["status"] == "active"

            await bridge.call("heartbeat", {"id": "n1", "activity": "working", "session_name": "fix bug"})
            updated = await dash.event("node_updated")
            assert updated["node"]["activity"] == "working" and updated["node"]["session_name"] == "fix bug"
            assert (await bridge.call("heartbeat", {"id": "n1", "activity": "working"}))["result"] == {"status": "ok"}

            nodes = (await dash.call("list_nodes"))["result"]["nodes"]
            assert [n["id"] for n in nodes] == ["n1"]
        assert (await dash.event("node_offline"))["id"] == "n1"
        # no node_updated for the unchanged heartbeat, and the bridge got no roster pushes
        assert [e["event"] for e in dash.events if not e["event"].startswith("machine_")] == []
        assert [e["event"] for e in bridge.events] == ["init"]

        async with await RegistryClient.connect(hypivisor) as bridge2:
            refused = await bridge2.call("register", node_params("n1", 8001))  # the id belongs to its secret
            assert refused["error"]["code"] == 1002 and "belongs to another agent" in refused["error"]["message"]
            await bridge2.call("register", node_params("n1", 8001, node_secret=SECRET))
            assert (await dash.event("node_joined"))["node"]["status"] == "active"
            assert (await bridge2.call("deregister", {"id": "n1"}))["result"] == {"status": "deregistered"}
            removed = await dash.event("node_removed")
            assert removed == {"event": "node_removed", "id": "n1", "reason": "deregistered"}


async def test_a_bridge_or_machine_that_says_so_gets_no_roster(hypivisor):
    """`X-Hypi-Role: agent|machine`: no init and no roster events (a reconnect storm copies no roster); the role
    grants nothing and every method still answers."""
    async with await RegistryClient.connect(hypivisor) as dash:
        await dash.event("init")
        for role, i in (("agent", 1), ("Machine", 2)):
            headers = {**hypivisor.auth_headers, "X-Hypi-Role": role}
            async with await RegistryClient.connect(hypivisor, additional_headers=headers) as quiet:
                res = await quiet.call("register", node_params(f"q{i}", 8100 + i, node_secret=SECRET))
                assert res["result"]["status"] == "registered"
                assert (await dash.event("node_joined"))["node"]["id"] == f"q{i}"
                listed = (await quiet.call("list_nodes"))["result"]["nodes"]  # asking still works
                assert f"q{i}" in [n["id"] for n in listed]
                assert quiet.events == [], quiet.events  # no init, no node_joined of itself or anyone
        # without a token the header opens nothing
        if hypivisor.auth_headers:
            with pytest.raises(websockets.InvalidStatus):
                await RegistryClient.connect(hypivisor, additional_headers={"X-Hypi-Role": "agent"})


async def test_eviction_only_by_machine_and_port(hypivisor):
    async with await RegistryClient.connect(hypivisor) as dash, await RegistryClient.connect(hypivisor) as b:
        await dash.event("init")
        for i in range(3):  # three agents in one folder coexist
            await b.call("register", node_params(f"same-cwd-{i}", 8100 + i, cwd="/shared"))
        await b.call("register", node_params("replacement", 8100, cwd="/other"))
        assert (await dash.event("node_removed", id="same-cwd-0"))["reason"] == "evicted"
        ids = sorted(n["id"] for n in (await dash.call("list_nodes"))["result"]["nodes"])
        assert ids == ["replacement", "same-cwd-1", "same-cwd-2"]


async def test_bad_input_gets_errors_and_changes_nothing(hypivisor):
    async with await RegistryClient.connect(hypivisor) as c:
        await c.event("init")
        await c.ws.send("not json{")
        assert (await c.reply(None))["error"]["code"] == -32700
        cases = [
            ("nope", None, -32601),
            ("register", {"id": "x"}, -32602),
            ("register", {**node_params("x", 1), "bogus": 1, "port": "one"}, -32602),
            ("list_directories", {"path": 5}, -32602),
            ("heartbeat", {"id": "ghost"}, 1006),
            ("deregister", {"id": "ghost"}, 1006),
        ]
        for method, params, code in cases:
            res = await c.call(method, params)
            assert res["error"]["code"] == code, (method, res)
            assert res["error"]["message"]
        await c.ws.send(json.dumps([1, 2]))
        assert (await c.reply(None))["error"]["code"] == -32600
        assert (await c.call("list_nodes"))["result"]["nodes"] == []  # still open, nothing registered


async def test_offline_after_close_then_removed_after_ttl(hypivisor_factory):
    hv = hypivisor_factory(ttl=1)
    async with await RegistryClient.connect(hv) as dash:
        await dash.event("init")
        bridge = await RegistryClient.connect(hv)
        await bridge.call("register", node_params("t1", 8200))
        await bridge.close()
        t0 = time.monotonic()
        await dash.event("node_offline", id="t1")
        removed = await dash.event("node_removed", id="t1", timeout=5)
        assert removed["reason"] == "ttl" and 0.8 < time.monotonic() - t0 < 5.0  # TTL 1 s + sweep 0.5 s + load


async def test_silent_active_node_is_removed_as_ghost_after_three_ttl(hypivisor_factory):
    hv = hypivisor_factory(ttl=1)
    async with await RegistryClient.connect(hv) as dash, await RegistryClient.connect(hv) as bridge:
        await dash.event("init")
        await bridge.call("register", node_params("g1", 8300))
        t0 = time.monotonic()
        removed = await dash.event("node_removed", id="g1", timeout=10)
        assert removed["reason"] == "ghost" and 2.9 < time.monotonic() - t0 < 8.0


async def test_heartbeats_keep_a_node_alive_past_the_ghost_limit(hypivisor_factory):
    hv = hypivisor_factory(ttl=1)
    async with await RegistryClient.connect(hv) as dash, await RegistryClient.connect(hv) as bridge:
        await dash.event("init")
        interval = (await bridge.call("register", node_params("h1", 8400)))["result"]["heartbeat_interval"]
        for _ in range(int(4.5 / interval)):
            await asyncio.sleep(interval)
            await bridge.call("heartbeat", {"id": "h1"})
        assert [n["id"] for n in (await dash.call("list_nodes"))["result"]["nodes"]] == ["h1"]


async def test_dead_peer_without_close_frame_goes_offline_within_heartbeat(hypivisor_factory):
    hv = hypivisor_factory(ttl=1.5)
    async with await RegistryClient.connect(hv) as dash:
        await dash.event("init")
        bridge = await RegistryClient.connect(hv, ping_interval=None)
        hb = (await bridge.call("register", node_params("d1", 8500)))["result"]["heartbeat_interval"]
        bridge.ws.transport.pause_reading()  # alive TCP, but never answers a ping again
        t0 = time.monotonic()
        await dash.event("node_offline", id="d1", timeout=5)  # without pings it would stay active
        assert time.monotonic() - t0 < 2 * hb + 3
        bridge.ws.transport.abort()


async def test_slow_listing_never_delays_list_nodes(hypivisor_factory, tmp_path):
    home = tmp_path / "bighome"
    big = home / "big"
    big.mkdir(parents=True)
    for i in range(10_000):
        (big / f"d{i:05}").mkdir()
    hv = hypivisor_factory(home=home)
    async with await RegistryClient.connect(hv) as c:
        await c.event("init")
        slow = await c.send("list_directories", {"path": "big"})
        fast = await c.send("list_nodes")
        order = [(await c._read_one(10))["id"] for _ in range(2)]
        assert order == [fast, slow]
        listing = c._replies[slow]["result"]
        assert len(listing["directories"]) == 10_000 and listing["directories"][0]["name"] == "d00000"


async def test_list_directories_from_home(hypivisor_factory, tmp_path):
    home = tmp_path / "h"
    (home / "b").mkdir(parents=True)
    (home / "a").mkdir()
    (home / ".secret").mkdir()
    hv = hypivisor_factory(home=home)
    async with await RegistryClient.connect(hv) as c:
        res = (await c.call("list_directories"))["result"]
        assert [d["name"] for d in res["directories"]] == ["a", "b"] and res["parent"] is None
        assert res["home"] == res["path"] == str(home.resolve())
        for path, code in (("..", 1003), ("/etc", 1003), ("missing", 1004), ("a\x00b", 1005)):
            assert (await c.call("list_directories", {"path": path}))["error"]["code"] == code


def test_port_in_use_is_one_clear_line_and_exit_2(hypivisor, tmp_path):
    clash = HypivisorProc(home=tmp_path, port=hypivisor.port, dashboard=False)
    proc = subprocess.run(clash.argv, env=clash.env, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if "already in use" in ln]
    assert len(lines) == 1 and str(hypivisor.port) in lines[0]


def test_startup_line_and_token_warning(hypivisor):
    out = hypivisor.stdout()
    assert f"ws://127.0.0.1:{hypivisor.port}/ws" in out and f"http://127.0.0.1:{hypivisor.dashboard_port}/" in out
    assert "HYPI_TOKEN is not set" in hypivisor.stderr()


def test_help_documents_options():
    proc = subprocess.run([sys.executable, "-m", "hypivisor", "--help"], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0
    for word in ("--port", "--node-ttl", "--dashboard-port", "HYPI_TOKEN", "HYPI_SPAWN_COMMAND"):
        assert word in proc.stdout


async def test_restart_on_same_ports_after_sigkill(hypivisor):
    port = hypivisor.port
    hypivisor.kill()
    with pytest.raises(OSError):
        await websockets.connect(hypivisor.ws_url, open_timeout=2)
    hypivisor.restart()
    assert hypivisor.port == port
    async with await RegistryClient.connect(hypivisor) as c:
        assert (await c.event("init"))["nodes"] == []


async def test_stale_socket_closing_late_keeps_the_new_registration_active(hypivisor):
    async with await RegistryClient.connect(hypivisor) as dash:
        await dash.event("init")
        old = await RegistryClient.connect(hypivisor)
        await old.call("register", node_params("same", 8600, node_secret=SECRET))
        async with await RegistryClient.connect(hypivisor) as new:  # the bridge reconnected first
            await new.call("register", node_params("same", 8600, node_secret=SECRET))
            await old.close()  # ...and the old socket's close arrives late
            await dash.call("list_nodes")  # a round trip after the close was processed
            await asyncio.sleep(0.2)
            nodes = (await dash.call("list_nodes"))["result"]["nodes"]
            assert [(n["id"], n["status"]) for n in nodes] == [("same", "active")]
            assert not [e for e in dash.events if e["event"] == "node_offline"]
        assert (await dash.event("node_offline", id="same"))["id"] == "same"  # the owner's close does count
