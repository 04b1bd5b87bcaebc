"""Past sessions on every machine (#22): two machine services on one host (own ``PI_SOCKET_MACHINE``, ``HOME``,
runtime dir, tmux server, session dir), each with sessions written by real ``pi -p`` runs (fake LLM). Each machine
lists, reads and searches its own sessions through one hypivisor; a search asks every machine and streams a frame
per machine as each answers (a stopped machine never holds the others; an offline one says so at once); resume
spawns on the session's machine (the same file; a live one offers the agent or a fork)."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import pytest

from integration_tests.harness.hypivisor_proc import RegistryClient
from integration_tests.harness.machines import (
    Machine,
    machines_fixture,  # noqa: F401 - the `machines` fixture
)
from integration_tests.harness.pi_proc import pi_bin
from integration_tests.harness.spawn import NEEDS_TMUX

pytestmark = [pytest.mark.pi, pytest.mark.slow]

REAL_PI = "0.73.1"  # the oldest pinned pi: the fastest to start
WORDS = {"alpha": "aardvark", "beta": "okapi"}


def make_machine(machines, hv, pi_home, name: str) -> Machine:
    """A machine whose pi is the pinned pi (the shared agent dir: shim, fake models) writing its sessions to the
    machine's own session dir (``PI_CODING_AGENT_SESSION_DIR`` inside its HOME)."""
    m = machines(hv, name)
    (m.bindir / "pi").unlink()
    (m.bindir / "pi").symlink_to(pi_bin(REAL_PI))
    m.env.update({k: v for k, v in pi_home.env.items() if k.startswith("PI_") and k != "PI_SOCKET_MACHINE"})
    m.env["PI_CODING_AGENT_SESSION_DIR"] = str(m.home / "sessions")
    (m.home / "work").mkdir()
    return m


def run_print(start_pi, m: Machine, prompt: str) -> None:
    env = {"HOME": str(m.home), "PI_CODING_AGENT_SESSION_DIR": m.env["PI_CODING_AGENT_SESSION_DIR"],
           "PI_SOCKET_MACHINE": m.name}  # fmt: skip
    pi = start_pi(REAL_PI, mode="print", prompt=prompt, cwd=m.home / "work", env=env)
    rc, out, err, _ = pi.wait(timeout=60)
    assert rc == 0, out + err


def files_of(m: Machine) -> list[Path]:
    return sorted((m.home / "sessions").glob("*.jsonl"))


async def wait_online(dash: RegistryClient, names: set[str], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        found = {m["name"]: m for m in (await dash.call("list_machines"))["result"]["machines"]}
        if all(n in found and found[n]["online"] for n in names):
            return
        assert time.monotonic() < deadline, found
        await asyncio.sleep(0.1)


async def listed(dash: RegistryClient, machine: str, want: int, timeout: float = 30.0) -> list[dict]:
    """The machine's sessions once its index holds ``want`` of them (it is built in the background; bounded)."""
    deadline = time.monotonic() + timeout
    while True:
        res = await dash.call("list_sessions", {"machine": machine}, timeout=20)
        assert "result" in res, res
        if len(res["result"]["sessions"]) >= want or time.monotonic() > deadline:
            return res["result"]["sessions"]
        await asyncio.sleep(0.3)


async def start_search(dash: RegistryClient, query: str, **params) -> tuple[str, list[str]]:
    answer = await dash.call("search", {"query": query, **params})
    assert "result" in answer, answer
    return answer["result"]["query_id"], answer["result"]["machines"]


async def frames_of(dash: RegistryClient, query_id: str, machines: list[str], timeout: float = 20) -> dict[str, dict]:
    out: dict[str, dict] = {}
    while len(out) < len(machines):
        frame = await dash.event("search_results", timeout=timeout, query_id=query_id)
        assert frame["done"] and frame["machine"] not in out
        out[frame["machine"]] = frame
    return out


@NEEDS_TMUX
async def test_sessions_of_two_machines_listed_read_searched_and_resumed(
    hypivisor_factory, machines, pi_home, start_pi, fake_llm, agent_client
):
    hv = hypivisor_factory(token="tok-sessions", env={"PI_SOCKET_MACHINE": "hub", "HYPI_SPAWN_TIMEOUT": "40"})
    a, b = make_machine(machines, hv, pi_home, "alpha"), make_machine(machines, hv, pi_home, "beta")
    for m in (a, b):
        run_print(start_pi, m, f"tell me about the {WORDS[m.name]} and the platypus")
        assert len(files_of(m)) == 1
    a.start()
    b.start()
    stopped = False
    try:
        async with await RegistryClient.connect(hv) as dash:
            await dash.event("init")
            await wait_online(dash, {"alpha", "beta"})

            # each machine lists and reads its own sessions, with ids it issued
            sessions = {}
            for m in (a, b):
                [s] = await listed(dash, m.name, 1)
                assert s["machine"] == m.name and s["cwd"] == str((m.home / "work").resolve())
                assert s["path"] == str(files_of(m)[0].resolve()) and WORDS[m.name] in s["first_prompt"]
                sessions[m.name] = s
                page = (await dash.call("read_session", {"machine": m.name, "path": s["id"]}))["result"]
                assert page["machine"] == m.name and page["messages"][0]["role"] == "user"
                assert WORDS[m.name] in page["messages"][0]["content"][0]["text"]
                assert page["branches"] == [] and page["parent"] is None
            # a machine serves only its own files: another machine's id or path, or any other file, is refused
            for raw in (sessions["alpha"]["id"], sessions["alpha"]["path"], "/etc/passwd", str(b.home / "x.jsonl")):
                err = (await dash.call("read_session", {"machine": "beta", "path": raw}))["error"]
                assert err["code"] == 1006, err
            hub = (await dash.call("list_sessions", {}))["result"]
            assert hub["machine"] == "hub" and hub["sessions"] == []  # the default: the hypivisor's own machine

            # search asks every machine; each word is found on its machine only
            for m in (a, b):
                qid, names = await start_search(dash, WORDS[m.name])
                assert names == ["hub", "alpha", "beta"]
                frames = await frames_of(dash, qid, names)
                assert all(f["error"] is None and not f["unavailable"] for f in frames.values()), frames
                hits = frames[m.name]["hits"]
                assert hits and {h["machine"] for h in hits} == {m.name}
                assert {h["path"] for h in hits} == {sessions[m.name]["path"]}
                assert all(not f["hits"] for n, f in frames.items() if n != m.name)
            # the role filter: the word is in the prompt (user) and in the fake LLM's echo (assistant), no tool
            for role, want in (("user", {"user"}), ("assistant", {"assistant"}), ("tool", set())):
                qid, names = await start_search(dash, "aardvark", machine="alpha", role=role)
                assert names == ["alpha"]
                hits = (await frames_of(dash, qid, names))["alpha"]["hits"]
                assert {h["role"] for h in hits} == want, (role, hits)
            # the date filters reach the machine's own index: a list by last activity, a search by entry time
            soon = time.time() + 3600
            for params, want in (({"since": soon}, 0), ({"until": soon}, 1), ({"since": 0, "until": 1}, 0)):
                res = await dash.call("list_sessions", {"machine": "alpha", **params})
                assert len(res["result"]["sessions"]) == want, (params, res)
            for params, want in (({"until": soon}, True), ({"since": soon}, False)):
                qid, names = await start_search(dash, "aardvark", machine="alpha", **params)
                assert bool((await frames_of(dash, qid, names))["alpha"]["hits"]) is want, params

            # a stopped machine never holds the others: alpha answers, beta's frame follows once it runs again
            b.proc.send_signal(signal.SIGSTOP)
            stopped = True
            qid, names = await start_search(dash, "platypus")
            first = [await dash.event("search_results", timeout=15, query_id=qid) for _ in range(2)]
            assert {f["machine"] for f in first} == {"hub", "alpha"}
            assert [h["machine"] for h in next(f for f in first if f["machine"] == "alpha")["hits"]][:1] == ["alpha"]
            with pytest.raises(TimeoutError):
                await dash.event("search_results", timeout=1.5, query_id=qid)
            b.proc.send_signal(signal.SIGCONT)
            stopped = False
            late = await dash.event("search_results", timeout=15, query_id=qid)
            assert late["machine"] == "beta" and late["done"] and late["error"] is None
            assert late["hits"] and {h["machine"] for h in late["hits"]} == {"beta"}

            # resume on alpha: pi starts in alpha's tmux, in the session's folder, and writes the same file
            original = files_of(a)[0]
            res = await dash.call("resume_session", {"machine": "alpha", "path": sessions["alpha"]["id"]}, timeout=70)
            assert "result" in res, (res, a.stderr()[-3000:])
            r = res["result"]
            assert not r["live"] and r["node"]["machine"] == "alpha" and r["session_file"] == str(original.resolve())
            assert a.tmux("has-session", "-t", f"={r['tmux_session']}").returncode == 0
            node = r["node"]
            agent = agent_client(hv.agent_url(node["id"]), hv.auth_headers)
            agent.wait_for(lambda f: f["type"] == "init_state", timeout=30)
            agent.send({"type": "prompt", "id": "p1", "text": "continuing with the aardvark on alpha"})
            deadline = time.monotonic() + 40
            while "continuing with the aardvark on alpha" not in original.read_text() and time.monotonic() < deadline:
                await asyncio.sleep(0.2)
            assert "continuing with the aardvark on alpha" in original.read_text()
            assert len(files_of(a)) == 1
            # the roster knows the file it writes (heartbeat): resuming again names that agent, starts nothing
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                nodes = (await dash.call("list_nodes", {}))["result"]["nodes"]
                if any(n.get("session_file") == str(original.resolve()) for n in nodes):
                    break
                await asyncio.sleep(0.5)
            again = await dash.call("resume_session", {"machine": "alpha", "path": sessions["alpha"]["id"]})
            assert again["result"]["live"] and again["result"]["node_id"] == node["id"], again
            assert (await listed(dash, "alpha", 1))[0]["live_node_id"] == node["id"]
            forked = await dash.call("resume_session", {"machine": "alpha", "path": sessions["alpha"]["id"],
                                                        "fork": True}, timeout=70)  # fmt: skip
            assert "result" in forked, (forked, a.stderr()[-3000:])
            f = forked["result"]
            assert f["forked"] and f["node_id"] != node["id"] and f["node"]["machine"] == "alpha"
            deadline = time.monotonic() + 30
            while len(files_of(a)) < 2 and time.monotonic() < deadline:
                await asyncio.sleep(0.2)
            fork_file = next(p for p in files_of(a) if p != original)
            fork_page = (await dash.call("read_session", {"machine": "alpha", "path": str(fork_file)}))["result"]
            assert fork_page["parent"]["path"] == str(original.resolve())

            # an offline machine's frame comes at once, saying so; the others answer as before
            b.kill()
            await dash.event("machine_left", timeout=15)
            qid, names = await start_search(dash, "platypus")
            frames = await frames_of(dash, qid, names, timeout=5)
            assert frames["beta"]["unavailable"] and "offline" in frames["beta"]["error"]
            assert frames["alpha"]["hits"] and frames["alpha"]["error"] is None
    finally:
        if stopped and b.proc is not None and b.proc.poll() is None:
            os.kill(b.proc.pid, signal.SIGCONT)
