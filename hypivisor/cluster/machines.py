"""Cluster mode's machines (specs/cluster.md §12, specs/machines.md): every machine listed and usable from every
hypivisor. I/O glue around the pure :class:`~hypivisor.cluster.machine_mirror.RemoteMachines`.

* **Own machines out**: the machines this hypivisor holds live (its own machine, and every machine whose service
  is connected here) are put into the shared roster under ``<machine>.=`` in ``HP_AGENTS_<site>`` (so this
  hypivisor's lease keeps them alive and takes them along when it dies, as its agents), rewritten when what the
  local book says of it changes (facts, online/offline; not the agent count, which every hypivisor takes from its
  own roster). Only those: a machine this hypivisor knows from agents alone is never put. Before a machine's first
  put its ``hp.machine.<site>.<machine>.rpc`` subject is served here (interest first).
* **Others' machines in**: ``list_machines`` (and the machines a ``search`` asks) merge the other hypivisors'
  records; each change is a ``machine_joined`` / ``machine_updated`` / ``machine_left`` to the dashboards here, and
  so is each change of the local book (agent counts included) as the records show it (``MachineBook.view``).
* **Requests**: a dashboard's ``list_directories``, ``spawn_agent``, ``remove_worktree``, ``list_sessions``,
  ``read_session`` and ``resume_session`` for a machine held by another hypivisor are that hypivisor's method
  call (``{"op": "call", method, params}``), answered with its result or its error (code and message); a
  ``search``'s per-machine question is ``{"op": "request", method: "search", …}``, so the frames of every machine
  are sent by the asking hypivisor. Nobody serving, no answer in time: 1012, as for an offline machine. A spawn
  through another hypivisor returns once the new agent is on this hypivisor's roster too (the shared roster).
* **Index progress** of a machine held here is published as ``hp.evt.<site>.<machine>.=.index_progress`` and shown
  by every other hypivisor to its dashboards.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any

import orjson
import structlog
from pydantic import BaseModel

from hypivisor.cluster.backplane import AgentChange, BackplaneError, Event, NoOwner, RequestTimeout
from hypivisor.cluster.machine_mirror import RemoteMachines, machine_record, strong
from hypivisor.cluster.names import ROOT, machine_key, token
from hypivisor.cluster.writer import LatestWriter
from hypivisor.machines import MachineError
from pi_socket.errors import HypiError
from pi_socket.protocol import (
    ErrorCode,
    IndexProgressEvent,
    MachineInfo,
    MachineJoinedEvent,
    MachineLeftEvent,
    MachineUpdatedEvent,
    SearchParams,
)

if TYPE_CHECKING:
    from hypivisor.cluster.link import ClusterLink

log = structlog.get_logger(part="cluster")

MARGIN_S = 5.0  # the asking hypivisor waits the machine's own timeout plus this
ROSTER_WAIT_S = 5.0  # a spawned agent appears in this hypivisor's roster within this (else the answer goes anyway)
INDEX_KIND = "index_progress"
MAX_ANSWER = 960 * 1024  # an answer between hypivisors stays below NATS's default 1 MiB message limit
CLUSTER_CONN = ("cluster", "machine-rpc")  # the "connection" a forwarded method call runs under
# methods a dashboard calls for one machine (``params.machine``); answered by the hypivisor holding it
ROUTED = ("list_directories", "spawn_agent", "remove_worktree", "list_sessions", "read_session", "resume_session")
SPAWNS = ("spawn_agent", "resume_session", "remove_worktree")  # refused here first when this one may not spawn
# set while a forwarded request runs: it is answered here, never forwarded again
_forwarded: contextvars.ContextVar[bool] = contextvars.ContextVar("hp_cluster_forwarded", default=False)


def _unavailable(message: str) -> HypiError:
    return HypiError(ErrorCode.AGENT_UNAVAILABLE, message)


class ClusterMachines:
    """One hypivisor's side of the shared machine list (see the module docstring)."""

    def __init__(self, link: ClusterLink) -> None:
        self.link = link
        self.service = link.service
        self.backplane = link.backplane
        self.site = link.site
        self.book = self.service.machines.book
        self.mirror = RemoteMachines(link.backplane.hv_id, self.book.own_name)
        self._put: dict[str, dict[str, Any]] = {}  # machine → the record last queued here (this hv owns it)
        self._served: dict[str, Any] = {}  # machine → stop serving its rpc subject
        self._writes: LatestWriter[str, dict[str, Any]] = LatestWriter(self._write, "cluster-machines-writer")
        self._stop_index: Any = None

    # -- lifecycle -------------------------------------------------------------------------------------------
    async def start(self) -> None:
        """Hooks into the local book, desk and hub, then puts this hypivisor's own machine."""
        self.book.merge = self.mirror.merged
        self.book.view = self.mirror.view
        self.service.machines.forward = self.forward
        self.service.hub.taps.append(self._on_local_events)
        self._stop_index = await self.backplane.subscribe_events(
            f"{ROOT}.evt.{token(self.site)}.*.=.{INDEX_KIND}", self._on_index
        )
        self._writes.start()
        self._sync(self.book.own_name)

    async def close(self) -> None:
        await self._writes.close()

    # -- own machines → the backplane --------------------------------------------------------------------------
    def _on_local_events(self, events: list[BaseModel]) -> None:
        for event in events:
            if isinstance(event, (MachineJoinedEvent, MachineUpdatedEvent)):
                self._sync(event.machine.name)
            elif isinstance(event, MachineLeftEvent):
                self._sync(event.name)
            elif isinstance(event, IndexProgressEvent) and strong(self.book.info(event.machine)):
                self._publish_index(event)

    def _sync(self, name: str) -> None:
        """Put what the local book says of ``name`` when this hypivisor holds it live, or held it last (then it
        says offline); nothing when another hypivisor's record is newer."""
        info = self.book.info(name)
        if info is None or not (strong(info) or name in self._put):
            return
        digest = self.book.secret_digest(name)
        record = machine_record(info.model_copy(update={"service": True}) if info.own else info,
                                digest.hex() if digest else "")  # fmt: skip
        if self._put.get(name) == record:
            return
        self._put[name] = record
        self._writes.put(name, record)

    async def _write(self, name: str, record: dict[str, Any]) -> None:
        if name not in self._served:  # interest first: requests are answered before the machine shows
            self._served[name] = await self.backplane.serve_machine(self.site, name, self._handler(name))
        await self.backplane.register_agent(machine_key(self.site, name), record)

    def _publish_index(self, event: IndexProgressEvent) -> None:
        data = orjson.dumps({**event.model_dump(mode="json"), "hv": self.backplane.hv_id})
        task = asyncio.get_running_loop().create_task(
            self.backplane.publish_event(machine_key(self.site, event.machine), INDEX_KIND, data)
        )
        task.add_done_callback(lambda t: t.cancelled() or t.exception())

    # -- the other hypivisors' machines → this hypivisor ---------------------------------------------------------
    def on_change(self, change: AgentChange) -> None:
        """A change of a machine record in the shared roster (``change.key.is_machine``)."""
        name = change.key.machine
        if change.key.site != self.site:
            return
        hv = change.record.get("hv") if change.record is not None else None
        if change.op == "put" and hv != self.backplane.hv_id:
            self._put.pop(name, None)  # another hypivisor holds it now: this one stops writing its offline state
            stop = self._served.pop(name, None)  # and answering its requests (the queue group would split them)
            if stop is not None:
                task = asyncio.get_running_loop().create_task(stop())
                task.add_done_callback(lambda t: t.cancelled() or t.exception())
        events, reassert = self.mirror.apply(change.op, name, change.record, self.book.info(name))
        if reassert:
            self._put.pop(name, None)
            self._sync(name)
        if events:
            self.service.hub.publish(events)

    async def _on_index(self, event: Event) -> None:
        try:
            data = orjson.loads(event.data)
            if data.get("hv") == self.backplane.hv_id:
                return
            progress = IndexProgressEvent.model_validate({k: v for k, v in data.items() if k != "hv"})
        except (ValueError, TypeError, AttributeError):
            return
        if self.mirror.get(progress.machine) is not None and not strong(self.book.info(progress.machine)):
            self.service.hub.publish([progress])

    def check_register(self, name: str, secret: str | None) -> None:
        """``register_machine`` here for a name another hypivisor lists: only with that name's secret (1002)."""
        if not strong(self.book.info(name)) and not self.mirror.secret_ok(name, secret):
            raise MachineError(ErrorCode.FORBIDDEN,
                                   f"machine {name[:255]!r} belongs to another service (register with its secret)")  # fmt: skip

    # -- requests for a machine held elsewhere --------------------------------------------------------------------
    def _remote(self, name: str | None) -> MachineInfo | None:
        """The machine's record when another hypivisor holds it and this one does not (None: answer here)."""
        if not name or _forwarded.get() or self.book.is_own(name) or self.book.connection_of(name) is not None:
            return None
        remote = self.mirror.get(name)
        return remote.info if remote is not None else None

    def route(self, method: str, params: BaseModel) -> Awaitable[Any] | None:
        """The answer of the hypivisor holding ``params.machine`` for a dashboard's method, or None (local)."""
        if method not in ROUTED:
            return None
        name = getattr(params, "machine", None)
        info = self._remote(name)
        if info is None or (method in SPAWNS and not self.service.spawn_allowed()):
            return None  # here: its own rules (1012 for an unknown machine, 1002 when spawning is refused)
        return self._call(name or "", info, method, params.model_dump(mode="json", exclude_unset=True))

    async def _call(self, name: str, info: MachineInfo, method: str, params: dict[str, Any]) -> Any:
        if not info.online:
            raise _unavailable(f"machine {name[:255]!r} is offline (its machine service is not connected)")
        answer = await self._ask(name, {"op": "call", "method": method, "params": params}, self._timeout(method))
        if method in ("spawn_agent", "resume_session") and isinstance(answer, dict):
            await self._on_roster(answer.get("node_id"))
            remote = self.link.remote(answer["node_id"]) if isinstance(answer.get("node_id"), str) else None
            if remote is not None and isinstance(answer.get("node"), dict):  # marked as this roster lists it
                answer["node"]["hv"] = remote.hv  # (the holder's answer is newer than its last put: tmux_session)
        return answer

    def _timeout(self, method: str) -> float:
        from hypivisor.machine_desk import LIST_TIMEOUT_S, SPAWN_MARGIN_S
        from hypivisor.sessions import READ_TIMEOUT_S
        from hypivisor.worktree import GIT_TIMEOUT_S

        spawn = self.service.config.spawn_timeout + SPAWN_MARGIN_S
        return MARGIN_S + {"spawn_agent": spawn, "resume_session": spawn + LIST_TIMEOUT_S,
                           "remove_worktree": GIT_TIMEOUT_S * 3, "read_session": READ_TIMEOUT_S}.get(method, LIST_TIMEOUT_S)  # fmt: skip

    async def _on_roster(self, node_id: object) -> None:
        """Wait (bounded) until a spawned agent is on this hypivisor's roster: its own registry or the mirror."""
        if not isinstance(node_id, str):
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + ROSTER_WAIT_S
        while self.service.registry.get(node_id) is None and self.link.remote(node_id) is None:
            if loop.time() >= deadline:
                log.warning("spawned agent not on this roster in time", node_id=node_id[:128])
                return
            await asyncio.sleep(0.02)

    def forward(self, machine: str, method: str, params: dict[str, Any], timeout: float) -> Awaitable[Any] | None:
        """``MachineDesk.request`` for a machine held elsewhere (a search's per-machine question), or None."""
        info = self._remote(machine)
        if info is None:
            return None
        return self._request(machine, info, method, params, timeout)

    async def _request(self, name: str, info: MachineInfo, method: str, params: dict[str, Any], timeout: float) -> Any:
        if not info.online:
            raise _unavailable(f"machine {name[:255]!r} is offline (its machine service is not connected)")
        request = {"op": "request", "method": method, "params": params, "timeout": timeout}
        return await self._ask(name, request, timeout + MARGIN_S)

    async def _ask(self, name: str, request: dict[str, Any], timeout: float) -> Any:
        try:
            raw = await self.backplane.request_machine(self.site, name, orjson.dumps(request), timeout)
        except NoOwner:
            raise _unavailable(f"machine {name[:255]!r} is offline (no hypivisor serves it now)") from None
        except RequestTimeout:
            raise _unavailable(f"machine {name[:255]!r} did not answer within {timeout:g} s") from None
        except BackplaneError as exc:
            raise _unavailable(f"machine {name[:255]!r} cannot be reached: {exc}"[:500]) from None
        try:
            answer = orjson.loads(raw)
        except ValueError:
            answer = None
        if not isinstance(answer, dict):
            raise HypiError(ErrorCode.INTERNAL_ERROR, f"the hypivisor holding machine {name[:255]!r} answered oddly")
        error = answer.get("error")
        if isinstance(error, dict) and isinstance(error.get("code"), int):
            raise HypiError(error["code"], str(error.get("message"))[:4000])
        if error is not None:
            raise HypiError(ErrorCode.INTERNAL_ERROR, f"machine {name[:255]!r}: {str(error)[:500]}")
        return answer.get("result")

    # -- this hypivisor answering for a machine it holds -----------------------------------------------------------
    def _handler(self, name: str) -> Any:
        async def handle(data: bytes) -> bytes:
            _forwarded.set(True)  # this task only: what it asks is answered here, never forwarded again
            try:
                request = orjson.loads(data)
                if not isinstance(request, dict) or not isinstance(request.get("params"), dict):
                    raise HypiError(ErrorCode.INVALID_REQUEST, "a machine request needs op, method and params")
                result = await self._answer(name, request)
                out = orjson.dumps({"result": result})
                if len(out) > MAX_ANSWER:  # past NATS's message limit the answer would never arrive
                    raise HypiError(ErrorCode.INTERNAL_ERROR, f"the answer ({len(out)} bytes) is too large to pass "
                                    "between hypivisors; ask for less (limit, a smaller page)")  # fmt: skip
            except HypiError as exc:
                return orjson.dumps({"error": {"code": int(exc.code), "message": exc.message}})
            return out

        return handle

    async def _answer(self, name: str, request: dict[str, Any]) -> Any:
        op, method, params = request.get("op"), request.get("method"), request["params"]
        if op == "call" and method in ROUTED and params.get("machine") == name:
            return await self.service.dispatch(method, params, CLUSTER_CONN, "cluster")
        if op == "request" and isinstance(method, str):
            timeout = min(float(request.get("timeout") or 15.0), 600.0)
            if self.book.is_own(name):
                if method != "search":
                    raise HypiError(ErrorCode.METHOD_NOT_FOUND, f"{method[:64]!r} is not asked of a hypivisor")
                from pi_socket.sessions import query
                from pi_socket.sessions.store import FRESH_FOR

                store = self.service.sessions.store
                await store.refresh(FRESH_FOR)
                try:
                    return await store.search(SearchParams.model_validate(params))
                except query.QueryError as exc:  # as a machine service answers it
                    raise HypiError(ErrorCode.INVALID_PARAMS, str(exc)) from None
            return await self.service.machines.request(name, method, params, timeout)
        raise HypiError(ErrorCode.INVALID_REQUEST, f"unknown machine request {str(op)[:32]!r}")
