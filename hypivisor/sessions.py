"""Past pi sessions of every machine: list, read, search, resume (specs/sessions.md).

The hypivisor's own machine is served here, by a :class:`~pi_socket.sessions.store.SessionStore` over its own
session files (the index in the hypivisor's state dir). Every other machine is served by its machine service,
with the same store over *its* files and its own index: the hypivisor passes the request on
(``machine_request``, hypivisor/machine_desk.py) and adds what only it knows, the agents writing those files now
(``live_node_id``, from the roster). A machine verifies every session name itself: its own issued ids, or paths
under its own session directories.

``search`` asks every machine at once and streams one ``search_results`` frame per machine as each answers; a
slow machine never holds the others (each has :data:`SEARCH_TIMEOUT_S`), and an offline one answers at once
with ``unavailable: true`` and the reason in ``error``.
"""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import orjson
import structlog

from hypivisor import paths
from pi_socket import oplog
from pi_socket.errors import HypiError
from pi_socket.protocol import (
    ErrorCode,
    IndexProgressEvent,
    ListSessionsParams,
    MachineIndexProgressParams,
    NodeInfo,
    ReadSessionParams,
    ResumeSessionParams,
    SearchParams,
    SearchResultsEvent,
    SpawnAgentResult,
)
from pi_socket.sessions import query
from pi_socket.sessions.index import Progress
from pi_socket.sessions.store import FRESH_FOR, SessionError, SessionStore, check_query

if TYPE_CHECKING:
    from hypivisor.service import Service

log = structlog.get_logger(part="sessions")

LIST_TIMEOUT_S = 15.0  # a machine's list_sessions / resume_target answer
READ_TIMEOUT_S = 30.0  # a machine's read_session answer (parses a large file the first time)
SEARCH_TIMEOUT_S = 15.0  # a machine's search answer; after it that machine's frame says it did not answer
MAX_MACHINES_SEARCHED = 100
REMOTE_LIST_LIMIT = 200  # sessions per page from another machine: its answer stays below a frame's 1 MiB

__all__ = ["SessionDesk", "SessionError", "own_machine"]


def own_machine(env: dict[str, str]) -> str:
    """This machine's name as bridges report it: ``PI_SOCKET_MACHINE``, else the host name."""
    return (env.get("PI_SOCKET_MACHINE") or "").strip()[:255] or socket.gethostname() or "localhost"


class SessionDesk:
    def __init__(self, service: Service):
        self.service = service
        self.machine = own_machine(service.env)
        self.store = SessionStore(service.env, service.home, service.config.state_dir, self.machine, self._announce)
        self._resuming: set[tuple[str, str]] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    # -- the own machine's index ------------------------------------------------------------------------------

    @property
    def progress(self) -> Progress:
        return self.store.progress

    def index(self):  # noqa: ANN201 - the store's Index (tests and the bench read it)
        return self.store.index()

    async def refresh(self, max_age: float = 0.0) -> None:
        await self.store.refresh(max_age)

    def start(self) -> asyncio.Task[None]:
        return self.store.start()

    def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        self.store.close()

    def _announce(self, p: Progress, done: bool) -> None:
        self.service.hub.publish([IndexProgressEvent(machine=self.machine, files_done=p.files_done,
                                                     files_total=p.files_total, done=done)])  # fmt: skip

    def machine_progress(self, machine: str | None, params: MachineIndexProgressParams) -> dict[str, Any]:
        """Another machine's index build, told by its service: pushed to dashboards under that machine's name
        (only a connection that registered a machine speaks for one)."""
        if machine is None or machine == self.machine:
            raise SessionError(ErrorCode.FORBIDDEN, "only a machine service reports its index's progress")
        self.service.hub.publish([IndexProgressEvent(machine=machine, files_done=params.files_done,
                                                     files_total=params.files_total, done=params.done)])  # fmt: skip
        return {"status": "ok"}

    # -- helpers ---------------------------------------------------------------------------------------------

    def is_own(self, machine: str | None) -> bool:
        return machine is None or machine == self.machine

    def live_writers(self, machine: str) -> dict[str, NodeInfo]:
        """Session file → the active agent of ``machine`` writing it now (the roster's ``session_file``). Paths
        of the own machine are resolved here; another machine's are compared as that machine's bridge
        reported them (normalised), which is how its service names them too (resolved on that machine)."""
        out: dict[str, NodeInfo] = {}
        others = set(self.service_machines())
        for node in self.service.registry.nodes():
            sf = getattr(node, "session_file", None)
            if not sf or node.status != "active":
                continue
            node_machine = getattr(node, "machine", None) or self.machine
            # an agent of no machine service's name runs here (a bridge may name the host, not the service)
            if node_machine != machine and not (machine == self.machine and node_machine not in others):
                continue
            out[os.path.realpath(sf) if machine == self.machine else os.path.normpath(sf)] = node
        return out

    def _live_id(self, live: dict[str, NodeInfo], path: object) -> str | None:
        if not isinstance(path, str):
            return None
        node = live.get(path) or live.get(os.path.normpath(path))
        return node.id if node is not None else None

    async def _ask(self, machine: str, method: str, params: dict[str, Any], timeout: float) -> dict[str, Any]:
        """One request to ``machine``'s service; its refusal is the caller's answer (code and message)."""
        answer = await self.service.machines.request(machine, method, params, timeout)
        if not isinstance(answer, dict):
            raise SessionError(ErrorCode.INTERNAL_ERROR, f"machine {machine[:255]!r} answered {method} oddly")
        return answer

    # -- methods ---------------------------------------------------------------------------------------------

    async def list_sessions(self, params: ListSessionsParams) -> dict[str, Any]:
        """One machine's sessions, newest first (default: the own machine). Lists are not merged across
        machines here: a cursor is one machine's; Pi-DE asks each machine and merges."""
        machine = params.machine or self.machine
        if self.is_own(machine):
            result = await self.store.list_sessions(params)
        else:
            data = params.model_dump(mode="json", exclude={"machine"}, exclude_none=True)
            data["limit"] = min(params.limit, REMOTE_LIST_LIMIT)  # a smaller page (with its cursor) fits a frame
            result = await self._ask(machine, "list_sessions", data, LIST_TIMEOUT_S)
            result["machine"] = machine
        live = self.live_writers(machine)
        raw = result.get("sessions")
        sessions = result["sessions"] = [s for s in raw if isinstance(s, dict)] if isinstance(raw, list) else []
        for s in sessions:
            s["machine"] = machine
            s["live_node_id"] = self._live_id(live, s.get("path"))
        return result

    async def read_session(self, params: ReadSessionParams) -> dict[str, Any]:
        machine = params.machine or self.machine
        if self.is_own(machine):
            result = await self.store.read_session(params)
        else:
            data = params.model_dump(mode="json", exclude={"machine"}, exclude_none=True)
            result = await self._ask(machine, "read_session", data, READ_TIMEOUT_S)
            result["machine"] = machine
        result["live_node_id"] = self._live_id(self.live_writers(machine), result.get("path"))
        return result

    async def resume_session(self, params: ResumeSessionParams, spawn: Callable[..., Any]) -> dict[str, Any]:
        """Continue a past session in a new pi (``pi --session``), or fork it (``pi --fork``), on the session's
        machine. pi does not lock session files: when an active agent is writing this file, no second writer
        starts; the answer names that agent (``live: true``) unless a fork was asked for."""
        machine = params.machine or self.machine
        own = self.is_own(machine)
        if own:
            target = await self.store.resume_target(params.path)
        else:
            target = await self._ask(machine, "resume_target", {"path": params.path}, LIST_TIMEOUT_S)
            if not isinstance(target.get("path"), str) or not isinstance(target.get("cwd"), str):
                raise SessionError(ErrorCode.INTERNAL_ERROR, f"machine {machine[:255]!r} named no session to resume")
        path, cwd = target["path"], target["cwd"]
        live_id = self._live_id(self.live_writers(machine), path)
        if live_id is not None and not params.fork:
            entry = self.service.registry.get(live_id)
            node = entry.node if entry is not None else None
            return {"live": True, "forked": False, "node_id": live_id,
                    "node": node.model_dump(mode="json") if node is not None else None, "tmux_session": None,
                    "path": node.cwd if node is not None else cwd, "session_file": path,
                    "message": "a live agent is writing this session: open it, or fork the session"}  # fmt: skip
        key = (machine, path)
        if not params.fork and key in self._resuming:
            raise SessionError(ErrorCode.CONFLICT, "this session is being resumed already; open that agent")
        if not params.fork:
            self._resuming.add(key)
        try:
            if own:
                try:
                    spawn_target = await asyncio.to_thread(paths.spawn_target, cwd, None, self.service.home)
                except paths.PathError as exc:
                    raise SessionError(exc.code, f"cannot resume here: {exc.message}") from None
                result = await spawn(spawn_target, path, params.fork)
            else:
                result = await self._spawn_on(machine, cwd, path, params.fork)
        finally:
            self._resuming.discard(key)
        return {**result, "live": False, "forked": params.fork, "session_file": path}

    async def _spawn_on(self, machine: str, cwd: str, session_file: str, fork: bool) -> dict[str, Any]:
        """``spawn_agent`` on the machine with the session file it named (it validates it again: under its
        home, a pi session made in that folder) and ``fork``; the node is the one that registered with the
        spawn's secret."""
        data: dict[str, Any] = {"path": cwd, "session_file": session_file}
        if fork:
            data["fork"] = True
        log.info("resuming a session on a machine", machine=machine[:255], fork=fork)
        answer = await self.service.machines.spawn(machine, data, self.service.config.spawn_timeout)
        node_id = answer.get("node_id")
        entry = self.service.registry.get(node_id) if isinstance(node_id, str) else None
        if entry is None:
            raise SessionError(ErrorCode.SPAWN_FAILED, f"machine {machine[:255]!r} answered with an unknown agent")
        session = answer.get("tmux_session")
        return SpawnAgentResult(
            node_id=entry.node.id, tmux_session=session if isinstance(session, str) else None,
            path=str(answer.get("path") or entry.node.cwd), node=entry.node,
        ).model_dump(mode="json")  # fmt: skip

    def search_machines(self, machine: str | None) -> list[str]:
        """The machines a search asks: one, or the own machine and every machine a service registered (online
        or not: an offline one answers at once that it is offline)."""
        if machine is not None:
            return [machine]
        return [self.machine, *self.service_machines()[: MAX_MACHINES_SEARCHED - 1]]

    def service_machines(self) -> list[str]:
        """Every other machine a service registered, online (``service``) or offline (a machine known only
        from its agents is online without a service: it has no sessions to serve)."""
        return [m.name for m in self.service.machines.book.machines()
                if not m.own and m.name != self.machine and (m.service or not m.online)]  # fmt: skip

    async def search(self, params: SearchParams, send: Callable[[bytes], bool] | None) -> dict[str, Any]:
        """Answers ``{query_id, machines}`` at once; the hits follow as ``search_results`` frames to this
        connection only, one per machine as each answers."""
        check_query(params.query)
        if send is None:
            raise SessionError(ErrorCode.INVALID_REQUEST, "search streams its results: call it over /ws")
        query_id = uuid.uuid4().hex[:16]
        machines = self.search_machines(params.machine)
        for name in machines:
            task = asyncio.get_running_loop().create_task(self._search_one(name, query_id, params, send))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return {"query_id": query_id, "machines": machines}

    async def _search_one(self, machine: str, query_id: str, params: SearchParams,
                          send: Callable[[bytes], bool]) -> None:  # fmt: skip
        error: str | None = None
        unavailable = False
        hits: list[dict[str, Any]] = []
        indexing = None
        try:
            if self.is_own(machine):
                await self.store.refresh(FRESH_FOR)
                answer = await self.store.search(params)
            else:
                data = params.model_dump(mode="json", exclude={"machine"}, exclude_none=True)
                answer = await self._ask(machine, "search", data, SEARCH_TIMEOUT_S)
            raw_hits = answer.get("hits")
            hits = (
                [{**h, "machine": machine} for h in raw_hits if isinstance(h, dict)]
                if isinstance(raw_hits, list)
                else []
            )
            indexing = answer.get("indexing") if isinstance(answer.get("indexing"), dict) else None
        except query.QueryError as exc:
            error = str(exc)
        except HypiError as exc:
            error = exc.message
            unavailable = exc.code == ErrorCode.AGENT_UNAVAILABLE  # offline, gone, or no answer in time (1012)
        except Exception as exc:  # noqa: BLE001 - one machine's failure is its frame's error, not the others'
            oplog.log_boundary_error("hypivisor.sessions.search", exc)
            error = "the search failed on this machine; see hypivisor.jsonl"
        try:
            frame = SearchResultsEvent(query_id=query_id, machine=machine, hits=hits, done=True, error=error,
                                       unavailable=unavailable, indexing=indexing)  # fmt: skip
        except ValueError:  # a machine's hits not in the wire's shape: its frame says so, the others are unharmed
            frame = SearchResultsEvent(query_id=query_id, machine=machine, hits=[], done=True,
                                       error="the machine's answer was not understood")  # fmt: skip
        send(orjson.dumps(frame.model_dump(mode="json")))
