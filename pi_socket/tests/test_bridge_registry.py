"""Registration with the hypivisor: a recording stand-in registry, then the real ``python -m hypivisor``."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.asyncio.server import serve

from .bridge_helpers import open_client, recv_json, send_json
from .fake_shim import FakeShim, sample_events

TOKEN = "reg-token"


class RecordingRegistry:
    """A tiny /ws registry that records every JSON-RPC call (and the Authorization header)."""

    def __init__(self, heartbeat_interval: float = 0.3, register_delay: float = 0.0) -> None:
        self.heartbeat_interval = heartbeat_interval
        self.register_delay = register_delay
        self.calls: list[dict[str, Any]] = []
        self.auth: list[str | None] = []
        self.server = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    async def start(self, port: int = 0) -> None:
        self.server = await serve(self._handle, "127.0.0.1", port)
        self.port = self.server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()

    async def _handle(self, ws) -> None:
        self.auth.append(ws.request.headers.get("Authorization"))
        await ws.send(json.dumps({"event": "init", "nodes": [], "protocol_version": "1"}))  # pushes are ignored
        async for raw in ws:
            msg = json.loads(raw)
            self.calls.append(msg)
            method = msg["method"]
            result: Any = {"status": "ok"}
            if method == "register":
                await asyncio.sleep(self.register_delay)
                result = {"status": "registered", "node": msg["params"], "heartbeat_interval": self.heartbeat_interval}
            elif method == "deregister":
                result = {"status": "deregistered"}
            await ws.send(json.dumps({"id": msg["id"], "result": result}))

    def params(self, method: str) -> list[dict[str, Any]]:
        return [c["params"] for c in self.calls if c["method"] == method]

    async def wait_for(self, pred: Callable[[], bool], timeout: float = 5.0) -> None:
        deadline = asyncio.get_running_loop().time() + timeout
        while not pred():
            assert asyncio.get_running_loop().time() < deadline, f"timed out; calls: {self.calls[-5:]}"
            await asyncio.sleep(0.02)


@pytest.fixture
async def registry():
    reg = RecordingRegistry()
    await reg.start()
    yield reg
    await reg.stop()


def bridge_env(url: str, **extra: str) -> dict[str, str]:
    return {"HYPIVISOR_WS": url, "HYPI_TOKEN": TOKEN, "PI_SOCKET_RECONNECT_MS": "100", **extra}


async def test_register_heartbeat_activity_and_deregister_on_eof(tmp_path, registry: RecordingRegistry):
    fake = FakeShim(tmp_path, env=bridge_env(registry.url))
    await fake.start()
    try:
        await registry.wait_for(lambda: registry.params("register"))
        reg = registry.params("register")[0]
        assert reg["id"] == "node-test" and reg["port"] == fake.port and reg["cwd"] == str(tmp_path)
        assert reg["pi_version"] == "0.73.1" and reg["model"] == "fake/fake-model" and reg["activity"] == "idle"
        assert isinstance(reg["pid"], int) and reg["machine"] and reg["host"] == "127.0.0.1"
        assert registry.auth[0] == f"Bearer {TOKEN}"
        await registry.wait_for(lambda: len(registry.params("heartbeat")) >= 3, timeout=3)  # every 0.3 s
        await fake.emit(sample_events()[0])  # agent_start
        await registry.wait_for(lambda: any(h.get("activity") == "working" for h in registry.params("heartbeat")))
        await fake.emit(*sample_events()[1:16])  # ... agent_end (0.73: the run is over)
        await registry.wait_for(
            lambda: (
                registry.params("heartbeat")[-1].get("activity") == "idle"
                and registry.params("heartbeat")[-1]["tokens"]["total"] == 616
            )
        )
        async with await open_client(fake) as ws:
            await recv_json(ws)
            await send_json(ws, {"type": "set_session_name", "name": "named"})
            await registry.wait_for(lambda: registry.params("heartbeat")[-1].get("session_name") == "named")
        await fake.close_stdin()
        assert await fake.wait_exit(3) == 0
        assert registry.calls[-1]["method"] == "deregister" and registry.calls[-1]["params"] == {"id": "node-test"}
    finally:
        await fake.stop()


async def test_activity_change_is_sent_at_once_not_at_the_next_tick(tmp_path):
    slow_ticks = RecordingRegistry(heartbeat_interval=30.0)
    await slow_ticks.start()
    fake = FakeShim(tmp_path, env=bridge_env(slow_ticks.url))
    try:
        await fake.start()
        await slow_ticks.wait_for(lambda: slow_ticks.params("register"))
        await fake.emit({"type": "agent_start"})
        await slow_ticks.wait_for(
            lambda: [h.get("activity") for h in slow_ticks.params("heartbeat")] == ["working"], timeout=3
        )
        await fake.emit({"type": "agent_end"})
        await slow_ticks.wait_for(
            lambda: [h.get("activity") for h in slow_ticks.params("heartbeat")][-1] == "idle", timeout=3
        )
    finally:
        await fake.stop()
        await slow_ticks.stop()


async def test_activity_change_while_registering_is_not_lost(tmp_path):
    slow = RecordingRegistry(heartbeat_interval=30.0, register_delay=0.5)
    await slow.start()
    fake = FakeShim(tmp_path, env=bridge_env(slow.url))
    try:
        await fake.start()
        await slow.wait_for(lambda: slow.params("register"))  # received, not yet answered
        await fake.emit({"type": "agent_start"})
        await slow.wait_for(lambda: [h.get("activity") for h in slow.params("heartbeat")] == ["working"], timeout=3)
        assert slow.params("register")[0]["activity"] == "idle"
    finally:
        await fake.stop()
        await slow.stop()


async def test_standalone_then_registers_when_the_hypivisor_appears(tmp_path):
    reg = RecordingRegistry()
    await reg.start()
    port = reg.port
    await reg.stop()  # nothing listens there now
    fake = FakeShim(tmp_path, env=bridge_env(f"ws://127.0.0.1:{port}/ws"))
    await fake.start()
    try:
        async with await open_client(fake) as ws:
            assert (await recv_json(ws))["type"] == "init_state"
        await asyncio.sleep(1.0)  # several failed attempts (100, 200, 400 ms)
        notes = [line for line in fake.log_lines() if "standalone" in line["msg"]]
        assert len(notes) == 1 and notes[0]["level"] == "info"
        assert len(fake.sent("notify")) == 1 and "still served at" in fake.sent("notify")[0]["message"]
        late = RecordingRegistry()
        await late.start(port)
        try:
            await late.wait_for(lambda: late.params("register"), timeout=5)
        finally:
            await late.stop()
        assert len(fake.sent("notify")) == 1
    finally:
        await fake.stop()


async def test_registry_loss_never_touches_clients_and_reregisters(tmp_path, registry: RecordingRegistry):
    fake = FakeShim(tmp_path, env=bridge_env(registry.url))
    await fake.start()
    try:
        await registry.wait_for(lambda: registry.params("register"))
        async with await open_client(fake) as ws:
            await recv_json(ws)
            port = registry.port
            await registry.stop()
            await fake.emit({"type": "agent_start"})
            assert (await recv_json(ws))["type"] == "agent_start"
            again = RecordingRegistry()
            await again.start(port)
            try:
                await again.wait_for(lambda: again.params("register"), timeout=5)
                assert again.params("register")[0]["activity"] == "working"
            finally:
                await again.stop()
            await fake.emit({"type": "turn_start", "turnIndex": 0})
            assert (await recv_json(ws))["type"] == "turn_start"
    finally:
        await fake.stop()


# --------------------------------------------------------------------------- the real hypivisor

try:
    from integration_tests.harness.hypivisor_proc import RegistryClient, hypivisor_factory  # noqa: F401
except ImportError:  # pragma: no cover - the harness ships with the repo
    hypivisor_factory = None


@pytest.mark.skipif(hypivisor_factory is None, reason="hypivisor harness not available")
async def test_real_hypivisor_roster_follows_the_agent_and_survives_sigkill(tmp_path, hypivisor_factory):
    hv = hypivisor_factory(token=TOKEN, ttl=5)
    dash = await RegistryClient.connect(hv)
    fake = FakeShim(tmp_path, env=bridge_env(hv.ws_url))
    try:
        await fake.start()
        joined = await wait_event(dash, lambda e: e.get("event") == "node_joined" and e["node"]["id"] == "node-test")
        assert joined["node"]["port"] == fake.port and joined["node"]["model"] == "fake/fake-model"
        await fake.emit({"type": "agent_start"})
        await wait_event(dash, lambda e: e.get("event") == "node_updated" and e["node"]["activity"] == "working")
        async with connect(hv.agent_url("node-test"), additional_headers=hv.auth_headers, open_timeout=5) as proxied:
            init = await recv_json(proxied)  # through the hypivisor's /ws/agent/<id> proxy
            assert init["type"] == "init_state" and init["node"]["id"] == "node-test" and init["is_streaming"]
        async with await open_client(fake) as ws:
            await recv_json(ws)
            hv.kill()  # SIGKILL mid-session: the agent link must not notice
            await fake.emit({"type": "turn_start", "turnIndex": 0})
            assert (await recv_json(ws))["type"] == "turn_start"
            hv.start()
            dash2 = await RegistryClient.connect(hv)
            await wait_event(
                dash2, lambda e: any(n["id"] == "node-test" for n in e.get("nodes", [e.get("node") or {}])), timeout=15
            )
            await fake.close_stdin()
            assert await fake.wait_exit(5) == 0
            await wait_event(dash2, lambda e: e.get("event") == "node_removed" and e["id"] == "node-test")
            await dash2.ws.close()
    finally:
        await fake.stop()
        await dash.ws.close()


async def wait_event(client, pred, timeout: float = 10.0) -> dict[str, Any]:
    """Next registry push matching ``pred`` (bounded)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        left = deadline - asyncio.get_running_loop().time()
        assert left > 0, "expected registry event did not arrive"
        try:
            msg = json.loads(await asyncio.wait_for(client.ws.recv(), left))
        except TimeoutError:
            continue
        if pred(msg):
            return msg


async def test_reconnect_backoff_doubles_while_the_registry_refuses(tmp_path):
    """A listener that accepts and hangs up at once: attempts must space out 0.1, 0.2, 0.4, 0.8 s."""
    attempts: list[float] = []

    async def hang_up(reader, writer):
        attempts.append(asyncio.get_running_loop().time())
        writer.close()

    server = await asyncio.start_server(hang_up, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    fake = FakeShim(tmp_path, env=bridge_env(f"ws://127.0.0.1:{port}/ws"))
    try:
        await fake.start()
        deadline = asyncio.get_running_loop().time() + 6
        while len(attempts) < 5 and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.05)
        assert len(attempts) >= 5, attempts
        gaps = [b - a for a, b in zip(attempts, attempts[1:], strict=False)][:4]
        # delays can only grow under load, never shrink: lower bounds prove the doubling
        assert all(gap >= 0.09 * 2**k for k, gap in enumerate(gaps)), gaps
        assert gaps[0] < 0.6 and gaps[3] < 3.0, gaps  # and it is not some fixed long delay
        async with await open_client(fake) as ws:  # serving all along
            assert (await recv_json(ws))["type"] == "init_state"
    finally:
        await fake.stop()
        server.close()
        await server.wait_closed()


@pytest.mark.skipif(hypivisor_factory is None, reason="hypivisor harness not available")
async def test_wrong_token_for_the_hypivisor_is_one_warning_and_the_agent_still_serves(tmp_path, hypivisor_factory):
    hv = hypivisor_factory(token="the-right-one")
    fake = FakeShim(tmp_path, env=bridge_env(hv.ws_url))  # bridge has TOKEN, hypivisor another
    try:
        await fake.start()
        async with await open_client(fake) as ws:
            assert (await recv_json(ws))["type"] == "init_state"
        await asyncio.sleep(1.0)
        refused = [x for x in fake.log_lines() if "refused this agent" in x["msg"]]
        assert len(refused) == 1 and refused[0]["level"] == "warn" and refused[0]["status"] == 401
        assert "the-right-one" not in fake.log_path.read_text() and TOKEN not in fake.log_path.read_text()
    finally:
        await fake.stop()


async def test_oversized_names_are_clipped_not_fatal(tmp_path, registry: RecordingRegistry):
    fake = FakeShim(tmp_path, env=bridge_env(registry.url))
    fake.session_name = "n" * 500
    await fake.start()
    try:
        await registry.wait_for(lambda: registry.params("register"))
        assert registry.params("register")[0]["session_name"] == "n" * 200
        await fake.write({"t": "log", "level": "error", "msg": "x", "component": "evil", "event": "e", "ts": 1})
        await fake.emit({"type": "agent_start"})
        await registry.wait_for(lambda: any(h.get("activity") == "working" for h in registry.params("heartbeat")))
        assert [x for x in fake.log_lines() if x.get("needsHardening")] == []
        assert any(x["component"] == "shim" and x["msg"] == "x" for x in fake.log_lines())
    finally:
        await fake.stop()


async def test_sigterm_deregisters_and_exits_cleanly(tmp_path, registry: RecordingRegistry):
    fake = FakeShim(tmp_path, env=bridge_env(registry.url))
    await fake.start()
    try:
        await registry.wait_for(lambda: registry.params("register"))
        assert fake.proc is not None
        fake.proc.terminate()
        assert await fake.wait_exit(3) == 0
        assert registry.calls[-1]["method"] == "deregister"
    finally:
        await fake.stop()
