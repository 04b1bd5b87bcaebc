"""The bridge's side of dial-back links (pi_socket/bridge/dialback.py, AgentServer.adopt): pure parts, and an
adopted connection served by the agent server's own protocol (the same handshake checks as its port)."""

from __future__ import annotations

import asyncio
import socket

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from pi_socket.bridge import dialback
from pi_socket.bridge.config import BridgeConfig
from pi_socket.bridge.server import AgentServer, protocol_factory
from pi_socket.protocol import CAPABILITIES

NONCE = "AbCdEfGhIjKlMnOpQrStUv"


def test_where_to_dial_back() -> None:
    assert dialback.target("ws://127.0.0.1:31415/ws") == dialback.Target("127.0.0.1", 31415, False, "")
    assert dialback.target("wss://hv.example.ts.net/ws") == dialback.Target("hv.example.ts.net", 443, True, "")
    assert dialback.target("ws://[::1]:9/hypi/ws") == dialback.Target("::1", 9, False, "/hypi")
    assert dialback.target("ws://h/") == dialback.Target("h", 80, False, "")
    for bad in ("http://h/ws", "ws://", "ws://h:99999/ws", "off"):
        with pytest.raises(dialback.DialBackError):
            dialback.target(bad)


def test_the_request_names_the_nonce_and_carries_the_token() -> None:
    head = dialback.request_head(dialback.target("ws://127.0.0.1:31415/ws"), NONCE, "s3cret")
    lines = head.decode().split("\r\n")
    assert lines[0] == f"GET /ws/dialback/{NONCE} HTTP/1.1"
    assert "Host: 127.0.0.1:31415" in lines and "Upgrade: hypi-dialback" in lines and "Connection: Upgrade" in lines
    assert "Authorization: Bearer s3cret" in lines and head.endswith(b"\r\n\r\n")
    bare = dialback.request_head(dialback.target("wss://[::1]/p/ws"), NONCE, None).decode()
    assert bare.startswith(f"GET /p/ws/dialback/{NONCE} HTTP/1.1") and "Host: [::1]\r\n" in bare
    assert "Authorization" not in bare


def test_only_nonces_of_the_hypivisors_shape_are_dialled() -> None:
    assert dialback.valid_nonce(NONCE)
    for bad in (None, 5, "", "short", "a/b" * 10, "x" * 129, NONCE + " ", "ü" * 20, "../../" * 4):
        assert not dialback.valid_nonce(bad)


def test_reading_the_answer() -> None:
    assert dialback.read_answer(b"HTTP/1.1 101 Switching") is None
    ok = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: hypi-dialback\r\nConnection: Upgrade\r\n\r\nGET / HTTP/1.1\r\n"
    answer = dialback.read_answer(ok)
    assert answer is not None and answer.status == 101 and ok[answer.end :] == b"GET / HTTP/1.1\r\n"
    refused = (
        b'HTTP/1.1 410 Gone\r\nConnection: close\r\n\r\n{"error":{"code":1006,"message":"dial-back nonce expired"}}'
    )
    answer = dialback.read_answer(refused)
    assert answer is not None and answer.status == 410 and answer.message == "dial-back nonce expired"
    for bad in (b"SSH-2.0\r\n\r\n", b"HTTP/1.1 abc\r\n\r\n", b"HTTP/1.1 101 OK\r\nUpgrade: websocket\r\n\r\n"):
        with pytest.raises(dialback.DialBackError):
            dialback.read_answer(bad)
    with pytest.raises(dialback.DialBackError):
        dialback.read_answer(b"x" * (dialback.MAX_RESPONSE_HEAD + 1))


def test_the_capability_is_announced() -> None:
    assert dialback.CAPABILITY in CAPABILITIES


class _Holder(asyncio.Protocol):
    """Holds an accepted socket until the agent server adopts it."""


async def _adopted_pair(server: AgentServer, early: bytes = b"") -> socket.socket:
    """A connected socket pair: one end adopted by ``server`` (as a dialled-back connection), the other returned."""
    a, b = socket.socketpair()
    transport, _ = await asyncio.get_running_loop().connect_accepted_socket(_Holder, a)
    server.adopt(transport, early)  # type: ignore[arg-type]
    return b


async def test_an_adopted_connection_is_served_like_an_accepted_client() -> None:
    joined: list[object] = []

    async def ready(_timeout: float) -> None:
        return None

    def join(client: object) -> int:
        joined.append(client)
        return len(joined)

    async def dispatch(_client: object, _msg: object) -> None:
        return None

    config = BridgeConfig(port=0, token="tok-dialback-unit", allowed_origins=frozenset({"http://localhost:5180"}))
    server = AgentServer(config, ready=ready, join=join, leave=lambda _c: 0, dispatch=dispatch)
    await server.start()
    try:
        assert server.can_adopt and protocol_factory(server.server) is not None  # type: ignore[arg-type]
        # no token: the agent port's own 401, before any client joins
        with pytest.raises(InvalidStatus) as refused:
            await connect("ws://agent/", sock=await _adopted_pair(server), open_timeout=5)
        assert refused.value.response.status_code == 401 and not joined
        # a foreign Origin: 403, as on the port
        with pytest.raises(InvalidStatus) as foreign:
            await connect(
                "ws://agent/",
                sock=await _adopted_pair(server),
                origin="http://evil.example",  # type: ignore[arg-type]
                additional_headers={"Authorization": "Bearer tok-dialback-unit"},
                open_timeout=5,
            )
        assert foreign.value.response.status_code == 403 and not joined
        # the right token: the same handler joins the client; permessage-deflate is offered and taken
        async with connect(
            "ws://agent/",
            sock=await _adopted_pair(server),
            additional_headers={"Authorization": "Bearer tok-dialback-unit"},
            open_timeout=5,
        ) as ws:
            for _ in range(100):
                if joined:
                    break
                await asyncio.sleep(0.02)
            assert len(joined) == 1
            assert "permessage-deflate" in (ws.response.headers.get("Sec-WebSocket-Extensions") or "")
    finally:
        await server.close()
    # a closed server adopts nothing: the connection is closed at once
    b = await _adopted_pair(server)
    b.setblocking(False)
    assert await asyncio.wait_for(asyncio.get_running_loop().sock_recv(b, 10), 2) == b""


async def test_the_registry_client_announces_dial_back_only_when_it_can_adopt_and_dials_only_good_nonces() -> None:
    from pi_socket.bridge.hypivisor_client import HypivisorClient
    from pi_socket.protocol import HeartbeatParams, RegisterParams

    def params() -> RegisterParams:
        return RegisterParams(id="n1", machine="m", cwd="/", port=9, capabilities=list(CAPABILITIES))

    client = HypivisorClient("ws://127.0.0.1:9/ws", None, params, lambda: HeartbeatParams(id="n1"), 1.0)
    sent: list[dict] = []

    async def call(method: str, p: dict, timeout: float = 5.0) -> dict:
        sent.append(p)
        return {"status": "registered", "heartbeat_interval": 10}

    client.call = call  # type: ignore[method-assign]
    await client._register()
    assert dialback.CAPABILITY not in sent[-1]["capabilities"]  # nothing to adopt with: not announced
    dialled: list[str] = []

    async def fake_dial(nonce: str, url: str) -> None:
        assert url == "ws://127.0.0.1:9/ws"
        dialled.append(nonce)

    client._dial_back = fake_dial  # type: ignore[method-assign]
    client._on_event({"event": "dial_back", "nonce": NONCE})
    assert not client._dialling  # no adopt: ignored
    client.adopt = lambda _t, _b: None
    await client._register()
    assert dialback.CAPABILITY in sent[-1]["capabilities"]
    for bad in (None, "x", "../" * 8, NONCE + "/"):
        client._on_event({"event": "dial_back", "nonce": bad})
    client._on_event({"event": "node_joined", "nonce": NONCE})
    client._on_event({"event": "dial_back", "nonce": NONCE})
    await asyncio.sleep(0)
    assert dialled == [NONCE]


async def test_a_dial_back_goes_to_the_hypivisor_of_the_list_that_asked() -> None:
    from pi_socket.bridge.hypivisor_client import HypivisorClient
    from pi_socket.protocol import HeartbeatParams, RegisterParams

    def params() -> RegisterParams:
        return RegisterParams(id="n1", machine="m", cwd="/", port=9, capabilities=list(CAPABILITIES))

    urls = ["ws://127.0.0.1:9/ws", "ws://127.0.0.1:10/ws"]
    client = HypivisorClient(urls, None, params, lambda: HeartbeatParams(id="n1"), 1.0)
    client.adopt = lambda _t, _b: None
    dialled: list[tuple[str, str]] = []

    async def fake_dial(nonce: str, url: str) -> None:
        dialled.append((nonce, url))

    client._dial_back = fake_dial  # type: ignore[method-assign]
    assert client.url == urls[0]
    client.failover.failed()  # the first one was lost: the client is on the second now
    client._on_event({"event": "dial_back", "nonce": NONCE})
    await asyncio.sleep(0)
    assert dialled == [(NONCE, urls[1])]
