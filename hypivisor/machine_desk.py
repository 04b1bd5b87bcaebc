"""Requests to machine services over their control connections (specs/machines.md).

A machine service is a ``/ws`` client that called ``register_machine``. The hypivisor asks it to do something by
pushing ``{"event": "machine_request", "rid", "method", "params"}`` down that connection; the service answers with
the registry method ``machine_reply {rid, result | error}``. A reply counts only from the connection the request
was sent to; a request whose machine goes offline, or that is not answered in time, fails with 1012.

Spawning on a machine: the hypivisor makes the spawn's secret (``spawn_id``), the machine starts pi with it (its
own path policy, its own tmux) and waits; the new pi registers with the hypivisor, which tells that machine
(``spawn_registered``) so its wait ends and it answers the ``spawn_agent`` request.
"""

from __future__ import annotations

import asyncio
import itertools
import secrets
from collections.abc import Awaitable, Callable, Hashable
from typing import Any

import orjson
from pydantic import BaseModel

from hypivisor.machines import MachineBook
from pi_socket.errors import HypiError
from pi_socket.protocol import ErrorCode, MachineReplyParams, NodeInfo

LIST_TIMEOUT_S = 15.0  # list_directories on a machine
SPAWN_MARGIN_S = 15.0  # a machine's spawn answer may take its spawn timeout plus this
MAX_PENDING = 256  # requests waiting for machines at once
MAX_MESSAGE = 4000  # characters of a machine's error message passed on


class MachineUnavailable(HypiError):
    """The machine cannot answer (offline, unknown, gone mid-request, too slow): 1012."""


class MachineDesk:
    """The book plus the live links: who to send a machine's requests to, and what is waiting for answers."""

    def __init__(self, book: MachineBook):
        self.book = book
        self.links: dict[Hashable, Callable[[bytes], bool]] = {}  # every /ws connection's sender, by connection
        self._pending: dict[str, tuple[Hashable, asyncio.Future[dict[str, Any]]]] = {}
        self._spawns: dict[str, Hashable] = {}  # spawn_id -> the machine connection that started it
        self._spawned: dict[str, str] = {}  # spawn_id -> the node that registered with it
        self._rids = itertools.count(1)
        # cluster mode: a request for a machine held by another hypivisor (None: not one; hypivisor/cluster/machines.py)
        self.forward: Callable[[str, str, dict[str, Any], float], Awaitable[dict[str, Any]] | None] | None = None

    def attach(self, conn: Hashable, send: Callable[[bytes], bool]) -> None:
        self.links[conn] = send

    def detach(self, conn: Hashable, now: float) -> list[BaseModel]:
        """A connection ended: its waiting requests fail with 1012 and its machine goes offline."""
        self.links.pop(conn, None)
        for owner, future in list(self._pending.values()):
            if owner == conn and not future.done():
                future.set_exception(MachineUnavailable(ErrorCode.AGENT_UNAVAILABLE, "the machine went offline"))
        for spawn_id, owner in list(self._spawns.items()):
            if owner == conn:
                del self._spawns[spawn_id]
        return self.book.connection_closed(conn, now)

    def _link(self, machine: str) -> tuple[Hashable, Callable[[bytes], bool]]:
        conn = self.book.connection_of(machine)
        send = self.links.get(conn) if conn is not None else None
        if conn is None or send is None:
            known = self.book.info(machine) is not None
            why = "is offline (its machine service is not connected)" if known else "is not known to this hypivisor"
            raise MachineUnavailable(ErrorCode.AGENT_UNAVAILABLE, f"machine {machine[:255]!r} {why}")
        return conn, send

    async def request(self, machine: str, method: str, params: dict[str, Any], timeout: float) -> dict[str, Any]:
        """Send one request to ``machine``'s service and wait for its answer; HypiError with the machine's code
        when it refused, MachineUnavailable (1012) when it is offline, goes away or does not answer in time."""
        if self.forward is not None and (routed := self.forward(machine, method, params, timeout)) is not None:
            return await routed
        conn, send = self._link(machine)
        if len(self._pending) >= MAX_PENDING:
            raise HypiError(ErrorCode.RATE_LIMITED, "too many requests are waiting for machines; try again")
        rid = f"m{next(self._rids)}-{secrets.token_hex(4)}"
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[rid] = (conn, future)
        try:
            frame = orjson.dumps({"event": "machine_request", "rid": rid, "method": method, "params": params})
            if not send(frame):
                raise MachineUnavailable(ErrorCode.AGENT_UNAVAILABLE, f"machine {machine[:255]!r} went offline")
            try:
                return await asyncio.wait_for(future, timeout)
            except TimeoutError:
                raise MachineUnavailable(
                    ErrorCode.AGENT_UNAVAILABLE, f"machine {machine[:255]!r} did not answer within {timeout:g} s"
                ) from None
        finally:
            self._pending.pop(rid, None)

    def reply(self, conn: Hashable, params: MachineReplyParams) -> bool:
        """A machine's answer; False when no request with that rid was sent to this connection."""
        waiting = self._pending.get(params.rid)
        if waiting is None or waiting[0] != conn or waiting[1].done():
            return False
        future = waiting[1]
        if params.error is not None:
            future.set_exception(HypiError(params.error.code, str(params.error.message)[:MAX_MESSAGE]))
        else:
            future.set_result(params.result or {})
        return True

    async def spawn(self, machine: str, params: dict[str, Any], timeout: float) -> dict[str, Any]:
        """``spawn_agent`` on ``machine``: its answer (``tmux_session``, ``path``) once the new pi has registered
        here with this spawn's secret; ``node_id`` is the node that presented the secret, whatever the machine
        says (a machine cannot pass another agent off as the one it started)."""
        conn, _ = self._link(machine)
        spawn_id = secrets.token_urlsafe(24)
        self._spawns[spawn_id] = conn
        try:
            answer = await self.request(
                machine, "spawn_agent", {**params, "spawn_id": spawn_id, "timeout": timeout}, timeout + SPAWN_MARGIN_S
            )
            node_id = self._spawned.get(spawn_id)
            if node_id is None:
                raise HypiError(
                    ErrorCode.SPAWN_FAILED, f"machine {machine[:255]!r} answered before its agent registered"
                )
            return {**answer, "node_id": node_id}
        finally:
            self._spawns.pop(spawn_id, None)
            self._spawned.pop(spawn_id, None)

    def node_registered(self, node: NodeInfo, spawn_id: str | None) -> bool:
        """A node registered presenting ``spawn_id``: tell the machine that started it (its spawn ends)."""
        if not spawn_id:
            return False
        presented = spawn_id.encode("utf-8", "surrogatepass")
        for sid, conn in self._spawns.items():
            if secrets.compare_digest(sid.encode(), presented):
                self._spawned[sid] = node.id
                send = self.links.get(conn)
                if send is not None:
                    frame = {"event": "machine_request", "rid": "", "method": "spawn_registered",
                             "params": {"spawn_id": sid, "node": node.model_dump(mode="json")}}  # fmt: skip
                    send(orjson.dumps(frame))
                return True
        return False
