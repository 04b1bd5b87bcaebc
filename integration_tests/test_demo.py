"""The demo (``make demo`` = ``python -m hypivisor.demo``): real hypivisor, real pi 0.73.1 TUIs in tmux, the bundled
fake LLM; and what Ctrl+C / SIGTERM leave behind (nothing).

Requirements PK-3 (demo) and PK-4 (fake LLM is package code, demo replies) in specs/requirements.md.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from hypivisor.demo import fake_llm
from integration_tests.harness.hypivisor_proc import free_port
from integration_tests.harness.pi_proc import pi_bin, pi_path_env, pid_alive, wait_until

REPO = Path(__file__).resolve().parents[1]
TOKEN = "demo-test-token-7f3a"


# ---------------------------------------------------------------- the fake LLM's demo replies (in-process)
def _completion(url: str, text: str, role: str = "user") -> dict:
    body = {"model": "m", "messages": [{"role": role, "content": text}]}
    req = urllib.request.Request(
        url + "/v1/chat/completions",
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.load(resp)["choices"][0]


@pytest.fixture
def llm_server():
    servers = []

    def start(demo: bool):
        srv = fake_llm.serve("127.0.0.1", 0, demo=demo)
        servers.append(srv)
        return f"http://127.0.0.1:{srv.server_address[1]}"

    try:
        yield start
    finally:
        for srv in servers:
            srv.shutdown()
            srv.server_close()
        fake_llm.STATE["demo"] = False


def test_fake_llm_demo_replies_are_chosen_by_the_prompt_and_test_keywords_still_work(llm_server):
    url = llm_server(demo=True)
    tool = _completion(url, "list the files please")
    assert tool["finish_reason"] == "tool_calls"
    assert tool["message"]["tool_calls"][0]["function"]["name"] == "bash"
    plan = _completion(url, "think about a plan for caching")
    assert plan["message"]["content"].startswith("## Plan:") and "| step |" in plan["message"]["content"]
    hello = _completion(url, "hello there")["message"]["content"]
    assert hello.startswith("# Hello") and "```python" in hello and "hello there" in hello
    summary = _completion(url, "total 3\nREADME.md", role="tool")["message"]["content"]
    assert "```text\ntotal 3\nREADME.md\n```" in summary
    # the integration tests' keywords keep their meaning in demo mode
    assert _completion(url, "TOOLCALL: echo x")["message"]["tool_calls"][0]["function"]["arguments"] == json.dumps(
        {"command": "echo x"}
    )
    assert _completion(url, "THINK now")["message"]["content"].startswith("Thought about it.")


def test_fake_llm_without_demo_keeps_the_test_replies(llm_server):
    url = llm_server(demo=False)
    assert _completion(url, "hello")["message"]["content"] == "Hello from fake LLM. You said: hello"
    assert _completion(url, "list the files")["message"]["content"] == "Hello from fake LLM. You said: list the files"
    assert _completion(url, "out", role="tool")["message"]["content"] == "Tool result received: out"


def test_harness_fake_llm_is_the_packaged_one():
    text = (REPO / "integration_tests" / "harness" / "fake_llm.py").read_text()
    assert "from hypivisor.demo.fake_llm import" in text and "class Handler" not in text


# ---------------------------------------------------------------- the demo, end to end
class DemoRun:
    """``python -m hypivisor.demo`` on free ports with HYPI_TOKEN set; stdout collected by a thread."""

    def __init__(self, tmp_path: Path, version: str = "0.73.1", extra: tuple[str, ...] = ()):
        pi = pi_bin(version)
        if not pi.exists() or not shutil.which("tmux"):
            pytest.skip(f"needs tmux and pi {version}: run bash integration_tests/setup_env.sh")
        self.port, self.dash_port = free_port(), free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PI_", "HYPI", "TMUX"))}
        env.update(
            {
                "HYPI_TOKEN": TOKEN,
                "PI_BIN": str(pi),
                "PYTHONUNBUFFERED": "1",
                "PATH": pi_path_env(version, os.environ.get("PATH", os.defpath)),
            }
        )
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "hypivisor.demo",
                "--port",
                str(self.port),
                "--dashboard-port",
                str(self.dash_port),
                "--pi",
                str(pi),
                *extra,
            ],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        self.lines: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()
        self.tmux_socket: str | None = None
        self.scratch: Path | None = None

    def _read(self) -> None:
        for raw in self.proc.stdout:
            self.lines.append(raw.decode(errors="replace").rstrip("\n"))

    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_line(self, pattern: str, timeout: float) -> re.Match:
        rx = re.compile(pattern)

        def found():
            if self.proc.poll() is not None and not any(rx.search(x) for x in self.lines):
                raise AssertionError(f"demo exited {self.proc.returncode}:\n{self.output()[-3000:]}")
            return next((m for m in map(rx.search, list(self.lines)) if m), None)

        try:
            m = wait_until(found, timeout, f"{pattern!r} from the demo", interval=0.1)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n--- demo output ---\n{self.output()[-3000:]}") from None
        if self.tmux_socket is None:
            sock = re.search(r"tmux -L (hypi-demo-[0-9a-f]+)", self.output())
            self.tmux_socket = sock.group(1) if sock else None
        if self.scratch is None:
            scr = re.search(r"scratch:\s+(\S+)", self.output())
            self.scratch = Path(scr.group(1)) if scr else None
        return m

    def tmux_sessions(self) -> list[str]:
        if not self.tmux_socket:
            return []
        done = subprocess.run(
            ["tmux", "-L", self.tmux_socket, "ls", "-F", "#{session_name}"],
            capture_output=True,
            text=True,
            timeout=10,
            env={k: v for k, v in os.environ.items() if k != "TMUX"},
        )
        return done.stdout.split() if done.returncode == 0 else []

    def kill_everything(self, pids: list[int]) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        if self.tmux_socket:
            subprocess.run(["tmux", "-L", self.tmux_socket, "kill-server"], capture_output=True, timeout=10)
        for pid in pids:
            if pid_alive(pid):
                os.kill(pid, signal.SIGKILL)
        if self.scratch and self.scratch.exists():
            shutil.rmtree(self.scratch, ignore_errors=True)


def registry_nodes(port: int) -> list[dict]:
    from websockets.sync.client import connect

    with connect(
        f"ws://127.0.0.1:{port}/ws", additional_headers={"Authorization": f"Bearer {TOKEN}"}, open_timeout=5
    ) as ws:
        ws.send(json.dumps({"id": "t", "method": "list_nodes", "params": {}}))
        while True:
            msg = json.loads(ws.recv(timeout=5))
            if msg.get("id") == "t":
                return msg["result"]["nodes"]


def init_state_via_proxy(port: int, node_id: str) -> dict:
    from websockets.sync.client import connect

    with connect(
        f"ws://127.0.0.1:{port}/ws/agent/{node_id}",
        max_size=None,
        open_timeout=5,
        additional_headers={"Authorization": f"Bearer {TOKEN}"},
    ) as ws:
        while True:
            frame = json.loads(ws.recv(timeout=10))
            if frame.get("type") == "init_state":
                return frame


def _cmdline(pid: int) -> str:
    try:
        return (Path("/proc") / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _processes(pattern: str) -> list[int]:
    return [
        int(p.name)
        for p in Path("/proc").iterdir()
        if p.name.isdigit() and re.search(pattern, _cmdline(int(p.name))) and pid_alive(int(p.name))
    ]


def _children(pid: int) -> list[int]:
    out = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                if int((p / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    out.append(int(p.name))
            except (OSError, ValueError, IndexError):
                pass
    return out


def _texts(messages: list[dict], role: str) -> str:
    out = []
    for m in messages:
        if m.get("role") == role:
            content = m.get("content")
            out += (
                [content]
                if isinstance(content, str)
                else [c.get("text", "") for c in content or [] if isinstance(c, dict)]
            )
    return "\n".join(out)


@pytest.mark.pi
@pytest.mark.slow
def test_demo_shows_three_live_agents_that_answer_and_sigint_removes_everything(tmp_path):
    demo = DemoRun(tmp_path)
    pids: list[int] = []
    try:
        demo.wait_line(r"DEMO READY http://127\.0\.0\.1:(\d+)/", 120)
        assert demo.tmux_socket and demo.tmux_socket.startswith("hypi-demo-"), demo.output()
        assert demo.scratch and demo.scratch.is_dir(), demo.output()
        assert f"dashboard:  http://127.0.0.1:{demo.dash_port}/" in demo.output()
        assert "changed:" in demo.output(), "the installer's report of what it changed is shown"

        # the roster, asked independently: 3 active agents, each in its own scratch project
        nodes = wait_until(
            lambda: (lambda ns: ns if len([n for n in ns if n["status"] == "active"]) == 3 else None)(
                registry_nodes(demo.port)
            ),
            30,
            "3 active agents in the roster",
        )
        cwds = sorted(Path(n["cwd"]).name for n in nodes)
        assert cwds == ["blog-engine", "data-pipeline", "todo-api"]
        assert all(Path(n["cwd"]).resolve().is_relative_to(demo.scratch.resolve()) for n in nodes)
        assert len(demo.tmux_sessions()) == 3 and all(s.startswith("hypi-demo-") for s in demo.tmux_sessions())
        pids = [n["pid"] for n in nodes]
        bridges = [c for p in pids for c in _children(p) if "pi_socket.bridge" in _cmdline(c)]
        assert len(bridges) == 3, "each pi runs its bridge"
        hypivisors = _processes(rf"-m hypivisor .*--port {demo.port}\b")
        assert len(hypivisors) == 1
        pids += bridges + hypivisors

        # each agent answered its first prompt through the real pi: markdown, thinking, and a bash tool call
        by_folder = {Path(n["cwd"]).name: n for n in nodes}

        def answered(folder: str, pred) -> dict | None:
            state = init_state_via_proxy(demo.port, by_folder[folder]["id"])
            return state if not state["is_streaming"] and pred(state["messages"]) else None

        wait_until(
            lambda: answered("todo-api", lambda ms: "# Hello from a scripted model" in _texts(ms, "assistant")),
            30,
            "the todo-api agent's markdown reply",
        )
        wait_until(
            lambda: answered(
                "blog-engine",
                lambda ms: any(
                    c.get("type") == "thinking"
                    for m in ms
                    if m.get("role") == "assistant"
                    for c in m.get("content") or []
                ),
            ),
            30,
            "the blog-engine agent's thinking",
        )
        wait_until(
            lambda: answered("data-pipeline", lambda ms: "pipeline.py" in _texts(ms, "toolResult")),
            30,
            "the data-pipeline agent's bash tool result (ls of its project)",
        )
        named = {n["session_name"] for n in registry_nodes(demo.port)}
        assert {"Welcome", "Caching plan", "Project check"} <= named

        # the dashboard is served on its port
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{demo.dash_port}/", timeout=5) as resp:
                assert resp.status == 200 and b"<" in resp.read()
        except urllib.error.HTTPError as exc:
            assert exc.code == 503 and b"not built" in exc.read(), "no dist: the 'not built' page"

        # Ctrl+C: everything goes
        demo.proc.send_signal(signal.SIGINT)
        assert demo.proc.wait(30) == 0, demo.output()[-2000:]
        assert demo.tmux_sessions() == []
        wait_until(lambda: not [p for p in pids if pid_alive(p)], 10, "pi, bridges and the hypivisor to be gone")
        assert not demo.scratch.exists()
        assert "stopped" in demo.lines[-1]
    finally:
        demo.kill_everything(pids)


@pytest.mark.pi
@pytest.mark.slow
def test_sigterm_while_the_demo_starts_leaves_nothing_behind(tmp_path):
    demo = DemoRun(tmp_path)
    try:
        demo.wait_line(r"started 3 pi TUIs in tmux \(tmux -L (hypi-demo-[0-9a-f]+) ls\)", 90)
        demo.tmux_socket = re.search(r"tmux -L (hypi-demo-[0-9a-f]+) ls", demo.output()).group(1)
        scratch = Path(re.search(r"pi agent dir: (\S+)/pi-agent", demo.output()).group(1))
        assert demo.tmux_sessions(), "the agents' tmux sessions exist"
        done = subprocess.run(
            ["tmux", "-L", demo.tmux_socket, "list-panes", "-a", "-F", "#{pane_pid}"],
            capture_output=True,
            text=True,
            timeout=10,
        )
        panes = [int(x) for x in done.stdout.split()]
        assert len(panes) == 3, done.stdout + done.stderr
        panes += [c for p in panes for c in _children(p)]
        demo.proc.send_signal(signal.SIGTERM)
        assert demo.proc.wait(30) == 0, demo.output()[-2000:]
        assert demo.tmux_sessions() == []
        assert not scratch.exists()
        assert not _processes(rf"-m hypivisor .*--port {demo.port}\b")
        wait_until(lambda: not [p for p in panes if pid_alive(p)], 10, "the pi processes and their children to be gone")
    finally:
        demo.kill_everything([])


@pytest.mark.pi
@pytest.mark.slow
def test_demo_runs_pi_1_5_on_node_22(tmp_path):
    """The demo takes the pi it is given when that pi's Node fits: pi 1.5.2 with Node 22 first on PATH."""
    demo = DemoRun(tmp_path, "1.5.2", ("--agents", "1"))
    pids: list[int] = []
    try:
        demo.wait_line(r"DEMO READY", 120)
        assert "1 x pi 1.5.2" in demo.output()
        nodes = registry_nodes(demo.port)
        assert [(n["status"], n["pi_version"], Path(n["cwd"]).name) for n in nodes] == [("active", "1.5.2", "todo-api")]
        pids = [nodes[0]["pid"]]
        wait_until(
            lambda: (
                "# Hello from a scripted model"
                in _texts(init_state_via_proxy(demo.port, nodes[0]["id"])["messages"], "assistant")
            ),
            30,
            "pi 1.5.2's reply",
        )
        demo.proc.send_signal(signal.SIGINT)
        assert demo.proc.wait(30) == 0, demo.output()[-2000:]
        assert demo.tmux_sessions() == [] and not demo.scratch.exists()
        wait_until(lambda: not pid_alive(pids[0]), 10, "pi 1.5.2 to exit")
    finally:
        demo.kill_everything(pids)


def registry_call(port: int, method: str, params: dict, timeout: float = 60, leave_after: float | None = None):
    """One call on the registry socket; ``leave_after``: close the socket that many seconds after sending (the
    caller going away mid-call) and return None."""
    from websockets.sync.client import connect

    with connect(
        f"ws://127.0.0.1:{port}/ws",
        additional_headers={"Authorization": f"Bearer {TOKEN}"},
        open_timeout=5,
        max_size=None,
    ) as ws:
        ws.send(json.dumps({"id": "c", "method": method, "params": params}))
        if leave_after is not None:
            time.sleep(leave_after)
            return None
        deadline = time.monotonic() + timeout
        while True:
            msg = json.loads(ws.recv(timeout=max(0.1, deadline - time.monotonic())))
            if msg.get("id") == "c":
                return msg


def prompt_via_proxy(port: int, node_id: str, text: str) -> None:
    from websockets.sync.client import connect

    with connect(
        f"ws://127.0.0.1:{port}/ws/agent/{node_id}",
        max_size=None,
        open_timeout=5,
        additional_headers={"Authorization": f"Bearer {TOKEN}"},
    ) as ws:
        ws.send(json.dumps({"type": "prompt", "id": "p1", "text": text}))
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            f = json.loads(ws.recv(timeout=max(0.1, deadline - time.monotonic())))
            if f.get("type") == "ack" and f.get("id") == "p1":
                return
    raise AssertionError("the prompt was not acknowledged")


@pytest.mark.pi
@pytest.mark.slow
def test_spawn_from_the_demo_starts_a_working_pi_and_a_failed_spawn_leaves_nothing(tmp_path):
    """The demo's hypivisor spawns into a demo project out of the box (HOME is the projects folder, PATH finds
    the demo's pi, the spawned pi talks to the fake LLM); failed spawns create nothing; the demo's exit takes
    the spawned agent with it."""
    demo = DemoRun(tmp_path, extra=("--agents", "1", "--no-prompts"))
    pids: list[int] = []
    try:
        demo.wait_line(r"DEMO READY", 120)
        project = Path(registry_nodes(demo.port)[0]["cwd"])
        assert project.name == "todo-api"

        # a spawn refused by the path policy creates nothing outside HOME
        outside = Path(tempfile.gettempdir()) / f"hypi-demo-outside-{os.getpid()}"
        res = registry_call(demo.port, "spawn_agent", {"path": str(outside.parent), "new_folder": outside.name})
        assert res["error"]["code"] == 1003, res
        assert not outside.exists()

        # the caller leaving mid-spawn: the new folder and the started pi are gone again
        registry_call(demo.port, "spawn_agent", {"path": str(project), "new_folder": "abandoned"}, leave_after=0.5)
        wait_until(lambda: not (project / "abandoned").exists(), 20, "the abandoned spawn's folder to go")
        time.sleep(1)
        assert [n["cwd"] for n in registry_nodes(demo.port) if "abandoned" in n["cwd"]] == []

        # spawn into a new folder of a demo project: a real pi registers and answers through the proxy
        res = registry_call(demo.port, "spawn_agent", {"path": "todo-api", "new_folder": "feature-x"}, timeout=60)
        assert "result" in res, f"{res}\n{demo.output()[-2000:]}"
        node = res["result"]["node"]
        assert Path(node["cwd"]).resolve() == (project / "feature-x").resolve()
        pids.append(node["pid"])
        prompt_via_proxy(demo.port, node["id"], "hello from a spawned agent")
        wait_until(
            lambda: (
                "# Hello from a scripted model"
                in _texts(init_state_via_proxy(demo.port, node["id"])["messages"], "assistant")
            ),
            30,
            "the spawned pi's reply",
        )
        pids += [c for c in _children(node["pid"]) if "pi_socket.bridge" in _cmdline(c)]
        assert len(pids) == 2, "the spawned pi runs its bridge"

        demo.proc.send_signal(signal.SIGINT)
        assert demo.proc.wait(30) == 0, demo.output()[-2000:]
        wait_until(lambda: not [p for p in pids if pid_alive(p)], 10, "the spawned pi and its bridge to be gone")
        assert not demo.scratch.exists()
    finally:
        demo.kill_everything(pids)
