"""Fixtures that start real hypivisor processes (owned by the hypivisor work).

``hypivisor_factory(**options)`` starts ``python -m hypivisor`` on free
loopback ports and returns a :class:`HypivisorProc`; every process is killed at
teardown. ``hypivisor`` is one instance with the defaults (temp ``HOME``, no
token, TTL 30 s, dashboard port on).

Without ``token=`` the hypivisor runs with ``--no-token`` (no auth, no token file), as these tests expect;
``token_file=True`` starts it as a user does instead: it makes or reads ``$HOME/.config/hyper-pi/token``.

Example::

    def test_x(hypivisor_factory):
        hv = hypivisor_factory(token="s3cret", ttl=1)
        async with websockets.connect(hv.ws_url, additional_headers=hv.auth_headers) as ws: ...
        hv.kill(); hv.restart()   # same ports
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import pytest
import websockets

REPO_ROOT = Path(__file__).resolve().parents[2]
READY_TIMEOUT = 15.0


def free_port() -> int:
    """An ephemeral loopback port that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PortTakenError(RuntimeError):
    """The hypivisor exited because one of its ports was already taken."""


class HypivisorProc:
    """One ``python -m hypivisor`` process and how to reach it."""

    def __init__(
        self,
        home: Path,
        token: str | None = None,
        ttl: float | None = None,
        env: Mapping[str, str] | None = None,
        args: Sequence[str] = (),
        dashboard: bool = True,
        host: str = "127.0.0.1",
        port: int | None = None,
        dashboard_port: int | None = None,
        token_file: bool = False,
    ):
        self.home = Path(home)
        self.token_file = token_file
        self.token = token
        self.host = host
        self.port = port or free_port()
        self.dashboard_port = (dashboard_port or free_port()) if dashboard else 0
        # Ports picked here may be taken by another process before the hypivisor binds them
        # (bridges scan upward for free ports): the first start may then retry with new ones.
        self._auto_port = port is None
        self._auto_dashboard_port = dashboard and dashboard_port is None
        self.ttl = ttl
        self.extra_args = list(args)
        self.env = self._build_env(env)
        self.token = self.env.get("HYPI_TOKEN") or None  # env={"HYPI_TOKEN": ...} works like token=
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_dir = Path(tempfile.mkdtemp(prefix="hv-out-"))
        self._runs = 0
        self._ever_ready = False

    def _build_env(self, overrides: Mapping[str, str] | None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("HYPI_", "TMUX")) and k != "XDG_CONFIG_HOME"}
        env["HOME"] = str(self.home)
        env["PYTHONPATH"] = str(REPO_ROOT) + os.pathsep + env.get("PYTHONPATH", "")
        env["HYPI_DASHBOARD_DIR"] = str(self.home / "no-dashboard-here")
        if self.token:
            env["HYPI_TOKEN"] = self.token
        env.update(overrides or {})
        return env

    @property
    def argv(self) -> list[str]:
        argv = [sys.executable, "-m", "hypivisor", "--host", self.host, "-p", str(self.port)]
        argv += ["--dashboard-port", str(self.dashboard_port), "--log-level", "debug"]
        if self.ttl is not None:
            argv += ["-t", str(self.ttl)]
        if not self.token and not self.token_file and "--no-token" not in self.extra_args:
            argv.append("--no-token")
        return argv + self.extra_args

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    def url(self, path: str = "/", scheme: str = "http", dashboard: bool = False) -> str:
        port = self.dashboard_port if dashboard else self.port
        return f"{scheme}://127.0.0.1:{port}{path}"

    def agent_url(self, node_id: str) -> str:
        return f"ws://127.0.0.1:{self.port}/ws/agent/{node_id}"

    @property
    def auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def start(self) -> HypivisorProc:
        for attempt in range(5):
            try:
                return self._start_once()
            except PortTakenError:
                if self._ever_ready or attempt == 4:
                    raise
                if self._auto_port:
                    self.port = free_port()
                if self._auto_dashboard_port:
                    self.dashboard_port = free_port()
        raise AssertionError("unreachable")

    def _start_once(self) -> HypivisorProc:
        self._runs += 1
        self.stdout_path = self.log_dir / f"stdout.{self._runs}"
        self.stderr_path = self.log_dir / f"stderr.{self._runs}"
        with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen(self.argv, env=self.env, cwd=REPO_ROOT, stdout=out, stderr=err)
        self.wait_ready()
        if self.token_file and not self.env.get("HYPI_TOKEN"):  # the token it made or read: clients use it
            self.token = self.token_path.read_text().strip()
        return self

    @property
    def token_path(self) -> Path:
        """The token file a ``token_file=True`` hypivisor makes (``$HOME/.config/hyper-pi/token``)."""
        return Path(self.env.get("HYPI_TOKEN_FILE") or self.home / ".config" / "hyper-pi" / "token")

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> None:
        """Poll /healthz until it answers (bounded), failing fast if the process died."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                if self.proc.returncode == 2 and "already in use" in self.stderr():
                    raise PortTakenError(self.stderr())
                raise RuntimeError(f"hypivisor exited with {self.proc.returncode}: {self.stderr()}")
            try:
                with urllib.request.urlopen(self.url("/healthz"), timeout=1) as resp:
                    if resp.status == 200:
                        self._ever_ready = True
                        return
            except OSError:
                pass
            time.sleep(0.05)
        raise TimeoutError(f"hypivisor not ready after {timeout}s: {self.stderr()}")

    def stdout(self) -> str:
        return self.stdout_path.read_text(errors="replace")

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def log_lines(self) -> str:
        path = self.home / ".pi" / "logs" / "hypivisor.jsonl"
        return path.read_text(errors="replace") if path.exists() else ""

    def kill(self) -> None:
        """SIGKILL, as in the resilience tests: no cleanup runs."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.kill()

    def restart(self) -> HypivisorProc:
        """Kill (if running) and start again on the same ports."""
        self.kill()
        return self.start()


@pytest.fixture
def hypivisor_factory(tmp_path: Path) -> Iterator:
    """Start hypivisors with options; all are stopped at teardown."""
    started: list[HypivisorProc] = []

    def start(*, home: Path | None = None, start: bool = True, **options) -> HypivisorProc:
        if home is None:
            home = tmp_path / f"home{len(started)}"
            home.mkdir(exist_ok=True)
        hv = HypivisorProc(home=home, **options)
        started.append(hv)
        return hv.start() if start else hv

    try:
        yield start
    finally:
        for hv in started:
            hv.kill()


@pytest.fixture
def hypivisor(hypivisor_factory) -> HypivisorProc:
    """One hypivisor with the defaults."""
    return hypivisor_factory()


class RegistryClient:
    """A ``/ws`` client for tests: ``call`` matches responses by id, ``events`` keeps pushes in order."""

    def __init__(self, ws):
        self.ws = ws
        self.events: list[dict] = []
        self._replies: dict = {}
        self._next = 0

    @classmethod
    async def connect(cls, hv: HypivisorProc, query: str = "", **kwargs) -> RegistryClient:
        """``query``: appended to ``/ws`` (``"?roster=chunks"``)."""
        kwargs.setdefault("additional_headers", hv.auth_headers)
        kwargs.setdefault("max_size", None)
        kwargs.setdefault("open_timeout", 15)  # generous: the test machine is shared
        return cls(await websockets.connect(hv.ws_url + query, **kwargs))

    async def close(self) -> None:
        await self.ws.close()

    async def __aenter__(self) -> RegistryClient:
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    async def _read_one(self, timeout: float) -> dict:
        frame = json.loads(await asyncio.wait_for(self.ws.recv(), timeout))
        if "event" in frame:
            self.events.append(frame)
        else:
            self._replies[frame.get("id")] = frame
        return frame

    async def send(self, method: str, params: dict | None = None, rpc_id=None):
        if rpc_id is None:
            self._next += 1
            rpc_id = f"r{self._next}"
        req = {"id": rpc_id, "method": method}
        if params is not None:
            req["params"] = params
        await self.ws.send(json.dumps(req))
        return rpc_id

    async def reply(self, rpc_id, timeout: float = 10.0) -> dict:
        deadline = time.monotonic() + timeout
        while rpc_id not in self._replies:
            await self._read_one(max(0.01, deadline - time.monotonic()))
        return self._replies.pop(rpc_id)

    async def call(self, method: str, params: dict | None = None, timeout: float = 10.0) -> dict:
        """Send a request and return the whole response frame ({id, result} or {id, error})."""
        return await self.reply(await self.send(method, params), timeout)

    async def event(self, name: str, timeout: float = 10.0, **match) -> dict:
        """The next push event called ``name`` (already received or arriving within ``timeout``)."""
        deadline = time.monotonic() + timeout
        while True:
            for i, ev in enumerate(self.events):
                if ev["event"] == name and all(ev.get(k) == v for k, v in match.items()):
                    return self.events.pop(i)
            await self._read_one(max(0.01, deadline - time.monotonic()))


def node_params(node_id: str, port: int, cwd: str = "/tmp/project", machine: str = "test-machine", **extra) -> dict:
    return {"id": node_id, "machine": machine, "cwd": cwd, "port": port, **extra}


async def until(check, timeout: float, what: str):
    """Await ``check()`` every 50 ms until it returns something truthy (returned), or fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.05)
