"""Node takeover and the open relay (security issue #16 items 5 and 6) with real processes.

A real hypivisor and a real bridge (``python -m pi_socket.bridge`` driven by the fake shim, holding the node
secret the shim gives it) against a stranger: a plain registry client connecting from 127.0.0.2, which on Linux
is a second source address on loopback, so the hypivisor sees another peer. The stranger tries every way to take
the node (its id without or with a wrong secret, its machine:port, heartbeat, deregister) while the node is active
and while it is offline; the real node keeps receiving proxied prompts. A recording listener shows what the proxy
dials and which bytes of the dashboard's handshake reach an agent.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time

import pytest
import websockets
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from integration_tests.harness.hypivisor_proc import HypivisorProc, RegistryClient, node_params
from integration_tests.test_reliability_network import ChaosProxy
from pi_socket.tests.fake_shim import FakeShim

TOKEN = "hv-token-takeover-0001"
SECRET = "victims-shim-secret-00001"  # what the shim hands its bridge (PI_SOCKET_NODE_SECRET)
OTHER = "strangers-own-secret-0001"
STRANGER = ("127.0.0.2", 0)
DASH_COOKIE = "sid=dashboard-session-cookie"


def bridge_env(hv: HypivisorProc, url: str | None = None, **extra: str) -> dict[str, str]:
    env = {"HYPIVISOR_WS": url or hv.ws_url, "PI_SOCKET_RECONNECT_MS": "100", **extra}
    if hv.token:
        env["HYPI_TOKEN"] = hv.token
    return env


async def node(client: RegistryClient, node_id: str) -> dict | None:
    nodes = (await client.call("list_nodes"))["result"]["nodes"]
    return next((n for n in nodes if n["id"] == node_id), None)


async def wait_status(client: RegistryClient, node_id: str, status: str, timeout: float = 20.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = await node(client, node_id)
        if found is not None and found["status"] == status:
            return found
        await asyncio.sleep(0.05)
    raise AssertionError(f"{node_id} never {status}; roster: {await node(client, node_id)}")


async def prompt_through_proxy(hv: HypivisorProc, node_id: str, prompt_id: str) -> None:
    """What Pi-DE does, with every credential carrier a browser has; the ack comes from the real bridge."""
    url = hv.agent_url(node_id) + (f"?token={hv.token}" if hv.token else "")
    headers = {"Cookie": DASH_COOKIE, **hv.auth_headers}
    async with websockets.connect(url, additional_headers=headers, subprotocols=["hypi.v1"], open_timeout=10) as ws:
        assert ws.subprotocol == "hypi.v1"  # negotiated end to end: the browser's protocol survives the rewrite
        while json.loads(await asyncio.wait_for(ws.recv(), 10))["type"] != "init_state":
            pass
        await ws.send(json.dumps({"type": "prompt", "id": prompt_id, "text": f"text of {prompt_id}"}))
        while True:
            msg = json.loads(await asyncio.wait_for(ws.recv(), 10))
            if msg.get("id") == prompt_id:
                assert msg["type"] == "ack", msg
                return


async def takeover_attempts(hv: HypivisorProc, machine: str, port: int) -> list[tuple[str, dict]]:
    """Every path a stranger without the secret has; each answer is an error that changed nothing."""
    attempts = [
        ("register", node_params("victim", port, machine=machine)),
        ("register", node_params("victim", port, machine=machine, node_secret=OTHER)),
        ("register", node_params("victim", 1, machine="strangers-box", node_secret=OTHER)),
        ("register", node_params("intruder", port, machine=machine)),  # evict it by machine:port
        ("heartbeat", {"id": "victim", "session_name": "pwned"}),
        ("deregister", {"id": "victim"}),
    ]
    answers = []
    async with await RegistryClient.connect(hv, local_addr=STRANGER) as stranger:
        for method, params in attempts:
            answers.append((method, await stranger.call(method, params)))
    return answers


@pytest.mark.parametrize("token", [None, TOKEN], ids=["no-token", "token"])
async def test_a_stranger_cannot_take_over_a_real_bridges_node_active_or_offline(hypivisor_factory, tmp_path, token):
    hv = hypivisor_factory(token=token)
    fake = FakeShim(tmp_path, node_id="victim", env=bridge_env(hv, PI_SOCKET_NODE_SECRET=SECRET))
    await fake.start()
    try:
        async with await RegistryClient.connect(hv) as dash:
            victim = await wait_status(dash, "victim", "active")
            machine, port = victim["machine"], victim["port"]
            assert port == fake.port
            for method, answer in await takeover_attempts(hv, machine, port):
                assert answer.get("error", {}).get("code") in (1002, 1006), (method, answer)
            after = await node(dash, "victim")
            assert (after["status"], after["machine"], after["port"], after["session_name"]) == (
                "active",
                machine,
                port,
                None,
            )
            assert [n["id"] for n in (await dash.call("list_nodes"))["result"]["nodes"]] == ["victim"]
            await prompt_through_proxy(hv, "victim", "p-active")
            assert [r["prompt_id"] for r in fake.delivered] == ["p-active"]

            # offline (the bridge died): a stranger evicting its address could have freed the id to claim it
            await fake.stop()
            await wait_status(dash, "victim", "offline")
            for method, answer in await takeover_attempts(hv, machine, port):
                assert answer.get("error", {}).get("code") in (1002, 1006), (method, answer)
            assert [(n["id"], n["status"]) for n in (await dash.call("list_nodes"))["result"]["nodes"]] == [
                ("victim", "offline")
            ]

            await fake.restart()  # the shim starts a new bridge: same node id, same secret, same port
            await wait_status(dash, "victim", "active")
            await prompt_through_proxy(hv, "victim", "p-back")
            assert [r["prompt_id"] for r in fake.delivered] == ["p-active", "p-back"]
    finally:
        await fake.stop()
    assert SECRET not in hv.log_lines() + hv.stdout() + hv.stderr()
    assert SECRET not in fake.log_path.read_text()


async def test_after_a_hypivisor_sigkill_the_bridge_keeps_its_id_and_a_stranger_cannot_claim_it(
    hypivisor_factory, tmp_path
):
    """The restarted hypivisor knows no secrets: the bridge's first registration adopts the one it presents."""
    hv = hypivisor_factory()
    fake = FakeShim(tmp_path, node_id="victim", env=bridge_env(hv, PI_SOCKET_NODE_SECRET=SECRET))
    await fake.start()
    try:
        async with await RegistryClient.connect(hv) as dash:
            await wait_status(dash, "victim", "active")
        hv.restart()  # SIGKILL and start on the same port
        async with await RegistryClient.connect(hv) as dash:
            victim = await wait_status(dash, "victim", "active")
            for method, answer in await takeover_attempts(hv, victim["machine"], victim["port"]):
                assert answer.get("error", {}).get("code") in (1002, 1006), (method, answer)
            await prompt_through_proxy(hv, "victim", "after-restart")
            assert [r["prompt_id"] for r in fake.delivered] == ["after-restart"]
    finally:
        await fake.stop()


async def test_a_bridge_given_no_secret_keeps_the_issued_one_across_reconnects(hypivisor_factory, tmp_path):
    """A shim that passes no secret: the hypivisor issues one at the first registration and the bridge presents it
    when its registry connection is cut and it registers again (the hypivisor still knows the id)."""
    hv = hypivisor_factory()
    relay = ChaosProxy(hv.port)
    await relay.start()
    fake = FakeShim(tmp_path, node_id="victim", env=bridge_env(hv, url=f"ws://127.0.0.1:{relay.port}/ws"))
    await fake.start()
    try:
        async with await RegistryClient.connect(hv) as dash:
            await wait_status(dash, "victim", "active")
            # the roster can show the node before its bridge has read the register answer (and so the secret):
            # cut only once the bridge holds it
            deadline = time.monotonic() + 20
            while "registered with hypivisor" not in fake.log_path.read_text():
                assert time.monotonic() < deadline, fake.log_path.read_text()[-2000:]
                await asyncio.sleep(0.05)
            assert relay.cut() > 0
            deadline = time.monotonic() + 20
            while "registered with hypivisor again" not in fake.log_path.read_text():
                assert time.monotonic() < deadline, fake.log_path.read_text()[-2000:]
                await asyncio.sleep(0.05)
            await wait_status(dash, "victim", "active")
            assert "refused this node" not in fake.log_path.read_text()
    finally:
        await fake.stop()
        await relay.close()


class RecordingAgent:
    """A TCP listener that records the bytes the proxy sends, then closes: is it dialled, and with what?"""

    def __init__(self, host: str):
        self.host = host
        self.heads: list[bytes] = []
        self.got_head = asyncio.Event()

    async def start(self) -> int:
        async def on_conn(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                self.heads.append(await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5))
                self.got_head.set()
            except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
                pass
            writer.close()

        self.server = await asyncio.start_server(on_conn, self.host, 0)
        return self.server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        self.server.close()
        await self.server.wait_closed()


@pytest.mark.parametrize("token", [None, TOKEN], ids=["no-token", "token"])
async def test_the_proxy_dials_the_registering_peer_and_the_agent_never_sees_the_dashboards_credentials(
    hypivisor_factory, token
):
    """Registered from 127.0.0.2 naming host 192.0.2.1 (elsewhere): the proxy dials 127.0.0.2, and the handshake it
    sends carries the hypivisor's own token (when it has one) instead of the dashboard's header, subprotocol, query
    parameter (in any spelling) and cookie."""
    hv = hypivisor_factory(token=token)
    agent = RecordingAgent("127.0.0.2")
    port = await agent.start()
    try:
        async with await RegistryClient.connect(hv, local_addr=STRANGER) as registrant:
            res = await registrant.call("register", node_params("relay", port, host="192.0.2.1"))
            assert res["result"]["status"] == "registered"
            dash_token = token or "a-token-nobody-asked-for"
            protocol = "hypi-token." + base64.urlsafe_b64encode(dash_token.encode()).decode().rstrip("=")
            url = hv.agent_url("relay") + f"?x=1&token={dash_token}&%74oken={dash_token}"
            headers = {"Authorization": f"Bearer {dash_token}", "Cookie": DASH_COOKIE,
                       "Proxy-Authorization": "Basic ZGFzaDpib2FyZA=="}  # fmt: skip
            started = time.monotonic()
            with pytest.raises((InvalidHandshake, ConnectionClosed, OSError)):
                async with websockets.connect(url, additional_headers=headers, subprotocols=["hypi.v1", protocol],
                                              open_timeout=10):  # fmt: skip
                    pass
            await asyncio.wait_for(agent.got_head.wait(), 5)
            assert time.monotonic() - started < 5  # answered by the listener on the peer, not a dial to 192.0.2.1
        head = agent.heads[0].decode("latin-1")
        assert head.startswith("GET /?x=1 HTTP/1.1\r\n") and f"Host: 127.0.0.2:{port}\r\n" in head
        carriers = [protocol, DASH_COOKIE, "ZGFzaDpib2FyZA==", "token=", "oken="]
        for secret in carriers + ([] if token else [dash_token]):  # with a token set, the agent gets that one
            assert secret not in head, secret
        authz = [line for line in head.split("\r\n") if line.lower().startswith("authorization:")]
        assert authz == ([f"Authorization: Bearer {token}"] if token else [])
        assert "Sec-WebSocket-Protocol: hypi.v1\r\n" in head and "Origin" not in head
        assert "host ignored" in hv.log_lines()
    finally:
        await agent.close()
