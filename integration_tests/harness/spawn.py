"""Spawning under real tmux: a stub `pi` that registers with the hypivisor like a bridge would, a private tmux
server per test, and a hypivisor started with that environment. A pytest plugin (``integration_tests/conftest.py``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

NEEDS_TMUX = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux not installed")

STUB = textwrap.dedent(
    """\
    #!{python}
    # A stand-in for pi + pi_socket: registers with the hypivisor found in its environment.
    import asyncio, json, os, socket, sys, time
    import websockets

    print("stub pi started in", os.getcwd(), flush=True)
    if os.environ.get("PI_STUB_MODE") == "silent":
        print("stub pi: API key missing, not registering", flush=True)
        time.sleep(3600)

    async def main():
        token = os.environ.get("HYPI_TOKEN")
        headers = {{"Authorization": "Bearer " + token}} if token else {{}}
        async with websockets.connect(os.environ["HYPIVISOR_WS"], additional_headers=headers) as ws:
            await ws.recv()
            await ws.send(json.dumps({{"id": 1, "method": "register", "params": {{
                "id": "stub-" + str(os.getpid()), "machine": socket.gethostname(), "cwd": os.getcwd(),
                "port": 20000 + os.getpid() % 40000, "pid": os.getpid(),
                "spawn_id": os.environ.get("PI_SOCKET_SPAWN_ID")}}}}))
            print("stub pi registered:", await ws.recv(), flush=True)
            await asyncio.sleep(3600)

    asyncio.run(main())
    """
)


@pytest.fixture
def tmux_env(tmp_path):
    """A private tmux server for a test's spawns (the environment that selects it), killed at the end."""
    if not shutil.which("tmux"):
        pytest.skip("tmux is not installed (run integration_tests/setup_env.sh)")
    d = tmp_path / "tmux"
    d.mkdir()
    try:
        yield {"TMUX_TMPDIR": str(d)}
    finally:
        subprocess.run(["tmux", "kill-server"], env={**os.environ, "TMUX_TMPDIR": str(d)}, capture_output=True,
                       timeout=10)  # fmt: skip


@pytest.fixture
def env_dirs(tmp_path):
    """A fake HOME, a bin dir holding the stub `pi`, and a private tmux socket dir (killed at the end)."""
    home, bindir, tmuxdir = tmp_path / "home", tmp_path / "bin", tmp_path / "tmux"
    for d in (home, bindir, tmuxdir):
        d.mkdir()
    stub = bindir / "pi"
    stub.write_text(STUB.format(python=sys.executable))
    stub.chmod(0o755)
    try:
        yield home, bindir, tmuxdir
    finally:
        subprocess.run(["tmux", "kill-server"], env={**os.environ, "TMUX_TMPDIR": str(tmuxdir)}, capture_output=True)


def tmux(tmuxdir: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["tmux", *args], env={**os.environ, "TMUX_TMPDIR": str(tmuxdir)}, capture_output=True,
                          text=True, timeout=10)  # fmt: skip


def start(hypivisor_factory, env_dirs, path_prefix=True, token=None, **env):
    home, bindir, tmuxdir = env_dirs
    base = {"TMUX_TMPDIR": str(tmuxdir), "PATH": f"{bindir}:{os.environ['PATH']}" if path_prefix else env.pop("PATH")}
    # a wrong HYPIVISOR_WS in the hypivisor's own environment: the spawn must not inherit it
    base["HYPIVISOR_WS"] = "ws://127.0.0.1:1/ws"
    return hypivisor_factory(home=home, token=token, env={**base, **env})
