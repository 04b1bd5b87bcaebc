"""Invariant 1 with real processes: neither the hypivisor nor the bridge can harm a running pi.

pi (0.73.1, 1.5.2, 1.6.0, RPC mode) runs with the shim; the bridge is the real ``python -m pi_socket.bridge``
and the hypivisor the real ``python -m hypivisor``. Processes are killed with SIGKILL, so no cleanup runs.
"""

from __future__ import annotations

import os
import signal
import time

import pytest

from integration_tests.harness.pi_proc import pid_alive, wait_until
from integration_tests.test_pi_link import assistant_end, connect, is_type, prompt, run_done, text_of

pytestmark = [pytest.mark.pi]
# Tests about the per-pi bridge process itself (kill it, freeze it, watch it exit) pin it; the rest run on the
# default, the machine service (the service's own faults: test_machine_hosting.py).
BRIDGE = {"PI_SOCKET_MODE": "bridge"}


def rpc_reply_text(pi, since: int) -> str:
    """Text of the last assistant message_end pi printed on its RPC stdout after event index ``since``."""
    ends = [
        e
        for e in pi.events[since:]
        if e.get("type") == "message_end" and (e.get("message") or {}).get("role") == "assistant"
    ]
    return text_of(ends[-1]["message"]) if ends else ""


@pytest.mark.pi_smoke
def test_bridge_sigkill_mid_stream_pi_unaffected_bridge_back_with_same_id_and_port(
    start_pi, pi_version, agent_client, fake_llm
):
    pi = start_pi(pi_version, mode="rpc", env=BRIDGE)
    node_id, port = pi.node_id, pi.port
    c, _ = connect(agent_client, pi)
    reply = fake_llm.slow(words=30, delay=0.08)
    since = len(pi.events)
    prompt(c, "slow while the bridge dies")
    c.wait_for(lambda f: f.get("type") == "message_update" and f["assistantMessageEvent"]["type"] == "text_delta")
    bridge = pi.bridge_pid()
    assert bridge, "no bridge child found under pi"
    os.kill(bridge, signal.SIGKILL)
    wait_until(lambda: not pid_alive(bridge), 5, "the bridge to die")
    # pi did not notice: the reply completes on its own stdout and pi still answers
    wait_until(lambda: rpc_reply_text(pi, since) == reply, 20, "pi to finish the reply without the bridge")
    assert pi.proc.poll() is None
    assert pi.call({"type": "get_state"})["success"] is True
    # the shim restarted the bridge: same node id, same port (PI_SOCKET_PREFERRED_PORT)
    pi.wait_bridge(starts=2)
    assert (pi.node_id, pi.port) == (node_id, port)
    assert pi.bridge_pid() not in (None, bridge)
    again, init = connect(agent_client, pi)
    assert init["node"]["id"] == node_id
    assert reply in [text_of(m) for m in init["messages"] if m["role"] == "assistant"]  # history re-read from pi
    prompt(again, "after the restart")
    again.wait_for(lambda f: assistant_end(f) and "after the restart" in text_of(f["message"]))
    # the shim logged the crash itself (the bridge was down), as a shim line
    shim_lines = [r for r in pi.bridge_log() if r.get("component") == "shim" and "bridge exited" in r.get("msg", "")]
    assert shim_lines and shim_lines[0]["signal"] == "SIGKILL"


def test_bridge_restarts_back_off_and_pi_keeps_working(start_pi, pi_version):
    """A bridge that keeps dying is restarted with growing delays (0.5 s, 1 s, 2 s); pi keeps answering."""
    pi = start_pi(pi_version, mode="rpc", env=BRIDGE)
    gaps = []
    for n in range(1, 4):
        pi.wait_bridge(starts=n)
        bridge = wait_until(pi.bridge_pid, 10, "the bridge process")
        os.kill(bridge, signal.SIGKILL)
        killed = time.monotonic()
        assert pi.call({"type": "get_state"})["success"] is True
        wait_until(lambda old=bridge: (lambda b: b and b != old)(pi.bridge_pid()), 15, "the next bridge process")
        gaps.append(time.monotonic() - killed)
    pi.wait_bridge(starts=4, timeout=30)
    starts = pi.listening()
    assert len({r["port"] for r in starts}) == 1 and len({r["node"] for r in starts}) == 1
    assert gaps[0] >= 0.4 and gaps[1] >= 0.9 and gaps[2] >= 1.9, gaps
    assert gaps[2] > gaps[0] + 1.0, gaps


def test_a_bridge_that_cannot_start_never_disturbs_pi(start_pi, pi_version):
    """A broken Python for the bridge: pi -p still answers and exits at once; the shim logs why, to the file."""
    pi = start_pi(pi_version, mode="print", prompt="hello anyway", env={"PI_SOCKET_PYTHON": "/nonexistent/python"})
    rc, out, err, seconds = pi.wait(timeout=30)
    assert rc == 0 and "You said: hello anyway" in out, err
    assert seconds < 8
    assert "Extension error" not in err and "pi-socket" not in err
    lines = [r for r in pi.bridge_log() if r.get("component") == "shim"]
    assert any("/nonexistent/python" in str(r.get("python")) for r in lines), lines


def registry(agent_client, hv):
    dash = agent_client(hv.ws_url, hv.auth_headers)
    dash.wait_for(lambda f: f.get("event") == "init")
    return dash


def node_event(name: str, node_id: str, **match):
    def pred(f):
        node = f.get("node") or {}
        return f.get("event") == name and node.get("id") == node_id and all(node.get(k) == v for k, v in match.items())

    return pred


@pytest.mark.pi_smoke
def test_registers_and_reports_working_then_idle(start_pi, pi_version, agent_client, hypivisor):
    dash = registry(agent_client, hypivisor)
    pi = start_pi(pi_version, mode="rpc", env={"HYPIVISOR_WS": hypivisor.ws_url})
    joined = dash.wait_for(node_event("node_joined", pi.node_id))
    node = joined["node"]
    assert node["port"] == pi.port and node["pid"] == pi.proc.pid and node["pi_version"] == pi_version
    assert node["cwd"] == str(pi.cwd) and node["activity"] == "idle"
    c, _ = connect(agent_client, pi)
    mark = len(dash.frames)
    prompt(c, "TOOLCALL: echo busy")
    dash.wait_for(node_event("node_updated", pi.node_id, activity="working"), start=mark)
    c.wait_for(run_done(pi_version))
    dash.wait_for(node_event("node_updated", pi.node_id, activity="idle"), start=mark)
    assert pi.call({"type": "get_state"})["data"]["isStreaming"] is False


def test_hypivisor_sigkill_mid_stream_pi_streams_on_and_re_registers(
    start_pi, pi_version, agent_client, hypivisor, fake_llm
):
    pi = start_pi(pi_version, mode="rpc", env={"HYPIVISOR_WS": hypivisor.ws_url, "PI_SOCKET_RECONNECT_MS": "200"})
    dash = registry(agent_client, hypivisor)
    dash.wait_for(
        lambda f: any(n["id"] == pi.node_id for n in f.get("nodes") or []) or node_event("node_joined", pi.node_id)(f)
    )
    c, _ = connect(agent_client, pi)
    reply = fake_llm.slow(words=40, delay=0.12)
    prompt(c, "slow while the hypivisor dies")
    c.wait_for(lambda f: f.get("type") == "message_update" and f["assistantMessageEvent"]["type"] == "text_delta")
    hypivisor.kill()
    mark = len(c.frames)
    end = c.wait_for(assistant_end, timeout=20, start=mark)  # the direct client keeps streaming
    assert text_of(end["message"]) == reply
    assert [f for f in c.frames[mark:] if f.get("type") == "message_update"], "stream stalled at the kill"
    c.wait_for(run_done(pi_version))
    assert pi.proc.poll() is None and pi.listening().__len__() == 1  # the bridge did not restart either
    hypivisor.start()
    dash2 = registry(agent_client, hypivisor)
    dash2.send({"id": "l1", "method": "list_nodes"})
    wait_until(lambda: _listed(dash2, pi.node_id), 15, "the agent to re-register")
    prompt(c, "still here")
    c.wait_for(lambda f: assistant_end(f) and "still here" in text_of(f["message"]))


def _listed(dash, node_id: str) -> bool:
    """The node is active in a list_nodes reply or in a push event seen by this dashboard."""
    for f in dash.frames:
        nodes = (f.get("result") or {}).get("nodes") or f.get("nodes") or ([f["node"]] if f.get("node") else [])
        if any(n.get("id") == node_id and n.get("status") == "active" for n in nodes):
            return True
    if not [f for f in dash.frames if f.get("id") == "poll"]:
        dash.send({"id": "poll", "method": "list_nodes"})
    return False


def test_a_client_through_the_hypivisor_proxy_drives_pi(start_pi, pi_version, agent_client, hypivisor):
    pi = start_pi(pi_version, mode="rpc", env={"HYPIVISOR_WS": hypivisor.ws_url})
    dash = registry(agent_client, hypivisor)
    dash.send({"id": "l1", "method": "list_nodes"})
    wait_until(lambda: _listed(dash, pi.node_id), 10, "registration")
    via = agent_client(hypivisor.agent_url(pi.node_id), hypivisor.auth_headers)
    init = via.wait_for(is_type("init_state"))
    assert init["node"]["id"] == pi.node_id and init["node"]["port"] == pi.port
    direct, _ = connect(agent_client, pi)
    prompt(via, "through the proxy")
    end = via.wait_for(assistant_end)
    assert text_of(end["message"]) == "Hello from fake LLM. You said: through the proxy"
    direct.wait_for(lambda f: assistant_end(f) and text_of(f["message"]) == text_of(end["message"]))


@pytest.mark.pi_smoke
def test_pi_print_mode_exits_promptly_with_the_shim(start_pi, pi_version):
    pi = start_pi(pi_version, mode="print", prompt="TOOLCALL: echo printed", env=BRIDGE)
    rc, out, err, seconds = pi.wait(timeout=30)
    assert rc == 0, err
    assert "Tool result received: printed" in out
    assert seconds < 8, f"pi -p took {seconds:.1f} s with the shim loaded"
    assert "Extension error" not in err
    # the bridge it started does not outlive pi
    wait_until(lambda: any(r.get("msg") == "bridge exiting" for r in pi.bridge_log()), 10, "the bridge to exit")
    exiting = next(r for r in pi.bridge_log() if r.get("msg") == "bridge exiting")
    assert 0 < exiting["cpu_s"] < seconds * os.cpu_count(), exiting  # what the bridge cost this pi, logged at exit


def test_a_prompt_resent_through_a_restarted_bridge_is_not_doubled(start_pi, pi_version, agent_client, fake_llm):
    """Invariant 2 across a bridge crash: the bridge's own ledger died with it, the shim's did not."""
    pi = start_pi(pi_version, mode="rpc", env=BRIDGE)
    c, _ = connect(agent_client, pi)
    prompt(c, "exactly once", id="survives-crash")
    assert c.wait_for(is_type("ack", id="survives-crash"))["duplicate"] is False
    c.wait_for(run_done(pi_version))
    os.kill(pi.bridge_pid(), signal.SIGKILL)
    pi.wait_bridge(starts=2)
    again, _ = connect(agent_client, pi)
    prompt(again, "exactly once", id="survives-crash")  # the client never saw its ack: it resends
    assert again.wait_for(is_type("ack", id="survives-crash"))["duplicate"] is True
    prompt(again, "a fresh one", id="after-crash")
    assert again.wait_for(is_type("ack", id="after-crash"))["duplicate"] is False
    again.wait_for(lambda f: assistant_end(f) and "a fresh one" in text_of(f["message"]))
    assert fake_llm.user_texts() == ["exactly once", "a fresh one"]


def test_pi_killed_outright_takes_its_bridge_along(start_pi, pi_version):
    """SIGKILL to pi runs no shutdown hook: the bridge sees stdin EOF and exits on its own (no orphans)."""
    pi = start_pi(pi_version, mode="rpc", env=BRIDGE)
    bridge = pi.bridge_pid()
    pi.proc.kill()
    pi.proc.wait(5)
    wait_until(lambda: not pid_alive(bridge), 10, "the orphaned bridge to exit")


def test_a_frozen_bridge_does_not_slow_pi_and_catches_up(start_pi, pi_version, agent_client):
    """SIGSTOP the bridge: pi's handlers only enqueue, so a run completes at full speed; after SIGCONT the
    bridge reads the backlog and its clients see the run."""
    pi = start_pi(pi_version, mode="rpc", env=BRIDGE)
    c, _ = connect(agent_client, pi)
    bridge = pi.bridge_pid()
    os.kill(bridge, signal.SIGSTOP)
    try:
        t0 = time.monotonic()
        since = len(pi.events)
        assert pi.call({"type": "prompt", "message": "TOOLCALL: echo while frozen"})["success"]
        assert pi.until(lambda e: e.get("type") == "agent_end", timeout=20), "pi stalled behind a frozen bridge"
        assert time.monotonic() - t0 < 8
        assert rpc_reply_text(pi, since).startswith("Tool result received: while frozen")
        assert c.of_type("agent_end") == []
    finally:
        os.kill(bridge, signal.SIGCONT)
    c.wait_for(lambda f: assistant_end(f) and text_of(f["message"]).startswith("Tool result received: while frozen"))
    assert pi.bridge_pid() == bridge  # caught up, not restarted
