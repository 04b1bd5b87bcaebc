"""``python -m hypivisor.demo`` (``make demo``): the hypivisor, the dashboard and three real pi agents, no API key.

What it does, in order:

1. finds pi: ``--pi``, ``PI_BIN`` or ``pi`` on PATH when its Node fits; else the pinned pi 0.73.1 in
   ``$HYPI_CACHE/pi-0.73.1`` (default ``~/.cache/hyper-pi``), installed there with npm on first use;
2. starts the bundled scripted fake LLM (``hypivisor.demo.fake_llm``, demo replies) in this process on a free port;
3. writes a scratch pi agent dir (``PI_CODING_AGENT_DIR``: models.json pointing at the fake LLM, settings with
   retries off) and installs the shim there with ``python -m pi_socket install`` (``PI_OFFLINE=1`` for pi);
4. starts ``python -m hypivisor`` on loopback (``--port`` / ``--dashboard-port``; busy ports are replaced by
   free ones) serving the built Pi-DE, with HOME set to the scratch projects folder and the pi settings of
   step 3, so ``spawn_agent`` (the dashboard's spawn dialog) starts a working pi in or below a demo project;
5. starts three interactive pi TUIs in tmux (own tmux server ``-L hypi-demo-<hex>``), each in its own scratch
   project under one temp dir, waits until the roster lists them, names their sessions and sends each a first
   prompt (markdown, thinking, a bash tool call);
6. prints the dashboard URL and waits. Ctrl+C, SIGTERM or SIGHUP: kills the tmux servers (the agents, spawned
   ones too, and their bridges exit), stops the hypivisor, removes the temp dir.

Nothing is written outside the temp dir except the pi install in the cache.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hypivisor.demo import fake_llm
from pi_socket import install as installer

PINNED_PI = "0.73.1"
PINNED_PACKAGE = "@mariozechner/pi-coding-agent"
DEFAULT_PORT = 31415
DEFAULT_DASHBOARD_PORT = 5180
MODEL_PROVIDER, MODEL_ID = "demo", "scripted-llm"

# (folder, session name, first prompt) per agent; the prompts pick the fake LLM's three kinds of reply.
PROJECTS: tuple[tuple[str, str, str], ...] = (
    ("todo-api", "Welcome", "hello! what can you do?"),
    ("blog-engine", "Caching plan", "think about a plan to add caching to the blog engine"),
    ("data-pipeline", "Project check", "list the files in this project"),
)
SEED_FILES = {
    "todo-api": {
        "README.md": "# todo-api\n\nA tiny REST API for todo lists.\n",
        "app.py": "def list_todos():\n    return [{'id': 1, 'title': 'try Hyper-Pi'}]\n",
    },
    "blog-engine": {
        "README.md": "# blog-engine\n\nStatic blog generator.\n",
        "render.py": "def render(post):\n    return f'<h1>{post.title}</h1>'\n",
    },
    "data-pipeline": {
        "README.md": "# data-pipeline\n\nNightly CSV import.\n",
        "pipeline.py": "import csv\n\n\ndef load(path):\n    return list(csv.DictReader(open(path)))\n",
        "data.csv": "id,value\n1,42\n2,7\n",
    },
}


class DemoError(RuntimeError):
    """A problem the user can fix; printed as one message, exit code 1."""


class Stopped(Exception):
    """Ctrl+C, SIGTERM or SIGHUP arrived: stop at the next check and clean up."""


STOP: list[int] = []  # signals received; the handler only records them, every wait checks


def _on_signal(signum, frame) -> None:  # noqa: ARG001
    STOP.append(signum)


def check_stop() -> None:
    if STOP:
        raise Stopped


T0 = time.monotonic()


def say(msg: str) -> None:
    print(f"[demo {time.monotonic() - T0:5.1f}s] {msg}", flush=True)


def cache_dir() -> Path:
    return Path(os.environ.get("HYPI_CACHE") or Path.home() / ".cache" / "hyper-pi").expanduser()


# ---------------------------------------------------------------- pi
@dataclass
class Pi:
    path: str
    version: str


def _usable(pi: str) -> tuple[str | None, str | None]:
    """(version, problem) of a pi executable with the Node on PATH."""
    v, raw = installer.pi_version(pi)
    if v is None:
        return None, f"`{pi} --version` failed: {raw[-200:]}"
    problem = installer.node_problem(v, installer.node_version())
    return ".".join(map(str, v)), problem


def pinned_pi_path() -> Path:
    return cache_dir() / f"pi-{PINNED_PI}" / "node_modules" / ".bin" / "pi"


def install_pinned_pi() -> Path:
    target = pinned_pi_path()
    if target.exists():
        return target
    npm = shutil.which("npm")
    if not npm:
        raise DemoError(f"no `pi` on PATH and no npm to install pi {PINNED_PI}: install Node >= 20 (with npm)")
    d = target.parents[2]
    d.mkdir(parents=True, exist_ok=True)
    if not (d / "package.json").exists():
        (d / "package.json").write_text('{"private":true}\n')
    say(f"installing pi {PINNED_PI} into {d} (npm, about 15 s, once)")
    proc = subprocess.Popen(
        [npm, "install", "--no-audit", "--no-fund", "--loglevel=error", f"{PINNED_PACKAGE}@{PINNED_PI}"],
        cwd=d,
        stdin=subprocess.DEVNULL,
    )
    try:
        wait_until(lambda: proc.poll() is not None, 600, "npm install")
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(10)
    if proc.returncode != 0 or not target.exists():
        raise DemoError(f"npm install {PINNED_PACKAGE}@{PINNED_PI} failed (exit {proc.returncode})")
    return target


def choose_pi(explicit: str | None) -> Pi:
    """``--pi``/``PI_BIN``/PATH when usable, else the pinned 0.73.1 (installed on first use)."""
    cand = installer.find_pi(explicit)
    if explicit and not cand:
        raise DemoError(f"--pi {explicit}: not found")
    if cand:
        version, problem = _usable(cand)
        if version and not problem:
            return Pi(cand, version)
        if explicit:
            raise DemoError(f"pi {cand} cannot run here: {problem}")
        say(f"not using {cand}: {problem}; falling back to the pinned pi {PINNED_PI}")
    path = install_pinned_pi()
    version, problem = _usable(str(path))
    if problem:
        raise DemoError(f"pi {PINNED_PI} cannot run here: {problem}")
    return Pi(str(path), version or PINNED_PI)


# ---------------------------------------------------------------- ports and small helpers
def port_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pick_port(wanted: int, what: str) -> int:
    if wanted and port_free(wanted):
        return wanted
    port = free_port()
    if wanted:
        say(f"{what} port {wanted} is in use: using {port}")
    return port


def wait_until(
    pred: Callable[[], Any], timeout: float, what: str, interval: float = 0.2, stoppable: bool = True
) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        if stoppable:
            check_stop()
        value = pred()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise DemoError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


def pid_alive(pid: int) -> bool:
    try:
        stat = (Path("/proc") / str(pid) / "stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def descendants(pid: int) -> list[int]:
    """Every live descendant of ``pid`` (from /proc; empty where /proc is missing)."""
    children: dict[int, list[int]] = {}
    try:
        entries = list(Path("/proc").iterdir())
    except OSError:
        return []
    for entry in entries:
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


# ---------------------------------------------------------------- the demo
@dataclass
class Agent:
    folder: str
    session_name: str
    prompt: str
    cwd: Path
    tmux_session: str
    pid: int | None = None
    node: dict = field(default_factory=dict)


class Demo:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.token = os.environ.get("HYPI_TOKEN") or None
        self.tag = secrets.token_hex(3)
        self.tmux_socket = f"hypi-demo-{self.tag}"
        self.root = Path(tempfile.mkdtemp(prefix="hypi-demo-"))
        self.agent_dir = self.root / "pi-agent"
        self.projects = self.root / "projects"
        self.logs = self.root / "logs"
        self.llm: Any = None
        self.hv: subprocess.Popen | None = None
        self.hv_out = self.root / "hypivisor.out"
        self.agents: list[Agent] = []
        self.pids: list[int] = []  # pi and bridge pids seen, killed at cleanup if still alive
        self.tmux = shutil.which("tmux")

    # -- steps
    def start(self) -> None:
        if not self.tmux:
            raise DemoError("tmux is not installed (the agents run in tmux): e.g. `sudo apt-get install tmux`")
        pi = choose_pi(self.args.pi)
        self.pi = pi
        say(f"pi {pi.version}: {pi.path}")
        self.port = pick_port(self.args.port, "registry")
        self.dash_port = pick_port(self.args.dashboard_port, "dashboard")
        check_stop()
        self.llm = fake_llm.serve("127.0.0.1", 0, demo=True, models=(MODEL_ID,))
        llm_url = f"http://127.0.0.1:{self.llm.server_address[1]}"
        say(f"fake LLM (scripted, no API key): {llm_url}")
        self.write_agent_dir(llm_url)
        for step in (self.install_shim, self.start_hypivisor, self.start_agents, self.wait_registered):
            check_stop()
            step()
        if not self.args.no_prompts:
            check_stop()
            self.seed_conversations()

    def write_agent_dir(self, llm_url: str) -> None:
        self.agent_dir.mkdir(parents=True)
        self.logs.mkdir()
        self.projects.mkdir()
        models = {
            "providers": {
                MODEL_PROVIDER: {
                    "baseUrl": f"{llm_url}/v1",
                    "api": "openai-completions",
                    "apiKey": "demo-key-not-secret",
                    "compat": {
                        "supportsDeveloperRole": False,
                        "supportsReasoningEffort": False,
                        "supportsStore": False,
                    },
                    "models": [
                        {
                            "id": MODEL_ID,
                            "name": "Scripted demo LLM",
                            "reasoning": False,
                            "input": ["text"],
                            "contextWindow": 128000,
                            "maxTokens": 4096,
                            "cost": {"input": 1, "output": 2, "cacheRead": 0, "cacheWrite": 0},
                        }
                    ],
                }
            }
        }
        settings = {
            "defaultProvider": MODEL_PROVIDER,
            "defaultModel": MODEL_ID,
            "quietStartup": True,
            "enableInstallTelemetry": False,
            "cacheWarming": "off",
            "retry": {"enabled": False, "provider": {"maxRetries": 0}},
        }
        (self.agent_dir / "models.json").write_text(json.dumps(models, indent=2) + "\n")
        (self.agent_dir / "settings.json").write_text(json.dumps(settings, indent=2) + "\n")

    def base_env(self) -> dict[str, str]:
        keep = ("PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "TZ", "TMPDIR")
        env = {k: v for k, v in os.environ.items() if k in keep or k.startswith("LC_")}
        pi_dir = str(Path(self.pi.path).parent)
        env["PATH"] = pi_dir + os.pathsep + env.get("PATH", os.defpath)
        origins = [o for o in (os.environ.get("HYPI_ALLOWED_ORIGINS") or "").split(",") if o.strip()]
        origins += [f"http://127.0.0.1:{self.dash_port}", f"http://localhost:{self.dash_port}"]
        env.update(
            {
                "PI_CODING_AGENT_DIR": str(self.agent_dir),
                "PI_OFFLINE": "1",
                "PI_SKIP_VERSION_CHECK": "1",
                "PI_TELEMETRY": "0",
                "PI_SOCKET_LOG_DIR": str(self.logs),
                "PI_SOCKET_HOST": "127.0.0.1",
                "PI_SOCKET_PORT": "0",
                # a bridge child per demo pi: a machine service would outlive the demo (and the user's own
                # service, when one runs, would serve the demo's agents)
                "PI_SOCKET_MODE": "bridge",
                "HYPIVISOR_WS": f"ws://127.0.0.1:{self.port}/ws",
                "HYPI_ALLOWED_ORIGINS": ",".join(origins),
                "TERM": "xterm-256color",
            }
        )
        if self.token:
            env["HYPI_TOKEN"] = self.token
        return env

    def install_shim(self) -> None:
        env = {**os.environ, **self.base_env(), "PI_BIN": self.pi.path}
        done = subprocess.run(
            [sys.executable, "-m", "pi_socket", "install", "--pi", self.pi.path],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            stdin=subprocess.DEVNULL,
        )
        for line in (done.stdout + done.stderr).splitlines():
            say(f"  install: {line}")
        if done.returncode != 0:
            raise DemoError("python -m pi_socket install failed (see above)")

    def hypivisor_env(self) -> dict[str, str]:
        """The hypivisor's environment, which is also what ``spawn_agent`` hands a spawned pi: HOME is the
        projects folder (spawn and the folder browser stay inside HOME), PATH finds the demo's pi (and its Node),
        the ``PI_*`` settings point a spawned pi at the fake LLM and the shim, and tmux keeps its server in the
        scratch dir, so the spawned agents are the demo's and go with it."""
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("TMUX", "PI_")) and k not in ("HYPIVISOR_WS", "HYPI_SPAWN_COMMAND")
        }
        env.update(self.base_env())
        env.pop("HYPIVISOR_WS", None)
        env.update({"HOME": str(self.projects), "TMUX_TMPDIR": str(self.root)})
        return env

    def start_hypivisor(self) -> None:
        env = self.hypivisor_env()
        argv = [
            sys.executable,
            "-m",
            "hypivisor",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--dashboard-port",
            str(self.dash_port),
        ]
        if not self.token:  # loopback only, as the demo always was: no token file in the scratch HOME
            argv.append("--no-token")
        with open(self.hv_out, "wb") as out:
            self.hv = subprocess.Popen(
                argv, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
            )

        def ready() -> bool:
            if self.hv is not None and self.hv.poll() is not None:
                raise DemoError(f"the hypivisor exited ({self.hv.returncode}): {self.hv_out.read_text()[-800:]}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=1):
                    return True
            except OSError:
                return False

        wait_until(ready, 20, "the hypivisor to answer /healthz")
        for line in self.hv_out.read_text(errors="replace").splitlines():
            say(f"  {line}")

    def tmux_run(self, *argv: str, capture: bool = False) -> str:
        # Output goes to a file, never a pipe: the first call forks the tmux server, which would hold a pipe open.
        with tempfile.TemporaryFile() as out:
            done = subprocess.run(
                [self.tmux or "tmux", "-L", self.tmux_socket, "-f", "/dev/null", *argv],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                timeout=15,
                env={k: v for k, v in os.environ.items() if not k.startswith("TMUX")},
            )
            out.seek(0)
            text = out.read().decode(errors="replace")
        if done.returncode != 0 and not capture:
            raise DemoError(f"tmux {' '.join(argv[:1])} failed: {text.strip()}")
        return text

    def start_agents(self) -> None:
        # An explicit environment (never the tmux server's), from a private script so no token shows in `ps`.
        launcher = self.root / "run-pi.sh"
        launcher.write_text(
            "#!/bin/sh\nexec env -i "
            + " ".join(shlex.quote(f"{k}={v}") for k, v in self.base_env().items())
            + " "
            + shlex.quote(self.pi.path)
            + "\n"
        )
        launcher.chmod(0o700)
        for folder, name, prompt in PROJECTS[: self.args.agents]:
            cwd = self.projects / folder
            cwd.mkdir(parents=True)
            for fname, text in SEED_FILES.get(folder, {}).items():
                (cwd / fname).write_text(text)
            session = f"hypi-demo-{folder}"
            # never a folder in tmux's -c: tmux expands formats there (specs/security.md T12)
            cmd = f"cd -- {shlex.quote(str(cwd))} && exec {shlex.quote(str(launcher))}"
            self.tmux_run("new-session", "-d", "-s", session, "-x", "160", "-y", "45", "-c", "/", cmd)
            self.tmux_run("set-option", "-t", session, "remain-on-exit", "on")
            pid = int(self.tmux_run("display-message", "-p", "-t", session, "#{pane_pid}").strip())
            self.pids.append(pid)
            self.agents.append(Agent(folder, name, prompt, cwd, session, pid))
        say(f"started {len(self.agents)} pi TUIs in tmux (tmux -L {self.tmux_socket} ls)")

    def kill_spawned(self) -> None:
        """Stop the tmux server the hypivisor's ``spawn_agent`` started (``TMUX_TMPDIR`` is the scratch dir)."""
        socket_dir = self.root / f"tmux-{os.getuid()}"
        for sock in socket_dir.glob("*") if socket_dir.is_dir() else ():
            with tempfile.TemporaryFile() as out:
                try:
                    pane_pids = subprocess.run(
                        [self.tmux or "tmux", "-S", str(sock), "list-panes", "-a", "-F", "#{pane_pid}"],
                        stdout=out,
                        stderr=subprocess.DEVNULL,
                        stdin=subprocess.DEVNULL,
                        timeout=10,
                    )
                    out.seek(0)
                    if pane_pids.returncode == 0:
                        for pid in out.read().decode(errors="replace").split():
                            if pid.isdigit():
                                self.pids += [int(pid), *descendants(int(pid))]
                    subprocess.run(
                        [self.tmux or "tmux", "-S", str(sock), "kill-server"],
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                        stdin=subprocess.DEVNULL,
                        timeout=10,
                    )
                except (OSError, subprocess.SubprocessError):
                    pass

    def registry_nodes(self) -> list[dict]:
        from websockets.sync.client import connect

        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        with connect(f"ws://127.0.0.1:{self.port}/ws", additional_headers=headers, open_timeout=5) as ws:
            ws.send(json.dumps({"id": "demo", "method": "list_nodes", "params": {}}))
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                msg = json.loads(ws.recv(timeout=max(0.1, deadline - time.monotonic())))
                if msg.get("id") == "demo":
                    return list((msg.get("result") or {}).get("nodes") or [])
        return []

    def wait_registered(self, timeout: float = 90) -> None:
        cwds = {str(a.cwd.resolve()): a for a in self.agents}

        def all_in() -> bool:
            for a in self.agents:
                if a.pid and not pid_alive(a.pid):
                    screen = self.tmux_run("capture-pane", "-p", "-t", a.tmux_session, capture=True)
                    raise DemoError(f"pi in {a.folder} exited:\n{screen.strip()[-1500:]}")
            for n in self.registry_nodes():
                found = cwds.get(str(Path(n.get("cwd", "")).resolve()))
                if found and n.get("status") == "active":
                    found.node = n
            return all(a.node for a in self.agents)

        wait_until(all_in, timeout, f"{len(self.agents)} agents to register", interval=0.5)
        for a in self.agents:
            self.pids.extend(descendants(a.pid or 0))

    def seed_conversations(self) -> None:
        """Name each session and send its first prompt over the agent link (directly to the bridge)."""
        from websockets.sync.client import connect

        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        for a in self.agents:
            check_stop()
            try:
                with connect(
                    f"ws://127.0.0.1:{a.node['port']}", additional_headers=headers, open_timeout=5, max_size=None
                ) as ws:
                    deadline = time.monotonic() + 15
                    seen_init = acked = False
                    ws.send(json.dumps({"type": "set_session_name", "name": a.session_name}))
                    ws.send(json.dumps({"type": "prompt", "id": f"demo-{a.folder}", "text": a.prompt}))
                    while time.monotonic() < deadline and not (seen_init and acked):
                        f = json.loads(ws.recv(timeout=max(0.1, deadline - time.monotonic())))
                        seen_init = seen_init or f.get("type") == "init_state"
                        acked = acked or (f.get("type") == "ack" and f.get("id") == f"demo-{a.folder}")
            except Exception as exc:  # noqa: BLE001 - a missing first prompt is cosmetic
                say(f"could not send the first prompt to {a.folder}: {type(exc).__name__}: {exc}")

    def banner(self) -> None:
        url = f"http://127.0.0.1:{self.dash_port}/"
        lines = [
            "",
            "Hyper-Pi demo is running",
            f"  dashboard:  {url}",
            f"  registry:   ws://127.0.0.1:{self.port}/ws",
            f"  agents:     {len(self.agents)} x pi {self.pi.version} on a scripted fake LLM (no API key)",
        ]
        if self.token:
            lines.insert(4, "  token:      HYPI_TOKEN from your environment (the dashboard asks for it once)")
        for a in self.agents:
            lines.append(f"    {a.folder:<14} tmux -L {self.tmux_socket} attach -t {a.tmux_session}")
        lines += [
            f"  scratch:    {self.root} (removed on exit)",
            "  Try in the dashboard: 'hello', 'list the files', 'think about a plan'.",
            "Press Ctrl+C to stop the demo and clean up.",
            f"DEMO READY {url}",
        ]
        print("\n".join(lines), flush=True)

    def wait(self) -> int:
        while not STOP:
            if self.hv is not None and self.hv.poll() is not None:
                say(f"the hypivisor exited ({self.hv.returncode}); stopping")
                return 1
            time.sleep(0.2)
        return 0

    # -- cleanup (idempotent, never raises)
    def cleanup(self) -> None:
        say("stopping: tmux sessions, pi agents, bridges, hypivisor, scratch dir")
        for a in self.agents:
            if a.pid:
                self.pids.extend(descendants(a.pid))
        if self.tmux:
            try:
                self.tmux_run("kill-server", capture=True)
            except Exception:  # noqa: BLE001
                pass
            self.kill_spawned()
        try:
            wait_until(
                lambda: not any(pid_alive(p) for p in self.pids), 8, "the agents to exit", interval=0.1, stoppable=False
            )
        except DemoError:
            pass
        for p in self.pids:
            if pid_alive(p):
                try:
                    os.kill(p, signal.SIGKILL)
                except OSError:
                    pass
        if self.hv is not None and self.hv.poll() is None:
            self.hv.terminate()
            try:
                self.hv.wait(8)
            except subprocess.TimeoutExpired:
                self.hv.kill()
                self.hv.wait(5)
        if self.llm is not None:
            self.llm.shutdown()
            self.llm.server_close()
        shutil.rmtree(self.root, ignore_errors=True)
        say("stopped")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m hypivisor.demo",
        description="Hyper-Pi demo: hypivisor + dashboard + 3 real pi agents in tmux on a "
        "scripted fake LLM (no API key). Ctrl+C stops everything and removes the temp dir.",
    )
    p.add_argument(
        "-p",
        "--port",
        type=int,
        default=DEFAULT_PORT,
        help="registry port; a busy port is replaced by a free one, 0 = any (default: %(default)s)",
    )
    p.add_argument(
        "--dashboard-port",
        type=int,
        default=DEFAULT_DASHBOARD_PORT,
        help="dashboard port; a busy port is replaced by a free one, 0 = any (default: %(default)s)",
    )
    p.add_argument(
        "--pi",
        help=f"pi executable (default: PI_BIN, `pi` on PATH, else the pinned {PINNED_PI} "
        "installed into $HYPI_CACHE, default ~/.cache/hyper-pi)",
    )
    p.add_argument(
        "--agents",
        type=int,
        default=len(PROJECTS),
        choices=range(1, len(PROJECTS) + 1),
        help="number of agents (default: %(default)s)",
    )
    p.add_argument("--no-prompts", action="store_true", help="do not send each agent a first prompt")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):  # SIGINT too: a background job inherits SIG_IGN
        signal.signal(sig, _on_signal)
    demo = Demo(args)
    rc = 0
    try:
        demo.start()
        demo.banner()
        rc = demo.wait()
    except Stopped:
        rc = 0
    except DemoError as exc:
        if not STOP:
            print(f"[demo] error: {exc}", file=sys.stderr, flush=True)
            rc = 1
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)  # a second Ctrl+C must not interrupt the cleanup
        demo.cleanup()
    return rc
