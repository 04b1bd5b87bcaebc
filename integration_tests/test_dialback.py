"""Dial-back links (specs/machines.md, "Links without inbound ports"): agents whose port the hypivisor cannot reach.

A bridge that registers with the ``dial_back`` capability is asked, over its own registry connection, to open each
browser's agent link back to the hypivisor (``GET /ws/dialback/<nonce>``); the hypivisor splices the browser to
that connection. Here the agent's registered port is one nothing listens on (``PI_SOCKET_ADVERTISE_PORT``), so the
hypivisor's direct connection is refused, as it would be on another machine with no open port: everything must go
over the dial-back. Real hypivisor, real pi (fake LLM) or the real bridge process, real Chromium for Pi-DE.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import secrets
import socket
import time
from pathlib import Path

import pytest
import websockets

from integration_tests.harness.gitrev import tree_at
from integration_tests.harness.hypivisor_proc import HypivisorProc, RegistryClient, free_port, node_params
from integration_tests.harness.pi_proc import wait_until
from pi_socket.tests.fake_shim import FakeShim

TOKEN = "dialback-token-0123456789"
PREVIOUS = "0c35c3c"  # the last commit before dial-back: its bridge has no dial_back capability


def closed_port() -> int:
    """A loopback port nothing listens on (checked): the address the hypivisor is told and cannot reach."""
    port = free_port()
    with socket.socket() as s, pytest.raises(ConnectionRefusedError):
        s.settimeout(2)
        s.connect(("127.0.0.1", port))
    return port


async def node_of(hv: HypivisorProc, node_id: str, timeout: float = 20.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        async with await RegistryClient.connect(hv) as reg:
            for node in (await reg.call("list_nodes", {}))["result"]["nodes"]:
                if node["id"] == node_id and node["status"] == "active":
                    return node
        await asyncio.sleep(0.2)
    raise AssertionError(f"{node_id} never registered")


def hv_log(hv: HypivisorProc) -> list[dict]:
    return [json.loads(line) for line in hv.log_lines().splitlines() if line.strip()]


# ------------------------------------------------------------------ a real pi whose port cannot be reached
@pytest.mark.pi
@pytest.mark.slow
def test_an_agent_whose_port_cannot_be_reached_is_driven_through_dial_back(
    hypivisor_factory, start_pi, pi_version, agent_client, fake_llm
):
    hv = hypivisor_factory(token=TOKEN)
    unreachable = closed_port()
    env = {"HYPIVISOR_WS": hv.ws_url, "HYPI_TOKEN": TOKEN, "PI_SOCKET_ADVERTISE_PORT": str(unreachable)}
    pi = start_pi(pi_version, mode="rpc", env=env)
    node = asyncio.run(node_of(hv, pi.node_id))
    assert node["port"] == unreachable != pi.port and "dial_back" in node["capabilities"]

    c = agent_client(hv.agent_url(pi.node_id), headers=hv.auth_headers)
    init = c.wait_for(lambda f: f["type"] == "init_state")
    assert init["node"]["id"] == pi.node_id
    # prompt and stream
    text = fake_llm.slow(words=12, delay=0.05)
    c.send({"type": "prompt", "id": "p1", "text": "stream over the dial-back"})
    c.wait_for(lambda f: f["type"] == "ack" and f.get("id") == "p1")
    c.wait_for(lambda f: f["type"] == "message_update")
    end = c.wait_for(lambda f: f["type"] == "message_end" and f["message"]["role"] == "assistant", timeout=30)
    assert text.split()[-1] in json.dumps(end["message"])
    # history over the same kind of link: a second connection, paged
    c2 = agent_client(hv.agent_url(pi.node_id), headers=hv.auth_headers)
    init2 = c2.wait_for(lambda f: f["type"] == "init_state")
    assert any(m["role"] == "user" and "stream over the dial-back" in json.dumps(m) for m in init2["messages"])
    c2.send({"type": "fetch_history", "before": max(1, len(init2["messages"])), "limit": 10})
    page = c2.wait_for(lambda f: f["type"] == "history_page")
    assert isinstance(page["messages"], list)
    # the hypivisor never dialled the agent's port: both links were dialled back
    lines = hv_log(hv)
    assert not [r for r in lines if r.get("msg") in ("agent unreachable", "no dial-back in time; connecting directly")]
    assert len([r for r in lines if r.get("msg") == "agent link dialled back" and r.get("node_id") == pi.node_id]) == 2
    connected = [r for r in pi.bridge_log() if r.get("msg") == "client connected"]
    assert len(connected) >= 2


# ------------------------------------------------------------------ nonces: forged, wrong token, reused, expired
def dial(hv: HypivisorProc, nonce: str, *, token: str | None = TOKEN, origin: str | None = None) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", hv.port), timeout=10)
    head = [f"GET /ws/dialback/{nonce} HTTP/1.1", f"Host: 127.0.0.1:{hv.port}", "Connection: Upgrade",
            "Upgrade: hypi-dialback"]  # fmt: skip
    if token:
        head.append(f"Authorization: Bearer {token}")
    if origin:
        head.append(f"Origin: {origin}")
    s.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
    return s


def read_head(s: socket.socket, timeout: float = 10.0, buf: bytes = b"") -> tuple[bytes, bytes]:
    """(head, bytes after it) of the next HTTP message on ``s`` (``buf``: bytes already read)."""
    s.settimeout(timeout)
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(65536)
        if not chunk:
            break
        buf += chunk
    head, _, rest = buf.partition(b"\r\n\r\n")
    return head, rest


def refusal(s: socket.socket) -> tuple[int, str]:
    head, rest = read_head(s)
    s.settimeout(5)
    body = rest
    while True:
        try:
            chunk = s.recv(65536)
        except OSError:
            break
        if not chunk:
            break
        body += chunk
    s.close()
    return int(head.split(b" ")[1]), json.loads(body)["error"]["message"]


async def next_nonce(bridge: RegistryClient) -> str:
    event = await bridge.event("dial_back", timeout=10)
    assert event["node_id"] == "db-fake" and event["expires_in"] <= 10
    return event["nonce"]


class TinyAgent:
    """The agent's own port (reachable): answers any WebSocket upgrade with one text frame, ``direct``."""

    async def __aenter__(self):
        async def handler(ws):
            await ws.send("direct")
            await ws.wait_closed()

        self.server = await websockets.serve(handler, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc):
        self.server.close()
        await self.server.wait_closed()


def serve_one_link(s: socket.socket, early: bytes) -> dict[str, str]:
    """Play the bridge on an accepted dial-back: read the browser's upgrade request, accept it, send ``dialled``."""
    head, _ = read_head(s, buf=early)
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    accept = base64.b64encode(
        hashlib.sha1((headers["sec-websocket-key"] + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest()
    )
    s.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
              b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n" + b"\x81\x07dialled")  # fmt: skip
    return {"request": lines[0], **headers}


@pytest.mark.slow
async def test_nonces_are_good_once_in_time_and_only_as_issued(hypivisor_factory):
    hv = hypivisor_factory(token=TOKEN)
    async with TinyAgent() as agent, await RegistryClient.connect(hv) as bridge:
        registered = await bridge.call("register", node_params("db-fake", agent.port, capabilities=["dial_back"]))
        assert "result" in registered, registered
        browser = asyncio.ensure_future(
            websockets.connect(hv.agent_url("db-fake"), additional_headers=hv.auth_headers, open_timeout=15)
        )
        nonce = await next_nonce(bridge)
        assert len(nonce) >= 22  # 128 random bits, url-safe

        def refused(*args, **kwargs) -> tuple[int, str]:
            return refusal(dial(hv, *args, **kwargs))

        # a forged nonce, the real one without the token, with a wrong one, from a foreign page: refused, not spent
        assert await asyncio.to_thread(refused, secrets.token_urlsafe(16)) == (
            404, "unknown dial-back nonce: this hypivisor never asked for it")  # fmt: skip
        assert (await asyncio.to_thread(refused, nonce, token=None))[0] == 401
        assert (await asyncio.to_thread(refused, nonce, token="wrong-token-0123456789"))[0] == 401
        assert (await asyncio.to_thread(refused, nonce, origin="http://evil.example"))[0] == 403
        # the real nonce with the token: 101, then the browser's own upgrade request arrives on it
        s = await asyncio.to_thread(dial, hv, nonce)
        head, early = await asyncio.to_thread(read_head, s)
        assert head.startswith(b"HTTP/1.1 101 ") and b"hypi-dialback" in head
        seen = await asyncio.to_thread(serve_one_link, s, early)
        assert seen["request"] == "GET / HTTP/1.1" and seen["authorization"] == f"Bearer {TOKEN}"
        assert "origin" not in seen  # as on a direct link: the hypivisor vouched for it and dropped it
        ws = await browser
        assert await asyncio.wait_for(ws.recv(), 5) == "dialled"  # not "direct": the dial-back carries the link
        # used: refused
        assert await asyncio.to_thread(refused, nonce) == (410, "dial-back nonce already used")
        await ws.close()
        s.close()

        # expired: nobody dials back in time, the link falls back to the agent's port; a late dial-back is refused
        t0 = time.monotonic()
        late_browser = asyncio.ensure_future(
            websockets.connect(hv.agent_url("db-fake"), additional_headers=hv.auth_headers, open_timeout=15)
        )
        late = await next_nonce(bridge)
        ws = await late_browser
        assert await asyncio.wait_for(ws.recv(), 5) == "direct" and time.monotonic() - t0 >= 4.5
        await ws.close()
        assert await asyncio.to_thread(refused, late) == (410, "dial-back nonce expired")
        await asyncio.sleep(0.3)  # the log lines are written
    reasons = [r.get("reason") for r in hv_log(hv) if r.get("msg") == "dial-back refused"]
    assert reasons == ["unknown", "used", "expired"]
    rejected = [r.get("status") for r in hv_log(hv) if r.get("msg") == "dial-back rejected"]
    assert rejected == [401, 401, 403]
    assert any(r.get("msg") == "no dial-back in time; connecting directly" for r in hv_log(hv))
    assert nonce not in hv.log_lines() and TOKEN not in hv.log_lines()


async def test_a_dial_back_the_bridge_reports_failed_falls_back_at_once(hypivisor_factory):
    """``dial_back_result {ok: false}`` from the node's own registry connection ends the wait: the link connects to
    the agent's port at once, not after the nonce's 5 s; the same report from another connection changes nothing."""
    hv = hypivisor_factory(token=TOKEN)
    async with (
        TinyAgent() as agent,
        await RegistryClient.connect(hv) as bridge,
        await RegistryClient.connect(hv) as stranger,
    ):
        registered = await bridge.call("register", node_params("db-fake", agent.port, capabilities=["dial_back"]))
        assert "result" in registered, registered

        async def browser() -> str:
            # close_timeout: the fake bridge below never answers a close frame
            url, headers = hv.agent_url("db-fake"), hv.auth_headers
            async with websockets.connect(url, additional_headers=headers, close_timeout=0.2) as ws:
                return await asyncio.wait_for(ws.recv(), 10)

        t0 = time.monotonic()
        link = asyncio.ensure_future(browser())
        nonce = await next_nonce(bridge)
        assert (await bridge.call("dial_back_result", {"nonce": nonce, "ok": False, "error": "refused"}))[
            "result"
        ] == {}
        assert await link == "direct" and time.monotonic() - t0 < 2.5

        # another connection's report is ignored: the bridge's own dial-back still carries the link
        link = asyncio.ensure_future(browser())
        nonce = await next_nonce(bridge)
        assert "result" in await stranger.call("dial_back_result", {"nonce": nonce, "ok": False})
        s = await asyncio.to_thread(dial, hv, nonce)
        head, early = await asyncio.to_thread(read_head, s)
        assert head.startswith(b"HTTP/1.1 101 ")
        await asyncio.to_thread(serve_one_link, s, early)
        assert await link == "dialled"
        s.close()
        await asyncio.sleep(0.3)
    assert any(r.get("msg") == "dial-back failed at the bridge; connecting directly" for r in hv_log(hv))


async def test_a_bad_dial_back_request_is_a_clear_400(hypivisor_factory):
    hv = hypivisor_factory(token=TOKEN)
    for request in (
        b"POST /ws/dialback/abcdefghijklmnopqrstuv HTTP/1.1\r\nUpgrade: hypi-dialback\r\nConnection: Upgrade\r\n",
        b"GET /ws/dialback/abcdefghijklmnopqrstuv HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n",
        b"GET /ws/dialback/ HTTP/1.1\r\nUpgrade: hypi-dialback\r\nConnection: Upgrade\r\n",
    ):
        s = socket.create_connection(("127.0.0.1", hv.port), timeout=10)
        s.sendall(request + f"Authorization: Bearer {TOKEN}\r\n\r\n".encode())
        status, message = await asyncio.to_thread(refusal, s)
        assert status == 400 and "dialback" in message


# ------------------------------------------------------------------ the previous bridge: proxied directly
@pytest.fixture(scope="module")
def previous_tree(tmp_path_factory) -> Path:
    return tree_at(PREVIOUS, tmp_path_factory.mktemp("before-dial-back"), "pi_socket", "hypivisor")


async def test_a_bridge_without_the_capability_is_still_proxied_directly(tmp_path, previous_tree, hypivisor_factory):
    hv = hypivisor_factory(token=TOKEN)
    old = FakeShim(
        tmp_path / "old",
        node_id="old-bridge",
        env={"PYTHONPATH": str(previous_tree), "PYTHONSAFEPATH": "1", "HYPIVISOR_WS": hv.ws_url, "HYPI_TOKEN": TOKEN},
    )
    (tmp_path / "old").mkdir()
    await old.start()
    new = FakeShim(tmp_path / "new", node_id="new-bridge", env={"HYPIVISOR_WS": hv.ws_url, "HYPI_TOKEN": TOKEN})
    (tmp_path / "new").mkdir()
    await new.start()
    try:
        node = await node_of(hv, "old-bridge")
        assert "dial_back" not in (node["capabilities"] or []) and node["port"] == old.port
        assert "dial_back" in (await node_of(hv, "new-bridge"))["capabilities"]
        for node_id in ("old-bridge", "new-bridge"):
            async with websockets.connect(hv.agent_url(node_id), additional_headers=hv.auth_headers) as ws:
                init = json.loads(await asyncio.wait_for(ws.recv(), 10))
                assert init["type"] == "init_state" and init["node"]["id"] == node_id
        await asyncio.sleep(0.3)
        dialled = {r.get("node_id") for r in hv_log(hv) if r.get("msg") == "agent link dialled back"}
        assert dialled == {"new-bridge"}  # the old one was dialled at its port, with nothing asked of it
        assert not [
            r for r in hv_log(hv) if r.get("msg") in ("agent unreachable", "no dial-back in time; connecting directly")
        ]
    finally:
        await old.stop()
        await new.stop()


# ------------------------------------------------------------------ wss: the dial-back is TLS too
async def test_a_bridge_registered_over_wss_dials_back_over_tls(tmp_path, hypivisor_factory):
    from integration_tests.test_hypivisor_tls import self_signed

    cert, key = self_signed(tmp_path)
    hv = hypivisor_factory(token=TOKEN, args=["--tls-cert", str(cert), "--tls-key", str(key)])
    (tmp_path / "b").mkdir()
    bridge = FakeShim(
        tmp_path / "b",
        node_id="tls-bridge",
        env={
            "HYPIVISOR_WS": f"wss://127.0.0.1:{hv.dashboard_port}/ws",
            "HYPI_TOKEN": TOKEN,
            "SSL_CERT_FILE": str(cert),  # the bridge trusts this self-signed hypivisor, as a user's CA store would
            "PI_SOCKET_ADVERTISE_PORT": str(closed_port()),
        },
    )
    await bridge.start()
    try:
        await node_of(hv, "tls-bridge")
        async with websockets.connect(hv.agent_url("tls-bridge"), additional_headers=hv.auth_headers) as ws:
            init = json.loads(await asyncio.wait_for(ws.recv(), 10))
            assert init["type"] == "init_state" and init["node"]["id"] == "tls-bridge"
        await asyncio.sleep(0.3)
        assert any(r.get("msg") == "agent link dialled back" for r in hv_log(hv))
    finally:
        await bridge.stop()


def test_dial_backs_count_against_the_connection_caps(hypivisor_factory):
    hv = hypivisor_factory(token=TOKEN, args=["--max-connections-per-peer", "4"])
    held = [
        socket.create_connection(("127.0.0.1", hv.port), timeout=5, source_address=("127.0.0.3", 0)) for _ in range(4)
    ]
    try:
        time.sleep(0.3)  # all four accepted and counted
        s = socket.create_connection(("127.0.0.1", hv.port), timeout=5, source_address=("127.0.0.3", 0))
        s.sendall(f"GET /ws/dialback/{secrets.token_urlsafe(16)} HTTP/1.1\r\nUpgrade: hypi-dialback\r\n".encode())
        status, message = refusal(s)
        assert status == 503 and "too many connections" in message
    finally:
        for h in held:
            h.close()
    time.sleep(0.3)  # released: a dial-back from that address is judged on its nonce again
    s = socket.create_connection(("127.0.0.1", hv.port), timeout=5, source_address=("127.0.0.3", 0))
    s.sendall(f"GET /ws/dialback/{secrets.token_urlsafe(16)} HTTP/1.1\r\nUpgrade: hypi-dialback\r\n".encode())
    s.sendall(f"Connection: Upgrade\r\nAuthorization: Bearer {TOKEN}\r\n\r\n".encode())
    assert refusal(s)[0] == 404


# ------------------------------------------------------------------ Pi-DE in Chromium over a dial-back (last: the
# browser, module-scoped, keeps an event loop running in this thread until the module ends)
@pytest.mark.browser
@pytest.mark.pi
@pytest.mark.slow
def test_pide_drives_an_agent_over_a_dial_back(dash_hv, start_pi, page_factory):
    from integration_tests.harness.pide import dashboard_url, shot

    env = {"HYPIVISOR_WS": dash_hv.ws_url, "PI_SOCKET_ADVERTISE_PORT": str(closed_port())}
    if dash_hv.token:
        env["HYPI_TOKEN"] = dash_hv.token
    pi = start_pi("0.73.1", mode="rpc", env=env)
    page = page_factory(viewport={"width": 1280, "height": 800})
    page.goto(dashboard_url(dash_hv))
    page.click(f"[data-node-id='{pi.node_id}']", timeout=20_000)
    page.wait_for_selector("[data-testid=inspector] .mono >> text=bash")  # init_state over the dial-back
    page.fill("textarea[aria-label=Prompt]", "hello through the dial-back")
    page.get_by_role("button", name="Send").click()
    page.wait_for_selector("text=You said: hello through the dial-back", timeout=30_000)
    shot(page, "dial-back-link")
    wait_until(
        lambda: any(r.get("msg") == "agent link dialled back" for r in hv_log(dash_hv)), 5, "the dial-back log line"
    )
    assert not [r for r in hv_log(dash_hv) if r.get("msg") == "agent unreachable"]
