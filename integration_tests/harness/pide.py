"""Shared pieces of the Pi-DE browser tests, a pytest plugin (registered in ``integration_tests/conftest.py``).

* ``pide_browser``: Debian Chromium driven by Playwright's sync API (no browser download).
* ``dash_hv``: a real ``python -m hypivisor`` serving the built ``pi_de/dist`` on its dashboard port.
* :class:`RegisteredAgent`: registers a node with that hypivisor exactly as a bridge does (register,
  heartbeats, re-register after a hypivisor restart) and serves a scripted agent link on its own
  port, which the hypivisor proxies at ``/ws/agent/<id>``. The browser tests that need pi's real
  behaviour use real pi agents instead (test_pide_agents.py); this one exists for what a real pi
  cannot produce on demand: a 10,000-message conversation, or an exact sequence of roster events.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest
import websockets

from integration_tests.harness.hypivisor_proc import free_port

REPO = Path(__file__).resolve().parents[2]
PI_DE = REPO / "pi_de"
DIST = PI_DE / "dist"
ARTIFACTS = REPO / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
WAIT_MS = 10_000  # bounded waits for UI conditions


def ensure_modules() -> bool:
    """Pi-DE's node_modules (TypeScript, Vite, esbuild) for a test that runs them; put back with ``npm ci`` when
    they vanished during the session (seen in CI: something emptied the folder; the cause is still open).
    False when they cannot be had here (no npm)."""
    if (PI_DE / "node_modules" / ".bin" / "tsc").exists():
        return True
    if not shutil.which("npm"):
        return False
    import warnings

    warnings.warn(
        "pi_de/node_modules was missing or emptied during the session; reinstalling it (npm ci)", stacklevel=2
    )
    subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--prefer-offline"], cwd=PI_DE, check=True, timeout=600)
    return (PI_DE / "node_modules" / ".bin" / "tsc").exists()


def ensure_dist() -> Path:
    """The built dashboard; `make test` builds it first, a lone pytest run builds it here."""
    if not (DIST / "index.html").exists():
        if not shutil.which("npm"):
            pytest.fail("pi_de/dist is missing and npm is not available to build it")
        if not (PI_DE / "node_modules").exists():
            subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=PI_DE, check=True, timeout=300)
        subprocess.run(["npm", "run", "-s", "build"], cwd=PI_DE, check=True, timeout=300)
    return DIST


def shot(page, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"pide-{name}.png"
    page.screenshot(path=str(path))
    return path


@pytest.fixture(scope="module")
def pide_browser():
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian chromium is not installed (run integration_tests/setup_env.sh)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def page_factory(pide_browser):
    """New isolated browser contexts (fresh localStorage); page errors fail the test."""
    contexts, errors = [], []

    def new_page(**context_options):
        ctx = pide_browser.new_context(**context_options)
        contexts.append(ctx)
        page = ctx.new_page()
        page.set_default_timeout(WAIT_MS)
        page.on("pageerror", lambda e: errors.append(str(e)))
        return page

    yield new_page
    for ctx in contexts:
        ctx.close()
    assert not errors, f"uncaught page errors: {errors}"


@pytest.fixture
def dash_hv_factory(hypivisor_factory):
    def start(**options):
        env = {"HYPI_DASHBOARD_DIR": str(ensure_dist()), **options.pop("env", {})}
        return hypivisor_factory(env=env, **options)

    return start


@pytest.fixture
def dash_hv(dash_hv_factory):
    return dash_hv_factory()


def dashboard_url(hv, query: str = "") -> str:
    return hv.url("/", dashboard=True) + query


# ---------------------------------------------------------------------------
# A node registered the way a bridge registers, with a scripted agent link
# ---------------------------------------------------------------------------


def user_msg(text: str) -> dict:
    return {"role": "user", "content": [{"type": "text", "text": text}], "timestamp": 0}


def assistant_msg(text: str, **extra) -> dict:
    return {"role": "assistant", "content": [{"type": "text", "text": text}], "stopReason": "stop", **extra}


class RegisteredAgent:
    """Registers ``node_id`` with the hypivisor (and again after a restart) and serves an agent link.

    ``messages`` is the whole conversation; ``init_limit`` of the newest go into ``init_state`` and
    older ones are served page by page through ``fetch_history``, like the bridge's pager.
    """

    def __init__(
        self,
        hv,
        node_id: str,
        cwd: str,
        *,
        messages=None,
        init_limit=200,
        session_name=None,
        machine="test-box",
        model="fake/fake-model",
        protocol_version="1",
        allowed_origins=(),
    ):
        self.hv, self.node_id, self.cwd = hv, node_id, cwd
        self.messages = list(messages or [])
        self.init_limit = init_limit
        self.session_name, self.machine, self.model = session_name, machine, model
        self.protocol_version = protocol_version
        self.allowed_origins = list(allowed_origins)
        self.port = free_port()
        self.received: list[dict] = []
        self.history_requests: list[dict] = []
        self._clients: set = set()
        self._loop = asyncio.new_event_loop()
        self._registry = None
        self._stop = None
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._run(self._start(), 10)

    # -- public, called from the test thread --
    def update(self, **fields) -> None:
        """A heartbeat with changed fields (→ node_updated), as the bridge sends on activity changes."""
        self._run(self._registry_send("heartbeat", {"id": self.node_id, **fields}), 5)

    def push(self, *frames: dict, delay: float = 0.0) -> None:
        """Send frames to every connected agent-link client (pi events, as the bridge forwards them)."""
        self._run(self._push(frames, delay), 60)

    def go_offline(self) -> None:
        """Close the registry connection: the hypivisor marks the node offline."""
        self._run(self._close_registry(), 5)

    def come_back(self) -> None:
        """Register again after go_offline (pi's bridge reconnecting): the node is active again."""
        self._run(self._reregister(), 10)

    def close(self) -> None:
        if self._loop.is_running():
            try:
                self._run(self._shutdown(), 5)
            finally:
                self._loop.call_soon_threadsafe(self._loop.stop)
                self._thread.join(5)

    # -- internals, on the agent's loop --
    def _run(self, coro, timeout):
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    async def _start(self):
        # Like the bridge: a browser (Origin header) only from an allowed origin; the hypivisor's proxy
        # forwards without Origin, so proxied links always work and Pi-DE's direct fallback does not.
        self._server = await websockets.serve(
            self._serve,
            "127.0.0.1",
            self.port,
            max_size=None,
            subprotocols=["hypi.v1"],
            origins=[None, *self.allowed_origins],
        )
        self._stop = asyncio.Event()
        self._registered = asyncio.Event()
        self.node_secret = secrets.token_urlsafe(24)
        self._reg_task = asyncio.create_task(self._registry_loop())
        await asyncio.wait_for(self._registered.wait(), 10)

    async def _registry_loop(self):
        """Register, heartbeat every second, and come back after the hypivisor restarts."""
        while not self._stop.is_set():
            try:
                async with websockets.connect(
                    self.hv.ws_url, additional_headers=self.hv.auth_headers, open_timeout=3
                ) as ws:
                    self._registry = ws
                    # like the shim: one secret per agent proves the id is its own on every (re-)registration
                    params = {
                        "id": self.node_id,
                        "machine": self.machine,
                        "cwd": self.cwd,
                        "port": self.port,
                        "pid": os.getpid(),
                        "model": self.model,
                        "session_name": self.session_name,
                        "node_secret": self.node_secret,
                    }
                    await ws.send(json.dumps({"id": "reg", "method": "register", "params": params}))
                    while True:
                        frame = json.loads(await ws.recv())
                        if frame.get("id") == "reg":
                            assert "result" in frame, frame
                            break
                    self._registered.set()
                    while not self._stop.is_set():
                        try:
                            await asyncio.wait_for(ws.recv(), 1.0)
                        except TimeoutError:
                            await ws.send(
                                json.dumps({"id": "hb", "method": "heartbeat", "params": {"id": self.node_id}})
                            )
            except (TimeoutError, OSError, websockets.ConnectionClosed):
                pass
            finally:
                self._registry = None
            if self._offline:
                return
            await asyncio.sleep(0.3)

    _offline = False

    async def _registry_send(self, method, params):
        for _ in range(50):
            if self._registry is not None:
                await self._registry.send(json.dumps({"id": method, "method": method, "params": params}))
                return
            await asyncio.sleep(0.1)
        raise TimeoutError("not registered")

    async def _reregister(self):
        self._offline = False
        self._registered = asyncio.Event()
        self._reg_task = asyncio.create_task(self._registry_loop())
        await asyncio.wait_for(self._registered.wait(), 10)

    async def _close_registry(self):
        self._offline = True
        if self._registry is not None:
            await self._registry.close()

    async def _shutdown(self):
        self._offline = True
        self._stop.set()
        if self._registry is not None:
            await self._registry.close()
        self._reg_task.cancel()
        self._server.close()
        for c in list(self._clients):
            await c.close()

    async def _push(self, frames, delay):
        for f in frames:
            if f.get("type") == "message_end":
                self.messages.append(f["message"])
            data = json.dumps(f)
            for c in list(self._clients):
                await c.send(data)
            if delay:
                await asyncio.sleep(delay)

    def init_state(self) -> dict:
        keep = self.messages[-self.init_limit :] if self.init_limit else []
        cursor = len(self.messages) - len(keep)
        return {
            "type": "init_state",
            "protocol_version": self.protocol_version,
            "node": {"id": self.node_id, "machine": self.machine, "cwd": self.cwd, "port": self.port},
            "messages": keep,
            "tools": [
                {"name": "read", "description": "Read a file"},
                {"name": "bash", "description": "Run a shell command"},
            ],
            "commands": [{"name": "review", "description": "review the diff"}],
            "is_streaming": False,
            "partial": None,
            "truncated": cursor > 0,
            "total_messages": len(self.messages),
            "cursor": cursor,
            "session_name": self.session_name,
            "model": self.model,
        }

    async def _serve(self, ws):
        self._clients.add(ws)
        try:
            await ws.send(json.dumps(self.init_state()))
            async for raw in ws:
                f = json.loads(raw)
                self.received.append(f)
                if f.get("type") == "fetch_history":
                    self.history_requests.append(f)
                    before, limit = f["before"], f.get("limit", 50)
                    start = max(0, before - limit)
                    await ws.send(
                        json.dumps(
                            {
                                "type": "history_page",
                                "messages": self.messages[start:before],
                                "cursor": start,
                                "before": before,
                                "has_more": start > 0,
                                "total_messages": len(self.messages),
                            }
                        )
                    )
                elif f.get("type") == "prompt":
                    await ws.send(json.dumps({"type": "ack", "id": f["id"]}))
                elif f.get("type") == "list_commands":
                    await ws.send(
                        json.dumps(
                            {
                                "type": "commands_list",
                                "commands": [
                                    {"name": "review", "description": "review the diff"},
                                    {"name": "release", "description": "cut a release"},
                                ],
                            }
                        )
                    )
                elif f.get("type") == "list_files":
                    prefix = f.get("prefix", "")
                    files = [
                        {"path": "src", "is_dir": True},
                        {"path": "README.md", "is_dir": False},
                        {"path": "src/main.ts", "is_dir": False},
                    ]
                    await ws.send(
                        json.dumps(
                            {
                                "type": "files_list",
                                "prefix": prefix,
                                "files": [x for x in files if x["path"].startswith(prefix)],
                            }
                        )
                    )
        except websockets.ConnectionClosed:
            pass
        finally:
            self._clients.discard(ws)


@pytest.fixture
def agents():
    """Create RegisteredAgents with ``agents(hv, node_id, cwd, ...)``; all are closed at teardown."""
    made: list[RegisteredAgent] = []

    def make(*args, **kwargs) -> RegisteredAgent:
        a = RegisteredAgent(*args, **kwargs)
        made.append(a)
        return a

    yield make
    for a in made:
        a.close()


def wait_until(predicate, timeout: float = 10.0, interval: float = 0.05, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")
