"""Every local pi served by the machine service (specs/machines.md, "Agents served by the machine service").

Real pi (the versions of ``HYPI_PI_VERSIONS``), the real shim, the real ``python -m pi_socket serve`` that the
first shim starts by itself, and a real hypivisor. Each test has its own service (the harness gives every test its
own runtime dir and stops the service at the end).
"""

from __future__ import annotations

import datetime
import fcntl
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from integration_tests.harness.pi_proc import REPO_ROOT, _cmdline, pid_alive, wait_until
from integration_tests.test_pi_link import assistant_end, connect, is_type, prompt, run_done, text_of
from integration_tests.test_pi_resilience import _listed, registry, rpc_reply_text

pytestmark = [pytest.mark.pi]


def services(pi_home) -> list[int]:
    """Live ``pi_socket serve`` processes of this test (their environment names its runtime dir)."""
    marker = f"XDG_RUNTIME_DIR={pi_home.env['XDG_RUNTIME_DIR']}".encode()
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or "pi_socket serve" not in _cmdline(int(entry.name)):
            continue
        try:
            if marker in (entry / "environ").read_bytes().split(b"\0") and pid_alive(int(entry.name)):
                out.append(int(entry.name))
        except OSError:
            continue
    return out


def bridges_anywhere(pi_home) -> list[int]:
    """Live ``pi_socket.bridge`` processes of this test, wherever they hang."""
    marker = f"XDG_RUNTIME_DIR={pi_home.env['XDG_RUNTIME_DIR']}".encode()
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or "pi_socket.bridge" not in _cmdline(int(entry.name)):
            continue
        try:
            if marker in (entry / "environ").read_bytes().split(b"\0"):
                out.append(int(entry.name))
        except OSError:
            continue
    return out


def _epoch(ts: str) -> float:
    return datetime.datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()


def served(pi) -> bool:
    return any(r.get("msg") == "agent attached" for r in pi.bridge_log())


@pytest.mark.pi_smoke
def test_two_agents_on_one_service_driven_through_the_proxy(start_pi, pi_version, agent_client, hypivisor):
    env = {"HYPIVISOR_WS": hypivisor.ws_url}
    a = start_pi(pi_version, mode="rpc", env=env)
    b = start_pi(pi_version, mode="rpc", env=env)
    assert served(a) and served(b)
    one = services(a.home)
    assert len(one) == 1 and one == [a.home.service_pid()], one
    assert a.bridge_pid() is None and b.bridge_pid() is None and bridges_anywhere(a.home) == []
    assert a.port != b.port and a.node_id != b.node_id
    dash = registry(agent_client, hypivisor)
    dash.send({"id": "l1", "method": "list_nodes"})
    wait_until(lambda: _listed(dash, a.node_id) and _listed(dash, b.node_id), 15, "both agents on the roster")
    for pi, word in ((a, "alpha"), (b, "beta")):
        via = agent_client(hypivisor.agent_url(pi.node_id), hypivisor.auth_headers)
        init = via.wait_for(is_type("init_state"))
        assert init["node"]["id"] == pi.node_id and init["node"]["pid"] == pi.proc.pid
        assert init["node"]["cwd"] == str(pi.cwd)
        prompt(via, f"through the proxy {word}")
        end = via.wait_for(assistant_end)
        assert text_of(end["message"]) == f"Hello from fake LLM. You said: through the proxy {word}"
    # each agent logs to its own file, as its bridge would
    assert all(r.get("agent") in (None, a.node_id) for r in a.bridge_log())
    assert all(r.get("agent") in (None, b.node_id) for r in b.bridge_log())


def test_service_sigkill_mid_stream_both_pi_live_on_and_come_back(
    start_pi, pi_version, agent_client, hypivisor, fake_llm
):
    env = {"HYPIVISOR_WS": hypivisor.ws_url, "PI_SOCKET_RECONNECT_MS": "200"}
    pis = [start_pi(pi_version, mode="rpc", env=env) for _ in range(2)]
    old = pis[0].home.service_pid()
    assert old and all(pi.bridge_pid() is None for pi in pis)
    ids = {pi.node_id: pi.port for pi in pis}
    clients = [connect(agent_client, pi)[0] for pi in pis]
    replies = [fake_llm.slow(words=30, delay=0.08) for _ in pis]
    since = [len(pi.events) for pi in pis]
    for n, c in enumerate(clients):
        prompt(c, f"slow {n}", id=f"kept-{n}")
        c.wait_for(is_type("ack", id=f"kept-{n}"))
    for c in clients:
        c.wait_for(lambda f: f.get("type") == "message_update" and f["assistantMessageEvent"]["type"] == "text_delta")
    killed_at = time.time()
    os.kill(old, signal.SIGKILL)
    wait_until(lambda: not pid_alive(old), 5, "the service to die")
    for pi, s in zip(pis, since, strict=True):  # pi did not notice: both replies end on pi's own stdout
        wait_until(lambda pi=pi, s=s: rpc_reply_text(pi, s) in replies, 20, "pi to finish its reply alone")
        assert pi.proc.poll() is None and pi.call({"type": "get_state"})["success"] is True
    for pi in pis:  # a new service within 5 s (the shims' restart), each agent back with its id and port
        back = pi.wait_bridge(starts=2, timeout=10)
        assert _epoch(back["ts"]) - killed_at < 5.0, back
    new = pis[0].home.service_pid()
    assert new and new != old and services(pis[0].home) == [new]
    assert all(pi.bridge_pid() is None for pi in pis)
    assert {pi.node_id: pi.port for pi in pis} == ids
    dash = registry(agent_client, hypivisor)
    dash.send({"id": "l1", "method": "list_nodes"})
    wait_until(lambda: all(_listed(dash, pi.node_id) for pi in pis), 15, "both agents re-registered")
    for n, pi in enumerate(pis):
        again, init = connect(agent_client, pi)
        assert {text_of(m) for m in init["messages"] if m["role"] == "assistant"} & set(replies)  # history from pi
        prompt(again, f"slow {n}", id=f"kept-{n}")  # a client that never saw the end resends: not doubled
        assert again.wait_for(is_type("ack", id=f"kept-{n}"))["duplicate"] is True
        prompt(again, f"after {n}", id=f"after-{n}")
        again.wait_for(lambda f, n=n: assistant_end(f) and f"after {n}" in text_of(f["message"]))
    texts = fake_llm.user_texts()
    assert sorted(texts) == ["after 0", "after 1", "slow 0", "slow 1"], texts


def test_a_fault_in_one_agent_closes_only_that_agent(start_pi, pi_version, agent_client, fake_llm):
    calm = start_pi(pi_version, mode="rpc")
    faulty = start_pi(pi_version, mode="rpc", env={"PI_SOCKET_FAULT": "agent"})
    assert calm.home.service_pid() and calm.bridge_pid() is None and faulty.bridge_pid() is None
    watcher, _ = connect(agent_client, calm)
    reply = fake_llm.slow(words=30, delay=0.08)
    prompt(watcher, "calm and slow")
    watcher.wait_for(lambda f: f.get("type") == "message_update" and f["assistantMessageEvent"]["type"] == "text_delta")
    c, _ = connect(agent_client, faulty)
    prompt(c, "this one breaks its bridge")  # its first event line raises out of its bridge
    faulty.wait_bridge(starts=2, timeout=15)
    errors = [r for r in faulty.bridge_log() if r.get("boundary") == "agent" and r.get("needsHardening")]
    assert errors and "injected fault" in errors[0]["error"]
    mark = len(watcher.frames)
    end = watcher.wait_for(assistant_end, timeout=20)
    assert text_of(end["message"]) == reply  # the other agent's link never broke
    assert not [f for f in watcher.frames if f.get("type") == "closed"], "the calm agent's link closed"
    assert watcher.frames[mark:] or end
    assert len(calm.listening()) == 1  # its bridge did not restart
    assert not [r for r in calm.bridge_log() if r.get("boundary") == "agent"]
    again, init = connect(agent_client, faulty)  # the faulty agent is back, its history read from pi
    wait_until(lambda: "this one breaks its bridge" in str(faulty.events), 10, "pi to get the prompt")
    prompt(again, "after the fault")
    again.wait_for(lambda f: assistant_end(f) and "after the fault" in text_of(f["message"]))
    assert faulty.home.service_pid() and services(faulty.home) == [faulty.home.service_pid()]


def test_two_shims_racing_start_exactly_one_service(start_pi, pi_version, agent_client, pi_home):
    assert services(pi_home) == []
    started: list = []
    threads = [threading.Thread(target=lambda: started.append(start_pi(pi_version, mode="rpc"))) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(started) == 3
    wait_until(lambda: len(services(pi_home)) == 1, 10, "a single service")
    assert services(pi_home) == [pi_home.service_pid()]
    # every shim that found no service started one; all but one of those lost the lock and said so
    starts = [r for pi in started for r in pi.bridge_log() if r.get("msg") == "started the machine service"]
    outs = "".join(p.read_text() for p in pi_home.logs.rglob("pi-socket-machine.out"))
    assert starts and outs.count("a machine service already runs") == len(starts) - 1, (len(starts), outs)
    for pi in started:
        assert served(pi) and pi.bridge_pid() is None
        c, _ = connect(agent_client, pi)
        prompt(c, "raced")
        c.wait_for(run_done(pi_version))


def test_no_service_answering_falls_back_to_a_bridge_child(start_pi, pi_version, agent_client, pi_home):
    """A lock held by something that serves no agents (an older service): pi gets its own bridge, unharmed."""
    runtime = pi_home.runtime
    runtime.mkdir(parents=True, mode=0o700, exist_ok=True)
    fd = os.open(runtime / "machine.lock", os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        pi = start_pi(pi_version, mode="rpc", env={"PI_SOCKET_SERVICE_WAIT_MS": "1500"})
        assert pi.bridge_pid() is not None and not served(pi)
        shim = [r for r in pi.bridge_log() if r.get("component") == "shim" and "no machine service" in r.get("msg", "")]
        assert shim, "the shim did not say why it started a bridge child"
        c, _ = connect(agent_client, pi)
        prompt(c, "via the fallback")
        c.wait_for(lambda f: assistant_end(f) and "via the fallback" in text_of(f["message"]))
    finally:
        os.close(fd)


def test_bridge_mode_is_forced_by_the_environment(start_pi, pi_version, pi_home):
    pi = start_pi(pi_version, mode="rpc", env={"PI_SOCKET_MODE": "bridge"})
    assert pi.bridge_pid() is not None and not served(pi) and services(pi_home) == []


def test_pi_print_mode_with_a_running_service_exits_promptly(start_pi, pi_version, pi_home):
    first = start_pi(pi_version, mode="rpc")  # the service now runs
    service = pi_home.service_pid()
    assert service and first.bridge_pid() is None
    pi = start_pi(pi_version, mode="print", prompt="TOOLCALL: echo printed")
    rc, out, err, seconds = pi.wait(timeout=30)
    assert rc == 0 and "Tool result received: printed" in out, err
    assert seconds < 8 and "Extension error" not in err
    assert pi_home.service_pid() == service  # the service outlives every pi
    wait_until(lambda: any(r.get("msg") == "agent detached" for r in pi.bridge_log()), 10, "the agent to detach")


def test_serve_started_by_hand_twice_runs_once(pi_home):
    env = {**pi_home.env, "PYTHONPATH": str(REPO_ROOT)}
    procs = [subprocess.Popen([sys.executable, "-m", "pi_socket", "serve"], env=env, cwd=REPO_ROOT,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) for _ in range(3)]  # fmt: skip
    try:
        wait_until(lambda: (pi_home.runtime / "agents.sock").exists(), 15, "the agent socket")
        assert oct(os.stat(pi_home.runtime / "agents.sock").st_mode & 0o777) == "0o600"
        assert oct(os.stat(pi_home.runtime).st_mode & 0o777) == "0o700"
        wait_until(lambda: sum(p.poll() == 0 for p in procs) == 2, 15, "two of three to exit 0")
        assert len(services(pi_home)) == 1
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
            p.wait(10)


def test_service_sigterm_deregisters_its_agents_and_the_shims_start_a_new_one(start_pi, pi_version, hypivisor):
    env = {"HYPIVISOR_WS": hypivisor.ws_url}
    pis = [start_pi(pi_version, mode="rpc", env=env) for _ in range(2)]
    old = pis[0].home.service_pid()
    registered = lambda pi: any(r.get("msg") == "registered with hypivisor" for r in pi.bridge_log())  # noqa: E731
    wait_until(lambda: all(registered(pi) for pi in pis), 15, "both agents registered")
    os.kill(old, signal.SIGTERM)
    wait_until(lambda: not pid_alive(old), 5, "the service to exit on SIGTERM")
    for pi in pis:
        assert any(r.get("msg") == "deregistered from hypivisor" for r in pi.bridge_log()), pi.bridge_log()[-5:]
        pi.wait_bridge(starts=2, timeout=10)
        assert pi.proc.poll() is None
    new = pis[0].home.service_pid()
    assert new and new != old


def test_a_runtime_dir_too_long_for_a_socket_goes_straight_to_a_bridge_child(start_pi, pi_version, tmp_path):
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    deep.mkdir(parents=True)
    t0 = time.monotonic()
    pi = start_pi(pi_version, mode="rpc", env={"XDG_RUNTIME_DIR": str(deep)})
    assert pi.bridge_pid() is not None and not served(pi)
    assert time.monotonic() - t0 < 9  # no wait for a service (the harness lets the shim wait 10 s for one)
    assert any("socket path is too long" in r.get("msg", "") for r in pi.bridge_log())
