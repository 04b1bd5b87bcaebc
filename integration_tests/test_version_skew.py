"""Version skew (specs/protocol.md §0): a bridge and a hypivisor one minor version apart work in both directions.

The previous released wire is the last landed commit before protocol 1.1 (PREVIOUS): its `pi_socket` and
`hypivisor` packages are taken from git history into a temp dir and run as real processes beside today's. A
protocol 1.0 hypivisor refused every unknown param, so today's bridge must notice and register with the fields
it knows; today's hypivisor must take a 1.0 bridge's frames as they are. Another major is refused, clearly.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest
import websockets

from integration_tests.harness.gitrev import tree_at
from integration_tests.harness.hypivisor_proc import HypivisorProc, RegistryClient
from pi_socket.tests.fake_shim import FakeShim

PREVIOUS = "8d304f6"  # protocol 1.0: the last landing before 1.1 (session 6)
TOKEN = "skew-token-0123456789"


@pytest.fixture(scope="module")
def previous_tree(tmp_path_factory) -> Path:
    return tree_at(PREVIOUS, tmp_path_factory.mktemp("previous-wire"), "pi_socket", "hypivisor")


async def roster(hv: HypivisorProc) -> list[dict]:
    async with await RegistryClient.connect(hv) as reg:
        return (await reg.call("list_nodes", {}))["result"]["nodes"]


async def wait_node(hv: HypivisorProc, node_id: str, timeout: float = 15.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for node in await roster(hv):
            if node["id"] == node_id:
                return node
        await asyncio.sleep(0.2)
    raise AssertionError(f"{node_id} never registered")


async def test_a_protocol_1_0_bridge_works_with_today_s_hypivisor(tmp_path, previous_tree, hypivisor_factory):
    hv = hypivisor_factory(token=TOKEN)
    old = FakeShim(
        tmp_path,
        node_id="old-bridge",
        env={"PYTHONPATH": str(previous_tree), "HYPIVISOR_WS": hv.ws_url, "HYPI_TOKEN": TOKEN},
    )
    await old.start()
    try:
        node = await wait_node(hv, "old-bridge")
        assert node["protocol_version"] == "1" and node["capabilities"] is None
        # driven through today's proxy like any agent
        async with websockets.connect(hv.agent_url("old-bridge"), additional_headers=hv.auth_headers) as ws:
            init = json.loads(await asyncio.wait_for(ws.recv(), 10))
            assert init["type"] == "init_state" and init["node"]["id"] == "old-bridge"
        async with await RegistryClient.connect(hv) as reg:
            assert (await reg.call("list_attention", {}))["result"][
                "items"
            ] == []  # it reports no attention: nothing made up
    finally:
        await old.stop()


async def test_today_s_bridge_registers_with_a_protocol_1_0_hypivisor(tmp_path, previous_tree):
    home = tmp_path / "home"
    home.mkdir()
    # PYTHONSAFEPATH: `python -m` must not put the working directory (today's checkout) before the old tree
    old_hv = HypivisorProc(home=home, token=TOKEN, env={"PYTHONPATH": str(previous_tree), "PYTHONSAFEPATH": "1"})
    old_hv.start()
    new = FakeShim(tmp_path, node_id="new-bridge", env={"HYPIVISOR_WS": old_hv.ws_url, "HYPI_TOKEN": TOKEN})
    await new.start()
    try:
        node = await wait_node(old_hv, "new-bridge")
        assert node["protocol_version"] in ("1", "1.1") and "capabilities" not in node
        await asyncio.sleep(1.5)  # heartbeats keep it there (they too carry only what 1.0 knows)
        assert "new-bridge" in {n["id"] for n in await roster(old_hv)}
        logs = [r.get("msg") for r in new.log_lines()]
        assert "hypivisor is older (protocol 1.0): registering with the fields it knows" in logs
    finally:
        await new.stop()
        old_hv.kill()


async def test_another_major_version_is_refused_with_what_to_upgrade(hypivisor):
    async with await RegistryClient.connect(hypivisor) as reg:
        params = {"id": "future", "machine": "m", "cwd": "/", "port": 9, "protocol_version": "2.0", "warp": True}
        error = (await reg.call("register", params))["error"]
        assert error["code"] == 1016 and "2.0" in error["message"] and "upgrade the hypivisor" in error["message"]
        # a newer minor with unknown params is welcome
        params.update(id="newer-minor", protocol_version="1.9")
        result = (await reg.call("register", params))["result"]
        assert result["node"]["id"] == "newer-minor" and "warp" not in result["node"]
