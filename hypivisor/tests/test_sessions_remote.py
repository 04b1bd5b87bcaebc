"""Another machine's sessions through the hypivisor, on a real Service with a scripted machine connection (no
sockets): requests go to that machine without ``machine`` and with a page that fits a frame; its answers get the
machine's name and the live writers the roster knows (agents of that machine only); a search streams one frame
per machine, a slow one after the others."""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson

from hypivisor.config import Config
from hypivisor.service import Service


class ScriptedMachine:
    """A machine service's connection: records machine_request frames, answers from a script."""

    def __init__(self, svc: Service, conn: str, answers: dict, delay: dict | None = None):
        self.svc, self.conn, self.answers, self.delay = svc, conn, answers, delay or {}
        self.requests: list[tuple[str, dict]] = []
        svc.machines.attach(conn, self.send)

    def send(self, frame: bytes) -> bool:
        msg = orjson.loads(frame)
        if msg.get("event") == "machine_request" and msg["rid"]:
            self.requests.append((msg["method"], msg["params"]))
            asyncio.get_running_loop().create_task(self.reply(msg))
        return True

    async def reply(self, msg: dict) -> None:
        await asyncio.sleep(self.delay.get(msg["method"], 0))
        result = self.answers[msg["method"]](msg["params"])
        await self.svc.dispatch("machine_reply", {"rid": msg["rid"], "result": result}, self.conn, "127.0.0.1")


def _service(tmp_path: Path) -> Service:
    cfg = Config(host="127.0.0.1", port=1, dashboard_dir=tmp_path / "none", state_dir=tmp_path / "state")
    return Service(cfg, env={"HOME": str(tmp_path), "PI_SOCKET_MACHINE": "hub"})


SESSION = {"id": "a" * 24, "path": "/home/u/.pi/agent/sessions/--w--/s.jsonl", "cwd": "/home/u/w", "message_count": 2,
           "machine": "liar", "live_node_id": "made-up"}  # fmt: skip


async def test_list_and_read_on_another_machine_with_its_live_writers(tmp_path):
    svc = _service(tmp_path)
    try:
        await svc.dispatch("register_machine", {"name": "alpha"}, "conn-a", "127.0.0.1")
        m = ScriptedMachine(svc, "conn-a", {
            "list_sessions": lambda p: {"sessions": [dict(SESSION)], "cursor": None, "machine": "liar"},
            "read_session": lambda p: {"path": SESSION["path"], "messages": [], "machine": "liar"},
        })  # fmt: skip
        # an agent of alpha writes the file; one of another machine with the same path does not count
        for node_id, machine in (("n-alpha", "alpha"), ("n-other", "zeta")):
            await svc.dispatch("register", {"id": node_id, "machine": machine, "cwd": "/home/u/w", "port": 1,
                                            "session_file": SESSION["path"]}, f"b-{node_id}", "127.0.0.1")  # fmt: skip
        listed = await svc.dispatch("list_sessions", {"machine": "alpha", "limit": 500, "cwd": "/home/u/w"}, "d", "::1")
        assert m.requests == [("list_sessions", {"cwd": "/home/u/w", "limit": 200})]  # no machine, a page of ≤ 200
        [s] = listed["sessions"]
        assert listed["machine"] == s["machine"] == "alpha" and s["live_node_id"] == "n-alpha"
        page = await svc.dispatch("read_session", {"machine": "alpha", "path": "a" * 24}, "d", "::1")
        assert m.requests[-1] == ("read_session", {"path": "a" * 24, "limit": 100})
        assert page["machine"] == "alpha" and page["live_node_id"] == "n-alpha"
        # the live writer: resume names it and starts nothing (the machine is asked only where the file is)
        m.answers["resume_target"] = lambda p: {"path": SESSION["path"], "cwd": "/home/u/w"}
        again = await svc.dispatch("resume_session", {"machine": "alpha", "path": "a" * 24}, "d", "127.0.0.1")
        assert again["live"] and again["node_id"] == "n-alpha"
        assert [r[0] for r in m.requests] == ["list_sessions", "read_session", "resume_target"]
    finally:
        svc.sessions.close()


async def test_search_streams_a_frame_per_machine_the_slow_one_last(tmp_path):
    svc = _service(tmp_path)
    frames: list[dict] = []
    svc.senders["d"] = lambda data: frames.append(orjson.loads(data)) or True
    try:
        for name in ("alpha", "beta"):
            await svc.dispatch("register_machine", {"name": name}, f"conn-{name}", "127.0.0.1")
        hit = {"id": "b" * 24, "path": "/x.jsonl", "entry_id": "e1", "snippet": "the okapi", "score": 1.0}
        ScriptedMachine(svc, "conn-alpha", {"search": lambda p: {"hits": []}})
        slow = ScriptedMachine(svc, "conn-beta", {"search": lambda p: {"hits": [dict(hit, machine="liar")]}},
                               delay={"search": 0.5})  # fmt: skip
        answer = await svc.dispatch("search", {"query": "okapi", "role": "user"}, "d", "127.0.0.1")
        assert answer["machines"] == ["hub", "alpha", "beta"]
        for _ in range(200):
            if len(frames) == 3:
                break
            await asyncio.sleep(0.02)
        assert [f["machine"] for f in frames][-1] == "beta" and len(frames) == 3
        assert slow.requests == [("search", {"query": "okapi", "limit": 20, "role": "user"})]
        beta = frames[-1]
        assert beta["done"] and not beta["unavailable"] and beta["hits"][0]["machine"] == "beta"
    finally:
        svc.sessions.close()
