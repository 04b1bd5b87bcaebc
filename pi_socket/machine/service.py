"""``pi-socket serve``: this machine's member of the hypivisor (specs/machines.md).

It dials the hypivisor (``HYPIVISOR_WS``: one URL, or a list tried in order, ``pi_socket.hypivisors``), registers
the machine (``register_machine``: name, OS, pi versions, tmux, home) and answers what the hypivisor asks over
that connection (``machine_request`` events, answered with ``machine_reply``): list this machine's folders, and
start pi here. The path policy is this machine's own (``$HOME``, hypivisor/paths.py) and pi is started exactly as
the hypivisor starts it on its own machine (hypivisor/spawner.py, hypivisor/spawn_cmd.py): same tmux hardening,
same explicit environment, same spawn secret.

It can never harm anything: the hypivisor being down, refusing or sending garbage ends in a backoff sleep and a
new attempt (first retry after 1 s, doubling, at most 10 s); a failing request is answered with an error and the
connection stays.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import socket
from collections.abc import Mapping
from typing import Any

import orjson
import structlog
from pydantic import ValidationError
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from hypivisor import paths, spawn_cmd, worktree
from hypivisor.spawner import Spawner, SpawnError
from pi_socket import oplog
from pi_socket.errors import HypiError
from pi_socket.hypivisors import Failover
from pi_socket.protocol import ErrorCode, MachineFacts, NodeInfo

from . import facts as machine_facts
from .lock import state_dir
from .sessions import METHODS as SESSION_METHODS
from .sessions import MachineSessions

RPC_TIMEOUT_S = 10.0
MAX_SPAWN_TIMEOUT_S = 600.0
DEFAULT_SPAWN_TIMEOUT_S = 30.0
MAX_REQUESTS = 32  # requests from the hypivisor running at once; more are refused with 1008
log = structlog.get_logger(part="machine")  # lazy: bound after oplog.configure


def machine_name(env: Mapping[str, str]) -> str:
    """``PI_SOCKET_MACHINE``, else the host name: the name agents of this machine use on the roster too."""
    return (env.get("PI_SOCKET_MACHINE") or "").strip()[:255] or socket.gethostname() or "localhost"


class MachineService:
    """One control connection to the hypivisor, kept up for the process's life."""

    def __init__(self, env: Mapping[str, str], url: str | tuple[str, ...], token: str | None,
                 reconnect_first_s: float = 1.0):  # fmt: skip
        self.env = dict(env)
        # one hypivisor or several, tried in order, the one that works kept (pi_socket.hypivisors)
        self.failover = Failover((url,) if isinstance(url, str) else url, reconnect_first_s, 10.0)
        self.token = token
        self.name = machine_name(env)
        self.home = paths.canonical_home(env.get("HOME") or os.path.expanduser("~"))
        self.facts = MachineFacts(home=self.home)
        self.spawner = Spawner(env.get("HYPI_SPAWN_COMMAND") or None, DEFAULT_SPAWN_TIMEOUT_S)
        self.backoff = self.failover.backoff
        self.secret: str | None = None
        self.registered = asyncio.Event()
        self._ws: ClientConnection | None = None
        self._ids = itertools.count(1)
        self._waiting: dict[str, asyncio.Future[Any]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._facts_task: asyncio.Task[MachineFacts] | None = None
        self.sessions = MachineSessions(self.env, self.home, state_dir(self.env), self.name, self.call)  # sessions.md

    @property
    def url(self) -> str:
        """The hypivisor connected now, or the one to try next."""
        return self.failover.url

    async def run(self) -> None:
        self.facts = machine_facts.quick(self.env, self.home)
        log.info("machine service started", machine=self.name, url=self.url, pid=os.getpid(), tmux=self.facts.tmux)
        self.sessions.start()  # this machine's session index, kept current in the background
        # pi's version may take a process start to learn: registration does not wait for it, an update follows
        self._facts_task = asyncio.create_task(asyncio.to_thread(machine_facts.gather, self.env, self.home))
        while True:
            try:
                await self._session()
            except asyncio.CancelledError:
                raise
            except (TimeoutError, OSError, ConnectionClosed, InvalidHandshake, InvalidURI, HypiError) as exc:
                self._note_down(exc)
            except Exception as exc:  # noqa: BLE001 - outer boundary: nothing the hypivisor does ends the service
                oplog.log_boundary_error("machine.session", exc)
            finally:
                self.registered.clear()
                self._ws = None
            await asyncio.sleep(self.failover.failed())  # the next of the list: at once, then the backoff

    def _note_down(self, exc: BaseException) -> None:
        if self.failover.failures == 0:
            status = getattr(getattr(exc, "response", None), "status_code", None)
            error = f"{type(exc).__name__}: {exc}"[:300]
            if status in (401, 403):
                log.warning("hypivisor refused this machine (check HYPI_TOKEN); retrying", url=self.url, status=status)
            else:
                log.info("hypivisor not reachable or lost; retrying", url=self.url, error=error)

    async def _session(self) -> None:
        # X-Hypi-Role: the machine service never reads the roster, so the hypivisor sends it none
        headers = {"X-Hypi-Role": "machine", **({"Authorization": f"Bearer {self.token}"} if self.token else {})}
        async with connect(self.url, additional_headers=headers, open_timeout=5, close_timeout=1, ping_interval=20,
                           max_size=2**24, proxy=None) as ws:  # fmt: skip
            self._ws = ws
            reader = asyncio.create_task(self._read(ws))
            try:
                params = {"name": self.name, **self.facts.model_dump(mode="json", exclude_none=True)}
                if self.secret:
                    params["machine_secret"] = self.secret
                result = await self.call("register_machine", params)
                issued = result.get("machine_secret") if isinstance(result, dict) else None
                if isinstance(issued, str) and issued:
                    self.secret = issued
                log.info("machine registered with hypivisor", machine=self.name, url=self.url)
                self.failover.succeeded()
                self.registered.set()
                facts = self._facts_task
                if facts is not None:  # learnt before or after this registration: sent once it is known
                    if not facts.done():
                        await asyncio.wait({reader, facts}, return_when=asyncio.FIRST_COMPLETED)
                    if facts.done() and not reader.done():
                        self._facts_task = None  # from now on every registration carries them
                        await self._update_facts(facts)
                await reader
            finally:
                reader.cancel()

    async def _update_facts(self, facts: asyncio.Task[MachineFacts]) -> None:
        try:
            self.facts = facts.result()
        except Exception as exc:  # noqa: BLE001 - the facts are a courtesy; the service goes on without them
            oplog.log_boundary_error("machine.facts", exc)
            return
        params = {"name": self.name, **self.facts.model_dump(mode="json", exclude_none=True)}
        if self.secret:
            params["machine_secret"] = self.secret
        await self.call("register_machine", params)
        log.info("machine facts updated", pi_versions=self.facts.pi_versions)

    async def call(self, method: str, params: dict[str, Any], timeout: float = RPC_TIMEOUT_S) -> Any:
        ws = self._ws
        if ws is None:
            raise ConnectionError("not connected to the hypivisor")
        req_id = f"{method}-{next(self._ids)}"
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiting[req_id] = future
        try:
            await ws.send(orjson.dumps({"id": req_id, "method": method, "params": params}).decode())
            return await asyncio.wait_for(future, timeout)
        finally:
            self._waiting.pop(req_id, None)

    async def _read(self, ws: ClientConnection) -> None:
        try:
            async for raw in ws:
                try:
                    msg = orjson.loads(raw)
                except orjson.JSONDecodeError:
                    continue
                if not isinstance(msg, dict):
                    continue
                if msg.get("event") == "machine_request":
                    self._on_request(msg)
                    continue
                if "event" in msg:
                    continue  # the roster snapshot every /ws connection starts with: not for machines
                future = self._waiting.get(msg.get("id"))  # type: ignore[arg-type]
                if future is None or future.done():
                    continue
                err = msg.get("error")
                if isinstance(err, dict):
                    code = err.get("code")
                    future.set_exception(HypiError(code if isinstance(code, int) else 0, str(err.get("message"))))
                else:
                    future.set_result(msg.get("result"))
        finally:
            for future in self._waiting.values():
                if not future.done():
                    future.set_exception(ConnectionError("hypivisor connection closed"))

    def _on_request(self, msg: dict[str, Any]) -> None:
        method, rid, params = msg.get("method"), msg.get("rid"), msg.get("params")
        if not isinstance(params, dict):
            params = {}
        if method == "spawn_registered":  # a pi this machine started registered: its spawn ends
            try:
                node = NodeInfo.model_validate(params.get("node"))
            except ValidationError:
                return
            self.spawner.node_registered(node, str(params.get("spawn_id") or ""))
            return
        if not isinstance(rid, str) or not rid:
            return
        if len(self._tasks) >= MAX_REQUESTS:
            self._answer(rid, error=HypiError(ErrorCode.RATE_LIMITED, "this machine is busy; try again"))
            return
        task = asyncio.get_running_loop().create_task(self._serve(rid, str(method), params))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve(self, rid: str, method: str, params: dict[str, Any]) -> None:
        try:
            if method == "list_directories":
                result = await self._list_directories(params)
            elif method == "spawn_agent":
                result = await self._spawn_agent(params)
            elif method == "remove_worktree":  # the hypivisor checked that no agent runs there
                result = await worktree.remove_request(params, self.home)
            elif method in SESSION_METHODS:
                result = await self.sessions.serve(method, params)
            else:
                raise HypiError(ErrorCode.METHOD_NOT_FOUND, f"this machine does not know {method[:64]!r}")
            self._answer(rid, result=result)
        except HypiError as exc:
            self._answer(rid, error=exc)
        except spawn_cmd.TemplateError as exc:
            self._answer(rid, error=HypiError(ErrorCode.SPAWN_FAILED, str(exc)))
        except Exception as exc:  # noqa: BLE001 - outer boundary of one request: answered, logged, service stays
            oplog.log_boundary_error("machine.request", exc, method=method)
            self._answer(rid, error=HypiError(ErrorCode.INTERNAL_ERROR, f"internal error on the machine in {method}"))

    def _answer(self, rid: str, result: dict[str, Any] | None = None, error: HypiError | None = None) -> None:
        params: dict[str, Any] = {"rid": rid}
        if error is not None:
            params["error"] = {"code": int(error.code), "message": error.message[:4000]}
        else:
            params["result"] = result or {}
        task = asyncio.get_running_loop().create_task(self._send_answer(params))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send_answer(self, params: dict[str, Any]) -> None:
        try:
            await self.call("machine_reply", params)
        except Exception as exc:  # noqa: BLE001 - the hypivisor went away: the request failed there already
            log.info("machine_reply not delivered", error=f"{type(exc).__name__}: {exc}"[:200])

    # -- requests -------------------------------------------------------------
    async def _list_directories(self, params: dict[str, Any]) -> dict[str, Any]:
        raw = params.get("path")
        listing = await asyncio.to_thread(paths.list_directories, raw if isinstance(raw, str) else None, self.home)
        return await asyncio.to_thread(worktree.annotate, {"path": listing.path, "parent": listing.parent,
            "home": listing.home, "directories": [{"name": n, "path": p} for n, p in listing.directories]})  # fmt: skip

    async def _spawn_agent(self, params: dict[str, Any]) -> dict[str, Any]:
        """The hypivisor's spawn, under this machine's rules; answers once the new pi registered there."""
        raw, new_folder, session_raw = params.get("path"), params.get("new_folder"), params.get("session_file")
        spawn_id, timeout = params.get("spawn_id"), params.get("timeout")
        if not isinstance(raw, str) or not raw or not isinstance(spawn_id, str) or not spawn_id:
            raise HypiError(ErrorCode.INVALID_PARAMS, "spawn_agent needs path and spawn_id")
        if not (new_folder is None or isinstance(new_folder, str)) or not (
            session_raw is None or isinstance(session_raw, str)
        ):
            raise HypiError(ErrorCode.INVALID_PARAMS, "new_folder and session_file must be strings")
        target = await asyncio.to_thread(paths.spawn_target, raw, new_folder, self.home)
        plan = await worktree.plan_request(params, target.path, self.home)  # None: no worktree asked for
        session_file = None
        if session_raw is not None:
            if new_folder is not None or target.create:
                raise HypiError(ErrorCode.INVALID_PARAMS, "session_file resumes a session in its own folder")
            template = self.spawner.template
            if template and not spawn_cmd.template_resumes(template):
                raise HypiError(ErrorCode.SPAWN_FAILED, "this machine's HYPI_SPAWN_COMMAND cannot resume a session")
            session_file = await asyncio.to_thread(paths.session_file, session_raw, target.path, self.home)
        fork = params.get("fork") is True and session_file is not None  # pi --fork <file> (resume_session)
        if fork and self.spawner.template and not spawn_cmd.template_forks(self.spawner.template):
            raise HypiError(ErrorCode.SPAWN_FAILED, "this machine's HYPI_SPAWN_COMMAND cannot fork a session")
        if isinstance(timeout, (int, float)) and not isinstance(timeout, bool) and timeout > 0:
            self.spawner.timeout = min(float(timeout), MAX_SPAWN_TIMEOUT_S)
        self.spawner.admit()
        try:
            if target.create:
                try:
                    await asyncio.to_thread(os.mkdir, target.path, 0o755)
                except OSError as exc:
                    raise HypiError(ErrorCode.SPAWN_FAILED, f"cannot create folder: {exc.strerror}") from None
            env = spawn_cmd.child_env(self.env, self.failover.value(), self.token)  # the connected one first
            if fork:
                env[spawn_cmd.FORK_VAR] = "1"
            log.info("spawning agent", path=spawn_cmd.printable(target.path, lines=False), machine=self.name)
            try:
                loop_time = asyncio.get_running_loop().time()
                if plan is not None:  # in a new git worktree; removed with its branch if the spawn fails
                    async with worktree.prepared(plan) as made:
                        target = paths.SpawnTarget(made.cwd, create=False)
                        node, session = await self.spawner.spawn(made.cwd, env, loop_time, None, spawn_id)
                else:
                    node, session = await self.spawner.spawn(target.path, env, loop_time, session_file, spawn_id)
            except BaseException:
                if target.create:
                    await asyncio.to_thread(_remove_empty_dir, target.path)
                raise
        except SpawnError as exc:
            raise HypiError(exc.code, exc.message) from None
        finally:
            self.spawner.release()
        return {"node_id": node.id, "tmux_session": session, "path": target.path}


def _remove_empty_dir(path: str) -> None:
    try:
        os.rmdir(path)
    except OSError:
        pass
