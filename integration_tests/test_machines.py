"""Machine services (specs/machines.md): two "machines" on one host (own PI_SOCKET_MACHINE, HOME, runtime dir and
tmux server each) and one hypivisor. Real processes: ``python -m pi_socket serve``, ``python -m hypivisor``, tmux,
and a stub pi that registers like a bridge would (naming its machine from PI_SOCKET_MACHINE, as the bridge does)."""

from __future__ import annotations

import asyncio
import os
import signal
import time

from integration_tests.harness.hypivisor_proc import RegistryClient
from integration_tests.harness.machines import machines_fixture  # noqa: F401 - the `machines` fixture
from integration_tests.harness.pi_proc import pi_bin
from integration_tests.harness.spawn import NEEDS_TMUX

REAL_PI = "0.73.1"  # the oldest pinned pi: the fastest to start


async def wait_machines(dash: RegistryClient, want: dict[str, bool], timeout: float = 20.0) -> dict[str, dict]:
    """Poll list_machines until each named machine has the wanted online state (bounded)."""
    deadline = time.monotonic() + timeout
    while True:
        res = await dash.call("list_machines")
        found = {m["name"]: m for m in res["result"]["machines"]}
        if all(n in found and found[n]["online"] == on for n, on in want.items()):
            return found
        assert time.monotonic() < deadline, f"machines not as wanted {want}: {found}"
        await asyncio.sleep(0.1)


@NEEDS_TMUX
async def test_two_machines_list_browse_and_spawn(hypivisor_factory, machines):
    hv = hypivisor_factory(token="tok-machines", env={"PI_SOCKET_MACHINE": "hub"})
    a, b = machines(hv, "alpha").start(), machines(hv, "beta").start()
    (a.home / "only-on-alpha").mkdir()
    (b.home / "only-on-beta").mkdir()
    async with await RegistryClient.connect(hv) as dash:
        await dash.event("init")
        found = await wait_machines(dash, {"alpha": True, "beta": True})
        assert found["hub"]["own"] and found["hub"]["online"]
        for m in (a, b):
            info = found[m.name]
            assert info["service"] and info["agents"] == 0 and info["tmux"] is True
            assert info["home"] == str(m.home.resolve()) and info["os"]
        joined = {(await dash.event("machine_joined"))["machine"]["name"] for _ in range(2)}
        assert joined == {"alpha", "beta"}

        # each machine lists its own HOME, under its own policy
        for m, only in ((a, "only-on-alpha"), (b, "only-on-beta")):
            res = (await dash.call("list_directories", {"machine": m.name}))["result"]
            assert res["home"] == str(m.home.resolve()) and [d["name"] for d in res["directories"]] == [only]
        err = (await dash.call("list_directories", {"machine": "beta", "path": str(a.home)}))["error"]
        assert err["code"] == 1003  # alpha's home is outside beta's
        err = (await dash.call("list_directories", {"machine": "nowhere"}))["error"]
        assert err["code"] == 1012 and "not known" in err["message"]

        # spawn on beta: pi starts in beta's tmux, in beta's folder, and registers by itself
        res = await dash.call("spawn_agent", {"machine": "beta", "path": "only-on-beta", "new_folder": "app"},
                              timeout=60)  # fmt: skip
        assert "result" in res, (res, b.stderr())
        result = res["result"]
        folder = str((b.home / "only-on-beta" / "app").resolve())
        assert result["path"] == folder and result["node"]["cwd"] == folder and result["node"]["machine"] == "beta"
        assert b.tmux("has-session", "-t", result["tmux_session"]).returncode == 0
        assert (
            result["node"]["tmux_session"] == result["tmux_session"]
        )  # on the roster: Pi-DE shows tmux attach on beta
        assert a.tmux("has-session", "-t", result["tmux_session"]).returncode != 0
        ev = await dash.event("machine_updated", timeout=10)
        while ev["machine"]["name"] != "beta" or ev["machine"]["agents"] != 1:
            ev = await dash.event("machine_updated", timeout=10)
        found = await wait_machines(dash, {"beta": True})
        assert found["beta"]["agents"] == 1 and found["alpha"]["agents"] == 0

        # a path the machine refuses is that machine's answer; nothing is created
        err = (await dash.call("spawn_agent", {"machine": "alpha", "path": "/etc", "new_folder": "x"}))["error"]
        assert err["code"] == 1003

        # SIGKILL a machine service: it goes offline (machine_left), stays listed, and requests fail with 1012
        a.kill()
        left = await dash.event("machine_left", timeout=15)
        assert left["name"] == "alpha"
        assert left["machine"]["online"] is False
        found = await wait_machines(dash, {"alpha": False, "beta": True})
        err = (await dash.call("list_directories", {"machine": "alpha"}))["error"]
        assert err["code"] == 1012 and "offline" in err["message"]
        err = (await dash.call("spawn_agent", {"machine": "alpha", "path": "~"}))["error"]
        assert err["code"] == 1012

        # a new service for alpha takes its name back (same runtime dir: the dead one's lock is gone)
        a.start()
        await wait_machines(dash, {"alpha": True})
        os.kill(result["node"]["pid"], signal.SIGKILL)


async def test_the_hypivisor_own_machine_is_the_default(hypivisor_factory, machines):
    hv = hypivisor_factory(env={"PI_SOCKET_MACHINE": "hub"})
    (hv.home / "hub-folder").mkdir()
    async with await RegistryClient.connect(hv) as dash:
        res = (await dash.call("list_machines"))["result"]["machines"]
        assert [(m["name"], m["online"], m["own"]) for m in res] == [("hub", True, True)]
        for params in ({}, {"machine": "hub"}):
            listing = (await dash.call("list_directories", params))["result"]
            assert [d["name"] for d in listing["directories"]] == ["hub-folder"]


async def test_only_the_machine_answers_for_itself(hypivisor_factory, machines):
    """A dashboard cannot answer a machine's requests, and a second service cannot take an online name."""
    hv = hypivisor_factory(env={"PI_SOCKET_MACHINE": "hub"})
    a = machines(hv, "alpha").start()
    async with await RegistryClient.connect(hv) as dash, await RegistryClient.connect(hv) as rogue:
        await wait_machines(dash, {"alpha": True})
        err = (await rogue.call("machine_reply", {"rid": "m1-0000", "result": {}}))["error"]
        assert err["code"] == 1006
        err = (await rogue.call("register_machine", {"name": "alpha"}))["error"]
        assert err["code"] == 1002
        listing = (await dash.call("list_directories", {"machine": "alpha"}))["result"]
        assert listing["home"] == str(a.home.resolve())


async def test_hypivisor_down_then_up(hypivisor_factory, machines):
    """The service waits for the hypivisor (backoff) and registers when it comes; a hypivisor restart too."""
    hv = hypivisor_factory(start=False, env={"PI_SOCKET_MACHINE": "hub"})
    a = machines(hv, "alpha").start()
    await asyncio.sleep(1.0)
    assert a.proc is not None and a.proc.poll() is None
    hv.start()
    async with await RegistryClient.connect(hv) as dash:
        await wait_machines(dash, {"alpha": True})
    hv.restart()
    async with await RegistryClient.connect(hv) as dash:
        await wait_machines(dash, {"alpha": True})
    assert a.proc.poll() is None


async def test_two_services_racing_exactly_one_runs(hypivisor_factory, machines, tmp_path):
    hv = hypivisor_factory(env={"PI_SOCKET_MACHINE": "hub"})
    shared = tmp_path / "shared-run"
    racers = [machines(hv, f"racer{i}", runtime=shared) for i in range(4)]
    for m in racers:
        m.env["PI_SOCKET_MACHINE"] = "alpha"
        m.start()
    deadline = time.monotonic() + 20
    while sum(m.proc.poll() is None for m in racers) > 1:  # type: ignore[union-attr]
        assert time.monotonic() < deadline, [m.stderr() for m in racers]
        await asyncio.sleep(0.05)
    running = [m for m in racers if m.proc.poll() is None]  # type: ignore[union-attr]
    assert len(running) == 1
    for m in racers:
        if m is not running[0]:
            assert m.proc.returncode == 0 and f"already runs (pid {running[0].proc.pid}" in m.stderr()  # type: ignore[union-attr]
    async with await RegistryClient.connect(hv) as dash:
        found = await wait_machines(dash, {"alpha": True})
        assert found["alpha"]["home"] == str(running[0].home.resolve())


async def test_a_machine_needs_the_token(hypivisor_factory, machines):
    """A service with a wrong token is refused at the handshake (never listed) and keeps retrying, harmlessly."""
    hv = hypivisor_factory(token="right-token", env={"PI_SOCKET_MACHINE": "hub"})
    m = machines(hv, "alpha")
    m.env["HYPI_TOKEN"] = "wrong-token"
    m.start()
    deadline = time.monotonic() + 10
    while "refused this machine" not in m.stderr():
        assert time.monotonic() < deadline, m.stderr()
        await asyncio.sleep(0.1)
    async with await RegistryClient.connect(hv) as dash:
        names = [x["name"] for x in (await dash.call("list_machines"))["result"]["machines"]]
        assert names == ["hub"]
        assert (await dash.call("list_directories", {"machine": "alpha"}))["error"]["code"] == 1012
    assert m.proc is not None and m.proc.poll() is None


@NEEDS_TMUX
def test_real_pi_spawned_on_a_machine_registers_there_and_is_driven_through_the_hypivisor(
    hypivisor_factory, machines, pi_home, fake_llm, agent_client
):
    """The pinned pi (fake LLM, shim installed) started by beta's service in beta's tmux: it registers under
    ``beta`` by itself (PI_SOCKET_MACHINE reaches its bridge) and answers a prompt sent through the hypivisor."""
    hv = hypivisor_factory(env={"PI_SOCKET_MACHINE": "hub", "HYPI_SPAWN_TIMEOUT": "40"})
    beta = machines(hv, "beta")
    (beta.bindir / "pi").unlink()
    (beta.bindir / "pi").symlink_to(pi_bin(REAL_PI))
    beta.env.update({k: v for k, v in pi_home.env.items() if k.startswith("PI_") and k != "PI_SOCKET_MACHINE"})
    (beta.home / "work").mkdir()
    beta.start()

    async def spawn() -> dict:
        async with await RegistryClient.connect(hv) as dash:
            deadline = time.monotonic() + 20  # pi's version follows the registration (machine_updated)
            while REAL_PI not in (await wait_machines(dash, {"beta": True}))["beta"]["pi_versions"]:
                assert time.monotonic() < deadline, beta.stderr()
                await asyncio.sleep(0.2)
            res = await dash.call("spawn_agent", {"machine": "beta", "path": "work"}, timeout=70)
            assert "result" in res, (res, beta.stderr()[-3000:])
            return res["result"]

    result = asyncio.run(spawn())
    node = result["node"]
    try:
        assert node["machine"] == "beta" and node["cwd"] == str((beta.home / "work").resolve())
        c = agent_client(hv.agent_url(node["id"]), hv.auth_headers)
        c.wait_for(lambda f: f["type"] == "init_state", timeout=30)
        c.send({"type": "prompt", "id": "p1", "text": "hello from the hub"})
        c.wait_for(lambda f: f["type"] == "message_end" and f["message"]["role"] == "assistant", timeout=60)
        assert "hello from the hub" in fake_llm.user_texts()[-1]
    finally:
        beta.tmux("kill-session", "-t", f"={result['tmux_session']}")


def _closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _bridge_processes_under(root: str) -> list[str]:
    """Command lines of per-pi bridge processes whose environment names ``root`` (this test's machines)."""
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
            if "pi_socket.bridge" not in cmd:
                continue
            with open(f"/proc/{entry.name}/environ", "rb") as f:
                if root.encode() in f.read():
                    found.append(cmd)
        except OSError:
            continue
    return found


@NEEDS_TMUX
def test_two_machines_with_no_reachable_agent_port_spawn_and_drive_both(
    hypivisor_factory, machines, pi_home, fake_llm, agent_client, tmp_path
):
    """The issue's "done when" on one host: two machine services (own HOME, runtime dir, tmux), seen online with no
    pi running; a real pi spawned on each is served by that machine's service (no bridge process of its own) and
    registers a port nothing listens on, so the hypivisor can reach it only over the connections the machine opened
    (dial-back); both answer prompts sent through the hypivisor."""
    hv = hypivisor_factory(env={"PI_SOCKET_MACHINE": "hub", "HYPI_SPAWN_TIMEOUT": "40"})
    started = {}
    for name in ("alpha", "beta"):
        m = machines(hv, name)
        (m.bindir / "pi").unlink()
        (m.bindir / "pi").symlink_to(pi_bin(REAL_PI))
        m.env.update({k: v for k, v in pi_home.env.items() if k.startswith("PI_") and k != "PI_SOCKET_MACHINE"})
        m.env.pop("PI_SOCKET_MODE", None)  # the default: agents served by the machine service
        m.env["PI_SOCKET_ADVERTISE_PORT"] = str(_closed_port())
        (m.home / "work").mkdir()
        started[name] = m.start()

    async def spawn_both() -> dict[str, dict]:
        async with await RegistryClient.connect(hv) as dash:
            found = await wait_machines(dash, {"alpha": True, "beta": True})
            assert found["alpha"]["agents"] == 0 and found["beta"]["agents"] == 0  # members with no pi running
            deadline = time.monotonic() + 20
            while not all(REAL_PI in m["pi_versions"] for n, m in found.items() if n in started):
                assert time.monotonic() < deadline, found
                await asyncio.sleep(0.2)
                found = await wait_machines(dash, {"alpha": True, "beta": True})
            out = {}
            for name in started:
                res = await dash.call("spawn_agent", {"machine": name, "path": "work"}, timeout=70)
                assert "result" in res, (res, started[name].stderr()[-3000:])
                out[name] = res["result"]
            return out

    results = asyncio.run(spawn_both())
    try:
        for name, result in results.items():
            node = result["node"]
            assert node["machine"] == name and node["port"] == int(started[name].env["PI_SOCKET_ADVERTISE_PORT"])
            c = agent_client(hv.agent_url(node["id"]), hv.auth_headers)
            c.wait_for(lambda f: f["type"] == "init_state", timeout=30)
            c.send({"type": "prompt", "id": f"p-{name}", "text": f"hello {name} from the hub"})
            c.wait_for(lambda f: f["type"] == "message_end" and f["message"]["role"] == "assistant", timeout=60)
            assert any(f"hello {name} from the hub" in t for t in fake_llm.user_texts())
        assert _bridge_processes_under(str(tmp_path)) == []
    finally:
        for name, result in results.items():
            started[name].tmux("kill-session", "-t", f"={result['tmux_session']}")
