"""Process-level behaviour: auth on the agent port, ports, stdout/stderr hygiene, logs, faults, exit."""

from __future__ import annotations

import asyncio
import base64
import socket

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from .bridge_helpers import init_when, open_client, recv_json, recv_until, send_json
from .fake_shim import FakeShim

TOKEN = "t0k3n-secret"


@pytest.fixture
async def secured(tmp_path):
    fake = FakeShim(tmp_path, env={"HYPI_TOKEN": TOKEN, "HYPI_ALLOWED_ORIGINS": "https://pi.example.ts.net"})
    await fake.start()
    yield fake
    await fake.stop()


async def status_of(url: str, **kwargs) -> int:
    try:
        async with connect(url, open_timeout=5, **kwargs) as ws:
            assert (await recv_json(ws))["type"] == "init_state"
            return 101
    except InvalidStatus as exc:
        return exc.response.status_code


async def test_agent_port_auth_and_origin(secured: FakeShim):
    url = secured.url
    b64 = base64.urlsafe_b64encode(TOKEN.encode()).decode().rstrip("=")
    assert await status_of(url) == 401
    assert await status_of(url, additional_headers={"Authorization": "Bearer wrong"}) == 401
    assert await status_of(url, additional_headers={"Authorization": f"Bearer {TOKEN}"}) == 101
    assert await status_of(url + f"?token={TOKEN}") == 101
    assert await status_of(url, subprotocols=["hypi.v1", f"hypi-token.{b64}"]) == 101
    assert (
        await status_of(url, origin="https://evil.example", additional_headers={"Authorization": f"Bearer {TOKEN}"})
        == 403
    )
    assert await status_of(url + f"?token={TOKEN}", origin="http://localhost:5180") == 101
    assert await status_of(url + f"?token={TOKEN}", origin="https://pi.example.ts.net") == 101
    async with connect(url, subprotocols=["hypi.v1", f"hypi-token.{b64}"], open_timeout=5) as ws:
        assert ws.subprotocol == "hypi.v1"
    text = secured.log_path.read_text()
    assert TOKEN not in text and "handshake refused" in text


async def test_preferred_port_then_next_free(tmp_path):
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    taken = busy.getsockname()[1]
    try:
        fake = FakeShim(tmp_path, env={"PI_SOCKET_PORT": str(taken), "PI_SOCKET_PREFERRED_PORT": str(taken)})
        await fake.start()
        try:
            assert taken < fake.port <= taken + 100
        finally:
            await fake.stop()
        again = FakeShim(tmp_path / "b", env={"PI_SOCKET_PORT": str(taken), "PI_SOCKET_PREFERRED_PORT": str(fake.port)})
        (tmp_path / "b").mkdir()
        await again.start()
        try:
            assert again.port == fake.port  # a restarted bridge keeps its URL
        finally:
            await again.stop()
    finally:
        busy.close()


async def test_stdout_has_only_protocol_lines_and_stderr_is_silent(shim_with_log):
    fake = shim_with_log
    async with await open_client(fake) as ws:
        await recv_json(ws)
        await send_json(ws, {"type": "prompt", "id": "x", "text": "hi"})
        await recv_json(ws)
    await fake.write({"t": "log", "level": "warn", "msg": "shim noticed something", "boundary": "pi.on"})
    await fake.write({"t": "bye", "reason": "quit"})
    assert await fake.wait_exit(5) == 0
    assert all(line.get("t") in ("ready", "req", "watch") for line in fake.lines)
    assert await fake.stderr_text() == ""
    logs = fake.log_lines()
    shim_lines = [x for x in logs if x.get("component") == "shim"]
    assert shim_lines and shim_lines[0]["msg"] == "shim noticed something" and shim_lines[0]["level"] == "warn"
    assert all({"ts", "level", "component", "msg"} <= set(x) for x in logs)


@pytest.fixture
async def shim_with_log(tmp_path):
    fake = FakeShim(tmp_path)
    await fake.start()
    yield fake
    await fake.stop()


@pytest.mark.parametrize(
    "boundary", ["client.message", "stdin.line", "client.connect", "shim.request", "session.load", "client.send"]
)
async def test_fault_injection_is_logged_for_hardening_and_survived(tmp_path, boundary):
    fake = FakeShim(tmp_path, env={"PI_SOCKET_FAULT": boundary})
    await fake.start()
    try:
        if boundary == "stdin.line":
            await fake.emit({"type": "agent_start"})  # this line hits the fault and is skipped
        if boundary in ("client.connect", "client.send"):
            async with await open_client(fake) as ws:
                with pytest.raises(ConnectionClosed):
                    await recv_json(ws)
            assert ws.close_code == 1011
        async with await open_client(fake) as ws:
            await recv_json(ws)
            await send_json(ws, {"type": "list_commands"})
            reply = await recv_json(ws)
            if boundary in ("client.message", "shim.request"):
                assert reply["type"] == ("error" if boundary == "client.message" else "commands_list")
                await send_json(ws, {"type": "list_commands"})
                reply = await recv_json(ws)
            assert reply["type"] == "commands_list"
        hard = [x for x in fake.log_lines() if x.get("needsHardening")]
        assert len(hard) == 1 and hard[0]["boundary"] == boundary and "injected fault" in hard[0]["stack"]
        assert hard[0]["level"] == "error"
    finally:
        await fake.stop()


async def test_stdin_eof_exits_promptly_and_closes_clients(tmp_path):
    fake = FakeShim(tmp_path)
    await fake.start()
    try:
        ws = await open_client(fake)
        await recv_json(ws)
        start = asyncio.get_running_loop().time()
        await fake.close_stdin()
        assert await fake.wait_exit(5) == 0
        assert asyncio.get_running_loop().time() - start < 3
        await asyncio.wait_for(ws.wait_closed(), 5)
        assert ws.close_code == 1001
    finally:
        await fake.stop()


async def test_no_hello_still_serves_with_env_node_id(tmp_path):
    fake = FakeShim(tmp_path, send_hello=False, env={"PI_SOCKET_NODE_ID": "env-node"})
    await fake.start(timeout=10)
    try:
        async with await open_client(fake) as ws:
            init = await recv_json(ws)
        assert init["node"]["id"] == "env-node"
    finally:
        await fake.stop()


async def test_restarted_bridge_joins_a_running_agent_as_working(tmp_path):
    fake = FakeShim(tmp_path)
    fake.streaming = True  # pi is mid-run when the shim (re)starts the bridge
    await fake.start()
    try:
        ws, _ = await init_when(fake, lambda i: i["is_streaming"] is True)
        await ws.close()
        await fake.emit({"type": "agent_end", "messages": []})
        ws, _ = await init_when(fake, lambda i: i["is_streaming"] is False)
        await ws.close()
    finally:
        await fake.stop()


async def test_oversize_frame_closes_only_that_client_with_1009(tmp_path):
    fake = FakeShim(tmp_path, env={"PI_SOCKET_MAX_FRAME_BYTES": str(256 * 1024)})
    await fake.start()
    try:
        async with await open_client(fake) as other, await open_client(fake, compression=None) as big:
            await recv_json(other), await recv_json(big)
            await send_json(big, {"type": "prompt", "id": "huge", "text": "x" * 300_000})
            await asyncio.wait_for(big.wait_closed(), 5)
            assert big.close_code == 1009
            await send_json(other, {"type": "fetch_history", "before": 0})
            assert (await recv_json(other))["type"] == "history_page"
        assert fake.sent("send") == []
    finally:
        await fake.stop()


async def test_garbage_from_the_shim_is_skipped_without_hardening_entries(shim_with_log):
    fake = shim_with_log
    assert fake.proc is not None and fake.proc.stdin is not None
    for raw in (
        b"not json\n",
        b"[1,2]\n",
        b"\xff\xfe\n",
        b"{}\n",
        b'{"t":"event"}\n',
        b'{"t":"event","e":5}\n',
        b'{"t":"res","id":"nope","ok":true}\n',
        b'{"t":"session","tools":"x","commands":[1],"model":7}\n',
        b'{"t":"hello","node_id":5,"pid":"x"}\n',
        b'{"t":"log","level":"loud","msg":{"a":1}}\n',
    ):
        fake.proc.stdin.write(raw)
    await fake.emit(
        {"type": 5},
        {"type": "message_end", "message": "str"},
        {"type": "message_end"},
        {"type": "message_update", "assistantMessageEvent": None},
        {"type": "model_select", "model": []},
        {"type": "session_info_changed", "name": 7},
        {"type": "message_start", "message": None},
        {"type": "context_usage", "tokens": "x"},
        {"type": "turn_end", "context": "big"},
    )
    async with await open_client(fake) as ws:
        init = await recv_json(ws)
        assert init["type"] == "init_state" and init["node"]["id"] == "node-test"
        await send_json(ws, {"type": "list_commands"})
        await recv_until(ws, lambda m: m["type"] == "commands_list")  # a resync init_state may come first
    assert [x for x in fake.log_lines() if x.get("needsHardening")] == []
