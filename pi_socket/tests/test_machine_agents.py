"""Agents served by the machine service (pi_socket/machine/agents.py): the attach line, per-agent faults and logs,
and the socket host with fake shims (real unix socket, real bridges, no hypivisor)."""

from __future__ import annotations

import asyncio
import contextvars
import json
import os
import stat
import tempfile
from pathlib import Path

import orjson
import pytest

from pi_socket import oplog
from pi_socket.bridge import faults
from pi_socket.machine.agents import AgentHost, agent_config, remaining_faults, socket_path
from pi_socket.shimwire import ATTACH_VALUE_MAX, AttachLine, ShimLineError, parse_attach_line


# ---------------------------------------------------------------------------------------------- the attach line
def test_attach_line_keeps_only_what_a_bridge_reads():
    line = parse_attach_line(
        orjson.dumps(
            {
                "t": "attach",
                "v": 1,
                "pid": 42,
                "cwd": "/w",
                "env": {
                    "PI_SOCKET_PORT": "0",
                    "HYPIVISOR_WS": "off",
                    "HYPI_TOKEN": "t" * 32,
                    "PI_CODING_AGENT_DIR": "/a",
                    "PATH": "/bin",
                    "AWS_SECRET_ACCESS_KEY": "x",
                    "PI_SOCKET_HOST": "h" * (ATTACH_VALUE_MAX + 1),
                },
            }
        )
    )
    assert line.pid == 42 and line.cwd == "/w"
    assert line.bridge_env() == {"PI_SOCKET_PORT": "0", "HYPIVISOR_WS": "off", "HYPI_TOKEN": "t" * 32,
                                 "PI_CODING_AGENT_DIR": "/a"}  # fmt: skip


@pytest.mark.parametrize(
    "raw",
    [b"not json", b"[]", b'{"t":"hello"}', b'{"t":"attach","pid":"12"}', b'{"t":"attach","env":{"A":1}}'],
)
def test_a_bad_attach_line_is_a_clear_error(raw):
    with pytest.raises(ShimLineError) as info:
        parse_attach_line(raw)
    assert info.value.kind == "attach"


def test_agent_config_comes_from_the_attach_env_and_cwd():
    attach = AttachLine(t="attach", pid=7, cwd="/proj", env={})
    config = agent_config(attach, {"PI_SOCKET_PORT": "0", "PI_SOCKET_NODE_ID": "n-7", "HYPIVISOR_WS": "off",
                                   "PI_SOCKET_MACHINE": "m1"})  # fmt: skip
    assert (config.cwd, config.node_id, config.port, config.registry_enabled, config.machine) == (
        "/proj", "n-7", 0, False, "m1")  # fmt: skip


def test_a_fault_fires_once_per_pi_in_one_service():
    assert remaining_faults("agent, stdin.line", set()) == "agent,stdin.line"
    assert remaining_faults("agent,stdin.line", {"agent"}) == "stdin.line"
    assert remaining_faults(None, set()) == ""


# ---------------------------------------------------------------------------------------------- per-agent state
def test_faults_armed_in_one_context_fire_only_there():
    def arm_and_probe(names: str) -> list[str]:
        faults.scope(names)
        fired = []
        for name in ("agent", "stdin.line"):
            try:
                faults.maybe_fail(name)
            except RuntimeError:
                fired.append(name)
        return fired

    assert contextvars.copy_context().run(arm_and_probe, "agent") == ["agent"]
    assert contextvars.copy_context().run(arm_and_probe, "") == []
    faults.maybe_fail("agent")  # the process-wide set was never touched


def test_log_lines_of_one_context_go_to_its_own_file(tmp_path):
    oplog.configure("machine", filename="machine.jsonl", log_dir=tmp_path)
    own = oplog.RotatingJsonlFile(tmp_path / "agent" / "pi-socket.jsonl")

    def agent() -> None:
        oplog.use_file(own)
        oplog.get_logger().info("from the agent")

    contextvars.copy_context().run(agent)
    oplog.get_logger().info("from the service")
    assert "from the agent" in (tmp_path / "agent" / "pi-socket.jsonl").read_text()
    service = (tmp_path / "machine.jsonl").read_text()
    assert "from the service" in service and "from the agent" not in service


# ---------------------------------------------------------------------------------------------- the socket host
class FakeShim:
    """One shim on the agent socket: writes the attach and hello lines, reads the bridge's lines."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader, self.writer = reader, writer

    @classmethod
    async def attach(cls, host: AgentHost, node: str, logs: Path, fault: str = "") -> tuple[FakeShim, dict]:
        reader, writer = await asyncio.open_unix_connection(str(host.path))
        env = {"PI_SOCKET_PORT": "0", "HYPIVISOR_WS": "off", "PI_SOCKET_LOG_DIR": str(logs / node),
               "PI_SOCKET_NODE_ID": node, "PI_SOCKET_FAULT": fault}  # fmt: skip
        shim = cls(reader, writer)
        shim.send({"t": "attach", "v": 1, "pid": os.getpid(), "cwd": str(logs), "env": env})
        shim.send({"t": "hello", "node_id": node, "pid": os.getpid(), "cwd": str(logs), "pi_version": "1.6.0"})
        ready = await shim.line()
        return shim, ready

    def send(self, obj: dict) -> None:
        self.writer.write(json.dumps(obj).encode() + b"\n")

    async def line(self, timeout: float = 5.0) -> dict:
        return json.loads(await asyncio.wait_for(self.reader.readline(), timeout))

    async def closed(self, timeout: float = 5.0) -> bool:
        while True:
            if not await asyncio.wait_for(self.reader.readline(), timeout):
                return True


@pytest.fixture
def short_dir():
    """A runtime dir short enough for a unix socket path (pytest's tmp_path may not be)."""
    with tempfile.TemporaryDirectory(prefix="hpa-", dir="/tmp") as folder:
        os.chmod(folder, 0o700)
        yield Path(folder)


async def test_two_agents_one_host_and_a_fault_closes_only_its_agent(short_dir):
    oplog.configure("machine", filename="machine.jsonl", log_dir=short_dir)
    (short_dir / "agents.sock").write_text("a dead service's socket")  # replaced: the caller holds the lock
    host = AgentHost(short_dir)
    assert await host.start()
    try:
        assert stat.S_IMODE(os.stat(host.path).st_mode) == 0o600 and stat.S_ISSOCK(os.stat(host.path).st_mode)
        calm, ready_a = await FakeShim.attach(host, "calm", short_dir)
        faulty, ready_b = await FakeShim.attach(host, "faulty", short_dir, fault="agent")
        assert ready_a["t"] == ready_b["t"] == "ready" and ready_a["port"] != ready_b["port"]
        assert len(host.bridges) == 2
        faulty.send({"t": "event", "e": {"type": "agent_start"}})
        await faulty.writer.drain()
        assert await faulty.closed()
        calm.send({"t": "event", "e": {"type": "agent_start"}})
        await calm.writer.drain()
        await asyncio.sleep(0.2)
        assert [b.node_id for b in host.bridges.values()] == ["calm"]
        assert next(iter(host.bridges.values())).state.working is True  # the calm agent still applies events
        log = [json.loads(x) for x in (short_dir / "faulty" / "pi-socket.jsonl").read_text().splitlines()]
        [error] = [r for r in log if r.get("needsHardening")]
        assert error["boundary"] == "agent" and error["agent"] == "faulty" and error["component"] == "bridge"
        assert "needsHardening" not in (short_dir / "calm" / "pi-socket.jsonl").read_text()
        # the faulty pi's shim reconnects: the fault already fired for it, its new bridge serves
        again, ready = await FakeShim.attach(host, "faulty", short_dir, fault="agent")
        again.send({"t": "event", "e": {"type": "agent_start"}})
        await again.writer.drain()
        await asyncio.sleep(0.2)
        assert ready["t"] == "ready" and sorted(b.node_id for b in host.bridges.values()) == ["calm", "faulty"]
    finally:
        await host.close()
    assert not host.path.exists() and host.bridges == {}


async def test_a_connection_without_an_attach_line_is_closed_and_serves_nothing(short_dir, monkeypatch):
    oplog.configure("machine", filename="machine.jsonl", log_dir=short_dir)
    monkeypatch.setattr("pi_socket.machine.agents.ATTACH_TIMEOUT_S", 0.3)
    host = AgentHost(short_dir)
    assert await host.start()
    try:
        for first in (b'{"t":"hello","node_id":"x"}\n', b"", b"garbage\n"):
            reader, writer = await asyncio.open_unix_connection(str(host.path))
            writer.write(first)
            await writer.drain()
            assert await asyncio.wait_for(reader.read(), 3) == b""
            assert host.bridges == {}
            writer.close()
    finally:
        await host.close()
    assert "without a usable attach line" in (short_dir / "machine.jsonl").read_text()


async def test_a_socket_path_too_long_is_refused_with_a_log_line(tmp_path):
    oplog.configure("machine", filename="machine.jsonl", log_dir=tmp_path)
    folder = tmp_path / ("x" * 120)
    host = AgentHost(folder)
    assert socket_path(folder) == folder / "agents.sock"
    assert await host.start() is False
    assert "too long" in (tmp_path / "machine.jsonl").read_text()


def test_agents_log_files_open_at_once_are_bounded_and_a_closed_one_reopens(tmp_path):
    host = AgentHost(tmp_path)
    first = host._file(tmp_path / "a0")
    for n in range(1, 70):
        host._file(tmp_path / f"a{n}")
    assert len(host._files) == 64 and tmp_path / "a0" not in host._files
    assert first.write_line('{"msg": "still written"}')
    assert "still written" in (tmp_path / "a0" / "pi-socket.jsonl").read_text()


async def test_a_shim_that_closes_with_our_lines_unread_still_delivers_everything_it_wrote(short_dir):
    """pi exiting with bridge lines unread resets the socket; the lines it wrote before (its last events, bye) are
    still applied, as they are over a pipe."""
    oplog.configure("machine", filename="machine.jsonl", log_dir=short_dir)
    host = AgentHost(short_dir)
    assert await host.start()
    try:
        shim, _ = await FakeShim.attach(host, "burst", short_dir)
        shim.writer.transport.pause_reading()
        await asyncio.sleep(0.2)  # the bridge's history and state requests now sit unread in our socket
        for i in range(20000):
            shim.send({"t": "event", "e": {"type": "message_end", "message": {"role": "user", "content": f"m{i}"}}})
        shim.send({"t": "bye", "reason": "quit"})
        await shim.writer.drain()
        shim.writer.transport.abort()  # closed with unread data: the kernel resets the connection
        log = short_dir / "burst" / "pi-socket.jsonl"
        for _ in range(100):
            if "shim said bye" in log.read_text():
                break
            await asyncio.sleep(0.05)
        assert "shim said bye" in log.read_text()
    finally:
        await host.close()
