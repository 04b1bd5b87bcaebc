"""Tokens and the attack surface with real processes (specs/security.md).

- a wrong or missing token on every endpoint is refused before any work: the registry does not change and
  the proxy never opens a TCP connection to the agent; the agent port refuses before init_state;
- the right token works from each carrier (header, subprotocol, query), through the proxy to a real bridge;
- the token never reaches a log: a whole flow with real pi, real bridge, real hypivisor (registration,
  proxied prompts with every carrier, wrong tokens, debug level) and every file written is grepped;
- no token + a non-loopback bind: spawn_agent refused (1002), nothing created, warning at startup;
- the production Pi-DE bundle never contains VITE_HYPI_TOKEN.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import subprocess
from pathlib import Path
from urllib.parse import quote

import pytest
import websockets
from websockets.exceptions import InvalidStatus

from integration_tests.harness.hypivisor_proc import REPO_ROOT, RegistryClient, node_params
from integration_tests.harness.pi_proc import AgentClient, wait_until
from pi_socket.tests.fake_shim import FakeShim

TOKEN = "tok-Zq8!secret/with+odd=chars"


def proto(token: str) -> str:
    return "hypi-token." + base64.urlsafe_b64encode(token.encode()).decode().rstrip("=")


async def status_of(url: str, **kw) -> int:
    try:
        async with websockets.connect(url, open_timeout=5, **kw):
            return 101
    except InvalidStatus as exc:
        return exc.response.status_code


class CountingAgent:
    """A TCP listener that counts accepted connections (and answers nothing): did the proxy dial it?"""

    def __init__(self):
        self.accepted = 0

    async def start(self) -> int:
        async def on_conn(reader, writer):
            self.accepted += 1
            writer.close()

        self.server = await asyncio.start_server(on_conn, "127.0.0.1", 0)
        return self.server.sockets[0].getsockname()[1]


async def test_wrong_token_is_refused_before_any_work_on_every_endpoint(hypivisor_factory, tmp_path):
    hv = hypivisor_factory(token=TOKEN)
    agent = CountingAgent()
    port = await agent.start()
    async with await RegistryClient.connect(hv) as bridge:
        await bridge.call("register", node_params("target", port))
        async with await RegistryClient.connect(hv) as dash:
            before = (await dash.call("list_nodes"))["result"]["nodes"]
            wrong = [
                {},
                {"additional_headers": {"Authorization": "Bearer wrong"}},
                {"additional_headers": {"Authorization": f"Bearer {TOKEN}x"}},
                {"additional_headers": {"Authorization": f"Basic {TOKEN}"}},
                {"subprotocols": ["hypi.v1", proto(TOKEN[:-1])]},
                {"subprotocols": ["hypi.v1", "hypi-token.%%%"]},
                {"query": "?token=" + quote(TOKEN.upper())},
            ]
            for kw in wrong:
                q = kw.pop("query", "")
                assert await status_of(hv.ws_url + q, **kw) == 401, kw
                assert await status_of(hv.agent_url("target") + q, **kw) == 401, kw
                assert await status_of(hv.agent_url("nonexistent") + q, **kw) == 401, kw  # no node probing either
            await asyncio.sleep(0.3)
            assert agent.accepted == 0, "the proxy dialled the agent for an unauthenticated client"
            assert (await dash.call("list_nodes"))["result"]["nodes"] == before
            # control: the right token is dialled through (proves the counter sees a proxied connection)
            reader, writer = await asyncio.open_connection("127.0.0.1", hv.port)
            writer.write(
                (
                    f"GET /ws/agent/target HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                    f"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
                    f"Authorization: Bearer {TOKEN}\r\n\r\n"
                ).encode()
            )
            await writer.drain()
            await asyncio.wait_for(reader.read(), 5)  # the agent closes at once
            writer.close()
            assert agent.accepted == 1
    agent.server.close()


async def test_agent_port_refuses_a_wrong_token_before_init_state_and_accepts_every_carrier(tmp_path):
    fake = FakeShim(tmp_path, env={"HYPI_TOKEN": TOKEN, "PI_SOCKET_LOG_LEVEL": "debug"})
    await fake.start()
    try:
        for kw in (
            {},
            {"additional_headers": {"Authorization": "Bearer nope"}},
            {"subprotocols": ["hypi.v1", proto("nope")]},
        ):
            assert await status_of(fake.url, **kw) == 401
        assert await status_of(fake.url + "?token=nope") == 401
        assert not any(r.get("msg") == "client connected" for r in fake.log_lines())
        assert [r["op"] for r in fake.requests if r["op"] not in ("history", "state", "commands", "tools")] == []
        for url, kw in (
            (fake.url, {"additional_headers": {"Authorization": f"Bearer {TOKEN}"}}),
            (fake.url, {"subprotocols": ["hypi.v1", proto(TOKEN)]}),
            (fake.url + "/?token=" + quote(TOKEN, safe=""), {}),
        ):
            async with websockets.connect(url, open_timeout=5, **kw) as ws:
                assert json.loads(await asyncio.wait_for(ws.recv(), 5))["type"] == "init_state"
                if "subprotocols" in kw:
                    assert ws.subprotocol == "hypi.v1"  # the token protocol is never echoed
    finally:
        await fake.stop()


def _all_written_files(*roots: Path) -> dict[Path, bytes]:
    out = {}
    for root in roots:
        for p in Path(root).rglob("*"):
            if p.is_file() and not p.is_symlink():
                try:
                    out[p] = p.read_bytes()
                except OSError:
                    pass
    return out


@pytest.mark.pi
def test_token_never_logged_anywhere_in_a_full_flow_with_real_pi(hypivisor_factory, start_pi, pi_home, fake_llm):
    hv = hypivisor_factory(token=TOKEN, env={"PI_SOCKET_LOG_DIR": str(pi_home.logs / "hv")})
    pi = start_pi(
        "0.73.1", mode="rpc", env={"HYPI_TOKEN": TOKEN, "HYPIVISOR_WS": hv.ws_url, "PI_SOCKET_LOG_LEVEL": "debug"}
    )
    wait_until(
        lambda: any(r.get("msg", "").startswith("registered") for r in pi.bridge_log()),
        15,
        "the bridge to register with the token",
    )
    carriers = [
        (hv.agent_url(pi.node_id), {"Authorization": f"Bearer {TOKEN}"}),
        (hv.agent_url(pi.node_id) + "?token=" + quote(TOKEN, safe=""), {}),
        (pi.url + "/?token=" + quote(TOKEN, safe=""), {}),
    ]
    for i, (url, headers) in enumerate(carriers):
        fake_llm.script([{"text": f"reply {i}"}])
        c = AgentClient(url, headers)
        c.wait_for(lambda f: f["type"] == "init_state")
        c.send({"type": "prompt", "id": f"tok-{i}", "text": f"prompt {i}"})
        c.wait_for(lambda f, i=i: f["type"] == "ack" and f["id"] == f"tok-{i}")
        c.wait_for(lambda f: f["type"] == "message_end" and f["message"]["role"] == "assistant")
        c.close()
    from websockets.sync.client import connect

    sub = connect(hv.agent_url(pi.node_id), subprotocols=["hypi.v1", proto(TOKEN)], open_timeout=5).__enter__()
    assert json.loads(sub.recv(timeout=5))["type"] == "init_state"
    sub.close()
    for bad in ("?token=" + quote(TOKEN + "1", safe=""), "?token=" + quote(TOKEN[:8], safe="")):
        with pytest.raises(InvalidStatus):
            connect(hv.agent_url(pi.node_id) + bad, open_timeout=5).__enter__()
        with pytest.raises(InvalidStatus):
            connect(pi.url + "/" + bad, open_timeout=5).__enter__()
    pi.stop()
    hv.stop()
    files = _all_written_files(pi_home.logs, hv.log_dir, hv.home / ".pi")
    names = {p.name for p in files}
    assert "hypivisor.jsonl" in names and "pi-socket.jsonl" in names, names
    assert sum(len(b) for b in files.values()) > 2000, "the logs recorded the flow"
    needles = [TOKEN, TOKEN[:8], proto(TOKEN)[len("hypi-token.") :], quote(TOKEN, safe=""), TOKEN + "1"]
    for path, data in files.items():
        text = data.decode("utf-8", "replace")
        for needle in needles:
            assert needle not in text, f"{needle!r} leaked into {path.name}"


def test_no_token_on_a_non_loopback_bind_refuses_spawn_and_warns(hypivisor_factory):
    # "0:0:0:0:0:0:0:1" is ::1 written out: it binds loopback only (these tests never leave the machine)
    # but is not one of the spellings the hypivisor treats as loopback, so it exercises the public-bind rule.
    hv = hypivisor_factory(host="0:0:0:0:0:0:0:1", port=None, start=False, env={"HYPI_SPAWN_COMMAND": "true"})
    hv.url = lambda path="/", scheme="http", dashboard=False: (  # type: ignore[method-assign]
        f"{scheme}://[::1]:{hv.dashboard_port if dashboard else hv.port}{path}"
    )
    hv.start()
    assert "NO TOKEN" in hv.stdout() + hv.stderr()
    assert "no HYPI_TOKEN" in hv.log_lines()

    async def run():
        async with websockets.connect(f"ws://[::1]:{hv.port}/ws", open_timeout=5) as ws:
            c = RegistryClient(ws)
            r = await c.call("spawn_agent", {"path": "~", "new_folder": "made-by-spawn"})
            assert r["error"]["code"] == 1002 and "HYPI_TOKEN" in r["error"]["message"]

    asyncio.run(run())
    assert not (hv.home / "made-by-spawn").exists()


def test_production_bundle_never_contains_the_token(tmp_path):
    vite = REPO_ROOT / "pi_de" / "node_modules" / ".bin" / "vite"
    if not vite.exists() or not shutil.which("node"):
        pytest.skip("pi_de dependencies are not installed (cd pi_de && npm ci)")
    sentinel = "VITE-SENTINEL-TOKEN-" + os.urandom(6).hex()
    out = tmp_path / "dist"
    done = subprocess.run(
        [str(vite), "build", "--outDir", str(out), "--emptyOutDir", "--logLevel", "error"],
        cwd=REPO_ROOT / "pi_de",
        env={**os.environ, "VITE_HYPI_TOKEN": sentinel, "HYPI_TOKEN": sentinel},
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    files = _all_written_files(out)
    assert any(p.suffix == ".js" for p in files), "the build produced a bundle"
    for path, data in files.items():
        assert sentinel.encode() not in data, f"token inlined into {path.name}"
    dist = REPO_ROOT / "pi_de" / "dist"
    for path, data in _all_written_files(dist).items():  # the checked-out build too: no token-looking constant
        assert b"VITE_HYPI_TOKEN=" not in data and b"HYPI_TOKEN=" not in data, path.name
