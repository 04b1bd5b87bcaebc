"""A stand-in for the TypeScript shim, used ONLY by the bridge's own tests.

It plays the shim's side of the stdio protocol (specs/protocol.md §4): starts
``python -m pi_socket.bridge`` as a real child process, writes ``hello``,
``session``, ``event`` and ``bye`` lines, and answers the bridge's ``req``
lines (``history``, ``state``, ``tools``, ``commands``, ``send``, ``abort``,
``set_session_name``, ``notify``) from in-memory data, recording every
request. pi's events come from ``fixtures/pi-events-0.73.1.jsonl``: real
events recorded from pi 0.73.1's TUI (``pilab/sample-events-tui.jsonl``),
slimmed exactly as the shim must slim them (no ``partial``/``message``
snapshots in ``message_update``; ``toolcall_start`` carries ``toolCall``
``{type,id,name}``).

The real shim is tested against real pi by the integration tests; nothing here
stands in for pi in those.
"""

from __future__ import annotations

import asyncio
import copy
import json
import os
import sys
from pathlib import Path
from typing import Any

FIXTURES = Path(__file__).parent / "fixtures"
REPO = Path(__file__).resolve().parents[2]


def sample_events() -> list[dict[str, Any]]:
    """Two recorded runs: a plain reply ("hello") and a tool call ("TOOLCALL: echo hi")."""
    lines = (FIXTURES / "pi-events-0.73.1.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def user_message(text: str, ts: int) -> dict[str, Any]:
    return {"role": "user", "content": [{"type": "text", "text": text}], "timestamp": ts}


def assistant_message(text: str, ts: int, tokens: int = 10, cost: float = 0.001) -> dict[str, Any]:
    return {
        "role": "assistant",
        "content": [{"type": "text", "text": text}],
        "api": "openai-completions",
        "provider": "fake",
        "model": "fake-model",
        "usage": {
            "input": tokens,
            "output": tokens,
            "cacheRead": 0,
            "cacheWrite": 0,
            "totalTokens": 2 * tokens,
            "cost": {"input": cost / 2, "output": cost / 2, "cacheRead": 0, "cacheWrite": 0, "total": cost},
        },
        "stopReason": "stop",
        "timestamp": ts,
    }


class FakeShim:
    """Drives one bridge process. ``await start()``; use ``port``/``url``; ``await stop()`` in teardown."""

    def __init__(
        self,
        tmp: Path,
        *,
        history: list[dict[str, Any]] | None = None,
        env: dict[str, str] | None = None,
        node_id: str = "node-test",
        cwd: Path | None = None,
        session_id: str = "sess-1",
        send_hello: bool = True,
    ) -> None:
        self.tmp = tmp
        self.history = list(history or [])
        self.extra_env = env or {}
        self.node_id = node_id
        self.cwd = cwd or tmp
        self.session_id = session_id
        self.session_name: str | None = None
        self.send_hello = send_hello
        self.requests: list[dict[str, Any]] = []
        self.lines: list[dict[str, Any]] = []
        self.send_ok = True  # False → answer send with ok:false
        self.send_delay = 0.0
        self.streaming = False  # what ``state`` reports as is_streaming (pi mid-run)
        # what "pi" received; like the real shim's globalThis set, it survives bridge restarts
        self.delivered: list[dict[str, Any]] = []
        self.delivered_ids: set[Any] = set()
        self.proc: asyncio.subprocess.Process | None = None
        self.port = 0
        self.url = ""
        self._ready: asyncio.Future[dict[str, Any]] | None = None
        self._reader: asyncio.Task[None] | None = None
        self._line_event = asyncio.Event()

    @property
    def log_path(self) -> Path:
        return self.tmp / "logs" / "pi-socket.jsonl"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PI_SOCKET_", "HYPI"))}
        env.update(
            {
                "PYTHONPATH": str(REPO),
                "PI_SOCKET_PORT": "0",
                "PI_SOCKET_HOST": "127.0.0.1",
                "PI_SOCKET_LOG_DIR": str(self.tmp / "logs"),
                "HYPIVISOR_WS": "off",
                # the user's own token file (~/.config/hyper-pi/token, made by any hypivisor run here) is not this
                # bridge's: without this, a machine that ever ran a hypivisor had every fake bridge answer 401
                "XDG_CONFIG_HOME": str(self.tmp / "config"),
            }
        )
        env.update(self.extra_env)
        return env

    async def start(self, timeout: float = 10.0) -> None:
        self._ready = asyncio.get_running_loop().create_future()
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "pi_socket.bridge",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=self.env(),
            cwd=str(self.cwd),
            limit=256 * 1024 * 1024,
        )
        self._reader = asyncio.create_task(self._read())
        if self.send_hello:
            await self.write(self.hello())
        ready = await asyncio.wait_for(self._ready, timeout)
        self.port, self.url = ready["port"], ready["url"]

    def hello(self) -> dict[str, Any]:
        return {
            "t": "hello",
            "v": 1,
            "node_id": self.node_id,
            "pid": os.getpid(),
            "cwd": str(self.cwd),
            "pi_version": "0.73.1",
            "mode": "tui",
            "session": self.session_info("startup"),
        }

    def session_info(self, reason: str) -> dict[str, Any]:
        return {
            "reason": reason,
            "session_id": self.session_id,
            "session_file": None,
            "session_name": self.session_name,
            "model": "fake/fake-model",
            "tools": [{"name": "bash", "description": "Run bash", "active": True}],
            "commands": [{"name": "deploy", "description": "Ship it", "source": "extension"}],
        }

    async def write(self, obj: dict[str, Any]) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write((json.dumps(obj) + "\n").encode())
        await self.proc.stdin.drain()

    async def emit(self, *events: dict[str, Any]) -> None:
        """Forward pi events as the shim would; a message_end also lands in pi's history, a session_info_changed
        renames the session."""
        for event in events:
            if event.get("type") == "message_end" and isinstance(event.get("message"), dict):
                self.history.append(copy.deepcopy(event["message"]))
            elif event.get("type") == "session_info_changed" and "name" in event:
                # pi's name is the new one from then on: a ``state`` asked after the event answers it, as pi does
                # (without this, a bridge's first ``state``, asked after the event, said the old name)
                self.session_name = event["name"]
            await self.write({"t": "event", "e": event})

    async def new_session(self, session_id: str, history: list[dict[str, Any]]) -> None:
        self.session_id, self.history = session_id, list(history)
        await self.write({"t": "session", **self.session_info("new")})

    async def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        while True:
            raw = await self.proc.stdout.readline()
            if not raw:
                return
            line = json.loads(raw)
            self.lines.append(line)
            self._line_event.set()
            if line.get("t") == "ready" and self._ready and not self._ready.done():
                self._ready.set_result(line)
            elif line.get("t") == "req":
                self.requests.append(line)
                asyncio.create_task(self._answer(line))

    async def _answer(self, req: dict[str, Any]) -> None:
        op, data, ok, error = req["op"], None, True, None
        if op == "history":
            data = {"messages": copy.deepcopy(self.history)}
        elif op == "state":
            data = {
                "session_name": self.session_name,
                "model": "fake/fake-model",
                "is_streaming": self.streaming,
                "context_usage": {"tokens": 1234, "contextWindow": 128000, "percent": 0.96},
            }
        elif op == "commands":
            data = {"commands": self.session_info("")["commands"]}
        elif op == "tools":
            data = {"tools": self.session_info("")["tools"]}
        elif op == "send":
            await asyncio.sleep(self.send_delay)
            ok, error = self.send_ok, (None if self.send_ok else "pi refused")
            duplicate = req.get("prompt_id") in self.delivered_ids
            if ok and not duplicate:
                self.delivered.append(req)
                self.delivered_ids.add(req.get("prompt_id"))
            data = {"deliverAs": req.get("deliverAs"), "duplicate": duplicate}
        elif op == "set_session_name":
            self.session_name = req["name"]
        try:
            await self.write({"t": "res", "id": req["id"], "ok": ok, "data": data, "error": error})
        except (ConnectionError, AssertionError):
            pass

    def sent(self, op: str = "send") -> list[dict[str, Any]]:
        return [r for r in self.requests if r["op"] == op]

    async def wait_for_request(self, op: str, count: int = 1, timeout: float = 5.0) -> list[dict[str, Any]]:
        """Bounded wait until the bridge made ``count`` requests of kind ``op``."""
        deadline = asyncio.get_running_loop().time() + timeout
        while len(self.sent(op)) < count:
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"bridge sent {len(self.sent(op))} {op} requests, expected {count}")
            await asyncio.sleep(0.02)
        return self.sent(op)

    async def close_stdin(self) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.close()

    async def wait_exit(self, timeout: float = 5.0) -> int:
        assert self.proc is not None
        return await asyncio.wait_for(self.proc.wait(), timeout)

    async def stderr_text(self) -> str:
        assert self.proc is not None and self.proc.stderr is not None
        return (await asyncio.wait_for(self.proc.stderr.read(), 5.0)).decode(errors="replace")

    def log_lines(self) -> list[dict[str, Any]]:
        if not self.log_path.exists():
            return []
        return [json.loads(x) for x in self.log_path.read_text().splitlines() if x.strip()]

    async def restart(self) -> None:
        """Kill the bridge (as a crash would) and start a new one; the shim keeps its state,
        passes the same node id and the previous port as PI_SOCKET_PREFERRED_PORT."""
        old_port = self.port
        await self.stop()
        self.extra_env = {**self.extra_env, "PI_SOCKET_PREFERRED_PORT": str(old_port)}
        await self.start()

    async def stop(self) -> None:
        """Kill the bridge if it is still running (teardown never leaves a process behind)."""
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            try:
                await asyncio.wait_for(self.proc.wait(), 5.0)
            except TimeoutError:
                pass
        if self._reader is not None:
            self._reader.cancel()
