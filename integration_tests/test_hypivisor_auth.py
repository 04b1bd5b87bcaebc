"""HYPI_TOKEN and Origin on every WebSocket endpoint, checked before the upgrade."""

from __future__ import annotations

import asyncio
import json
from urllib.parse import quote

import pytest
import websockets
from websockets.exceptions import InvalidStatus

from hypivisor.access import encode_protocol_token
from integration_tests.harness.hypivisor_proc import RegistryClient, node_params

TOKEN = "s3cret-Tok/en+="


async def rejected(url: str, **kw) -> int:
    with pytest.raises(InvalidStatus) as e:
        await websockets.connect(url, open_timeout=5, **kw)
    return e.value.response.status_code


@pytest.fixture
async def setup(hypivisor_factory):
    """A hypivisor with a token and a toy agent registered as 'agent'."""
    hv = hypivisor_factory(token=TOKEN)
    seen: list = []

    async def agent(ws):
        seen.append(ws.request)
        await ws.send("hi")
        await ws.wait_closed()

    server = await websockets.serve(agent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    bridge = await RegistryClient.connect(hv)
    assert "result" in await bridge.call("register", node_params("agent", port))
    try:
        yield hv, seen
    finally:
        await bridge.close()
        server.close()


def endpoints(hv):
    return {"registry": hv.ws_url, "agent": hv.agent_url("agent"),
            "dashboard-port registry": f"ws://127.0.0.1:{hv.dashboard_port}/ws"}  # fmt: skip


async def test_missing_or_wrong_token_is_401_everywhere(setup):
    hv, seen = setup
    for name, url in endpoints(hv).items():
        assert await rejected(url) == 401, name
        assert await rejected(url, additional_headers={"Authorization": "Bearer wrong"}) == 401, name
        assert await rejected(url + "?token=wrong") == 401, name
        assert await rejected(url, subprotocols=["hypi.v1", encode_protocol_token("wrong")]) == 401, name
    assert seen == []  # nothing reached the agent


async def test_right_token_by_header_subprotocol_or_query(setup):
    hv, seen = setup
    ways = [
        dict(additional_headers={"Authorization": f"Bearer {TOKEN}"}),
        dict(subprotocols=["hypi.v1", encode_protocol_token(TOKEN)]),
        dict(query=f"?token={quote(TOKEN, safe='')}"),
    ]
    for way in ways:
        query = way.pop("query", "")
        async with websockets.connect(hv.ws_url + query, **way) as ws:
            assert json.loads(await ws.recv())["event"] == "init"
            if "subprotocols" in way:
                assert ws.subprotocol == "hypi.v1"  # never the token protocol
        async with websockets.connect(hv.agent_url("agent") + query, **way) as ws:
            assert await ws.recv() == "hi"
    # the agent saw the hypivisor's own token, never the dashboard's carrier of it (header, subprotocol, query)
    for request in seen[:3]:
        assert request.headers["Authorization"] == f"Bearer {TOKEN}"
        assert "token=" not in request.path and "hypi-token" not in request.headers.get("Sec-WebSocket-Protocol", "")
    assert "hypi.v1" in seen[1].headers["Sec-WebSocket-Protocol"]


async def test_cross_site_origin_is_403_even_with_the_token(setup):
    hv, seen = setup
    headers = {"Authorization": f"Bearer {TOKEN}"}
    for name, url in endpoints(hv).items():
        assert await rejected(url, origin="https://evil.example", additional_headers=headers) == 403, name
    assert seen == []
    origin = f"http://localhost:{hv.dashboard_port}"
    async with websockets.connect(hv.agent_url("agent"), origin=origin, additional_headers=headers) as ws:
        assert await ws.recv() == "hi"
    assert "Origin" not in seen[-1].headers


async def test_allowed_origins_from_environment(hypivisor_factory):
    hv = hypivisor_factory(env={"HYPI_ALLOWED_ORIGINS": "https://pi.example.ts.net"})
    async with websockets.connect(hv.ws_url, origin="https://pi.example.ts.net") as ws:
        assert json.loads(await ws.recv())["event"] == "init"
    assert await rejected(hv.ws_url, origin="https://other.ts.net") == 403


async def test_token_never_appears_in_logs(setup):
    hv, _ = setup
    await rejected(hv.ws_url + f"?token={quote(TOKEN + 'x', safe='')}")
    async with websockets.connect(hv.ws_url + f"?token={quote(TOKEN, safe='')}"):
        pass
    await asyncio.sleep(0.2)
    everything = hv.log_lines() + hv.stdout() + hv.stderr()
    assert "websocket rejected" in everything
    assert TOKEN not in everything and "s3cret" not in everything
