"""Machine services (specs/machines.md): two "machines" on one host (own PI_SOCKET_MACHINE, HOME, runtime dir and
tmux server each) and one hypivisor. Real processes: ``python -m pi_socket serve``, ``python -m hypivisor``, tmux,
and a stub pi that registers like a bridge would (naming its machine from PI_SOCKET_MACHINE, as the bridge does)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from integration_tests.harness.hypivisor_proc import REPO_ROOT, RegistryClient
from integration_tests.harness.spawn import NEEDS_TMUX

STUB = textwrap.dedent(
    """\
    #!{python}
    import asyncio, json, os
    import websockets

    import sys
    if sys.argv[1:] == ["--version"]:
        print("0.74.0")
        sys.exit(0)
    print("stub pi started in", os.getcwd(), flush=True)

    async def main():
        token = os.environ.get("HYPI_TOKEN")
        headers = {{"Authorization": "Bearer " + token}} if token else {{}}
        async with websockets.connect(os.environ["HYPIVISOR_WS"], additional_headers=headers) as ws:
            await ws.recv()
            await ws.send(json.dumps({{"id": 1, "method": "register", "params": {{
                "id": "stub-" + str(os.getpid()), "machine": os.environ["PI_SOCKET_MACHINE"], "cwd": os.getcwd(),
                "port": 20000 + os.getpid() % 40000, "pid": os.getpid(),
                "spawn_id": os.environ.get("PI_SOCKET_SPAWN_ID")}}}}))
            print("stub pi registered:", await ws.recv(), flush=True)
            await asyncio.sleep(3600)

    asyncio.run(main())
    """
)


class Machine:
    """One ``python -m pi_socket serve`` with a private HOME, runtime dir, tmux server and a stub pi on PATH."""

    def __init__(self, root: Path, name: str, hv_url: str, token: str | None = None, runtime: Path | None = None):
        self.name = name
        self.home = root / name / "home"
        self.bindir = root / name / "bin"
        self.tmuxdir = root / name / "tmux"
        self.runtime = runtime or root / name / "run"
        for d in (self.home, self.bindir, self.tmuxdir, self.runtime):
            d.mkdir(parents=True, exist_ok=True)
        self.runtime.chmod(0o700)
        stub = self.bindir / "pi"
        stub.write_text(STUB.format(python=sys.executable))
        stub.chmod(0o755)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("HYPI_", "TMUX", "XDG_", "PI_"))}
        env.update(HOME=str(self.home), PI_SOCKET_MACHINE=name, HYPIVISOR_WS=hv_url, XDG_RUNTIME_DIR=str(self.runtime),
                   TMUX_TMPDIR=str(self.tmuxdir), PATH=f"{self.bindir}:{os.environ['PATH']}",
                   PI_SOCKET_RECONNECT_MS="100", PI_SOCKET_LOG_DIR=str(root / name / "logs"),
                   PYTHONPATH=str(REPO_ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))  # fmt: skip
        if token:
            env["HYPI_TOKEN"] = token
        self.env = env
        self.err = root / name / f"stderr{time.monotonic_ns()}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Machine:
        with open(self.err, "wb") as err:
            self.proc = subprocess.Popen([sys.executable, "-m", "pi_socket", "serve"], env=self.env, cwd=REPO_ROOT,
                                         stdout=subprocess.DEVNULL, stderr=err)  # fmt: skip
        return self

    def stderr(self) -> str:
        return self.err.read_text(errors="replace")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def tmux(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["tmux", *args], env={**os.environ, "TMUX_TMPDIR": str(self.tmuxdir)},
                              capture_output=True, text=True, timeout=10)  # fmt: skip


@pytest.fixture
def machines(tmp_path):
    started: list[Machine] = []

    def make(hv, name: str, **kw) -> Machine:
        m = Machine(tmp_path, name, hv.ws_url, token=hv.token, **kw)
        started.append(m)
        return m

    try:
        yield make
    finally:
        for m in started:
            m.kill()
            m.tmux("kill-server")


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
