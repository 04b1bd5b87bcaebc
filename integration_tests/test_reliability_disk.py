"""Disk full / unwritable log directory: logging fails quietly, nothing else does (specs/reliability.md).

The hypivisor and a real bridge are started with ``PI_SOCKET_LOG_DIR`` pointing at
- a regular file (the directory cannot be created: ENOTDIR), or
- a directory whose ``hypivisor.jsonl`` / ``pi-socket.jsonl`` is a symlink to ``/dev/full`` (every write
  fails with ENOSPC, exactly like a full disk).
Both must start, register, proxy, acknowledge prompts and shut down as usual, and write nothing to stderr
(the bridge's stdout carries only protocol lines; a traceback there would corrupt pi's TUI).
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
import websockets

from integration_tests.harness.hypivisor_proc import RegistryClient
from pi_socket.tests.fake_shim import FakeShim


def broken_log_dir(tmp_path: Path, kind: str) -> Path:
    if kind == "file":
        p = tmp_path / "not-a-dir"
        p.write_text("a file where the log directory should be")
        return p
    d = tmp_path / "full-disk"
    d.mkdir()
    for name in ("hypivisor.jsonl", "pi-socket.jsonl"):
        (d / name).symlink_to("/dev/full")
    return d


@pytest.mark.parametrize("kind", ["file", "dev-full"])
async def test_hypivisor_and_bridge_work_with_an_unwritable_log(hypivisor_factory, tmp_path, kind):
    if kind == "dev-full" and not Path("/dev/full").exists():
        pytest.skip("/dev/full is missing")
    logs = broken_log_dir(tmp_path, kind)
    hv = hypivisor_factory(ttl=3, env={"PI_SOCKET_LOG_DIR": str(logs)}, args=["--log-level", "debug"])
    (tmp_path / "b").mkdir()
    fake = FakeShim(
        tmp_path / "b",
        node_id="disk",
        env={"HYPIVISOR_WS": hv.ws_url, "PI_SOCKET_LOG_DIR": str(logs), "PI_SOCKET_LOG_LEVEL": "debug"},
    )
    await fake.start()
    try:
        async with await RegistryClient.connect(hv) as dash:
            init = await dash.event("init")
            if not any(n["id"] == "disk" for n in init["nodes"]):
                await dash.event("node_joined", timeout=10)
            for i in range(3):  # proxied prompts: the whole path logs on every step
                async with websockets.connect(hv.agent_url("disk"), open_timeout=5) as ws:
                    assert json.loads(await asyncio.wait_for(ws.recv(), 5))["type"] == "init_state"
                    await ws.send(json.dumps({"type": "prompt", "id": f"d{i}", "text": "hi"}))
                    while True:
                        m = json.loads(await asyncio.wait_for(ws.recv(), 5))
                        if m.get("type") in ("ack", "error"):
                            break
                    assert m == {"type": "ack", "id": f"d{i}", "duplicate": False}
                await ws.wait_closed()
            assert [r["prompt_id"] for r in fake.delivered] == ["d0", "d1", "d2"]
            bad = await RegistryClient.connect(hv)  # bad input is logged too: still answered
            assert (await bad.call("nope"))["error"]["code"] == -32601
            await bad.close()
            await fake.close_stdin()  # clean exit: deregisters even though it cannot log
            assert await fake.wait_exit(5) == 0
            assert (await dash.event("node_removed", timeout=5))["reason"] == "deregistered"
        assert await fake.stderr_text() == ""
        assert hv.proc.poll() is None
        hv.stop()
        assert hv.proc.returncode in (0, -15), hv.proc.returncode
        assert "Traceback" not in hv.stderr() and "Traceback" not in hv.stdout()
        if kind == "file":
            assert logs.read_text().startswith("a file where")  # untouched
        else:
            assert all((logs / n).is_symlink() for n in ("hypivisor.jsonl", "pi-socket.jsonl"))
    finally:
        await fake.stop()


@pytest.mark.pi
def test_real_pi_with_a_full_disk_log_still_streams_and_registers(hypivisor_factory, start_pi, fake_llm, tmp_path):
    """Real pi 0.73.1 + shim + bridge, every log write failing with ENOSPC: the agent is found through the
    hypivisor (its log cannot tell us the port), a prompt streams back, pi quits cleanly."""
    from integration_tests.harness.pi_proc import AgentClient, wait_until

    logs = broken_log_dir(tmp_path, "dev-full")
    hv = hypivisor_factory(ttl=3, env={"PI_SOCKET_LOG_DIR": str(logs)})
    pi = start_pi("0.73.1", mode="rpc", wait=False, env={"PI_SOCKET_LOG_DIR": str(logs), "HYPIVISOR_WS": hv.ws_url})

    async def nodes():
        async with await RegistryClient.connect(hv) as c:
            return (await c.call("list_nodes"))["result"]["nodes"]

    node = wait_until(lambda: (lambda ns: ns[0] if ns else None)(asyncio.run(nodes())), 30, "pi to register")
    assert node["pid"] == pi.proc.pid
    fake_llm.script([{"text": "written to no disk"}])
    c = AgentClient(hv.agent_url(node["id"]))
    c.wait_for(lambda f: f["type"] == "init_state")
    c.send({"type": "prompt", "id": "full-1", "text": "hello"})
    c.wait_for(lambda f: f["type"] == "ack" and f["id"] == "full-1")
    end = c.wait_for(lambda f: f["type"] == "message_end" and f["message"]["role"] == "assistant")
    assert "written to no disk" in json.dumps(end["message"]["content"])
    c.close()
    assert pi.stop() == 0
    wait_until(lambda: asyncio.run(nodes()) == [], 10, "the node to leave")
    assert all((logs / n).is_symlink() for n in ("hypivisor.jsonl", "pi-socket.jsonl"))
