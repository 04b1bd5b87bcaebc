"""Smoke: the bridge starts, says ready, serves init_state, exits on stdin EOF."""

from __future__ import annotations

from .bridge_helpers import open_client, recv_json
from .fake_shim import FakeShim


async def test_ready_then_init_state(shim: FakeShim):
    assert shim.port > 0 and shim.url == f"ws://127.0.0.1:{shim.port}/"
    async with await open_client(shim) as ws:
        init = await recv_json(ws)
    assert init["type"] == "init_state"
    assert init["node"]["id"] == "node-test"
    assert init["model"] == "fake/fake-model"
    assert init["commands"][0]["name"] == "deploy"
    await shim.close_stdin()
    assert await shim.wait_exit() == 0
    assert await shim.stderr_text() == ""
