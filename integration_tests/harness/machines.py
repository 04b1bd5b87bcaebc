"""Machine services for tests (specs/machines.md): ``python -m pi_socket serve`` as a "machine" with its own
``PI_SOCKET_MACHINE``, ``HOME``, runtime dir, tmux server, and a stub pi on PATH that registers like a bridge
(naming its machine from ``PI_SOCKET_MACHINE``, as the bridge does). Import ``machines`` into a test module."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from integration_tests.harness.hypivisor_proc import REPO_ROOT

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
        url = os.environ["HYPIVISOR_WS"].split(",")[0]  # a list: its first, where the spawn is waiting
        async with websockets.connect(url, additional_headers=headers) as ws:
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


@pytest.fixture(name="machines")
def machines_fixture(tmp_path):
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
