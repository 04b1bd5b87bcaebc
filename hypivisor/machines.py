"""The machines the hypivisor knows, as a pure state machine: no sockets, no clock, no loop (specs/machines.md).

A machine is listed when any of these holds:

* it is the hypivisor's own machine (always listed, always online);
* a machine service registered it (``register_machine``): online while that connection lasts, then offline
  (still listed, so the dashboard can say it is offline);
* an active agent on the roster names it (``NodeInfo.machine``), a machine with no service yet (per-pi bridges):
  listed while it has agents.

``agents`` counts the roster's *active* nodes per machine. The counts follow the roster's own events
(:meth:`MachineBook.node_events`), so a heartbeat costs O(1) and no roster scan is ever made. In cluster mode the
roster is the whole cluster's (this hypivisor's agents and the other hypivisors' ones), so the counts are too.

Each machine event is the difference between what the dashboards saw of the machine before a change and after
(:func:`machine_events`). In cluster mode what they see is the book's entry as the other hypivisors' machine
records show it (:attr:`MachineBook.view`), so every event agrees with ``list_machines``.

A name belongs to whoever first registered it: that registration stores (a hash of) its machine secret, and
registering the name again needs the same secret or the connection that holds it. An online name is never
taken over by another connection, even with the secret (one service per machine and user; the second one
waits until the first connection is gone). Every method returns the push events the caller must broadcast.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field

from pydantic import BaseModel

from pi_socket.errors import HypiError
from pi_socket.protocol import (
    ErrorCode,
    MachineFacts,
    MachineInfo,
    MachineJoinedEvent,
    MachineLeftEvent,
    MachineUpdatedEvent,
    NodeJoinedEvent,
    NodeOfflineEvent,
    NodeRemovedEvent,
    NodeUpdatedEvent,
)

MAX_MACHINES = 1000  # registered machines kept (online or not); the oldest offline one leaves first


class MachineError(HypiError):
    """A machine registration refused (1002 someone else's name, 1008 too many)."""


def _digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).digest()


@dataclass
class Machine:
    name: str
    facts: MachineFacts = field(default_factory=MachineFacts)
    conn: Hashable | None = None  # the connection of its machine service while online
    secret: bytes = b""
    since: float | None = None
    own: bool = False


class MachineBook:
    """Machines by name. Not thread-safe: drive it from one event loop."""

    def __init__(self, own_name: str, own_facts: MachineFacts | None = None, max_machines: int = MAX_MACHINES):
        self.own_name = own_name
        self.max_machines = max_machines
        self._machines: dict[str, Machine] = {
            own_name: Machine(own_name, own_facts or MachineFacts(), own=True, since=None)
        }
        self._by_conn: dict[Hashable, str] = {}
        self._node_machine: dict[str, str] = {}  # active node id -> its machine
        self._agents: dict[str, int] = {}  # machine -> active nodes
        # cluster mode: the listing with the other hypivisors' machines merged in (hypivisor/cluster/machines.py)
        self.merge: Callable[[list[MachineInfo]], list[MachineInfo]] | None = None
        # cluster mode: what a dashboard sees of a machine, given this book's entry (None: not listed)
        self.view: Callable[[str, MachineInfo | None], MachineInfo | None] | None = None

    # -- queries ------------------------------------------------------------
    def info(self, name: str) -> MachineInfo | None:
        m = self._machines.get(name)
        agents = self._agents.get(name, 0)
        if m is None:
            if agents == 0:
                return None
            return MachineInfo(name=name, online=True, agents=agents)
        f = m.facts
        return MachineInfo(
            name=name, online=m.own or m.conn is not None, agents=agents, own=m.own, service=m.conn is not None,
            os=f.os, pi_versions=list(f.pi_versions), tmux=f.tmux if (m.conn is not None or m.own) else None,
            home=f.home, since=m.since,
        )  # fmt: skip

    def shown(self, name: str) -> MachineInfo | None:
        """What a dashboard here lists for ``name``: the book's entry, through :attr:`view` in cluster mode."""
        info = self.info(name)
        return info if self.view is None else self.view(name, info)

    def machines(self) -> list[MachineInfo]:
        """Every listed machine: the own machine first, then by name."""
        names = set(self._machines) | {n for n, c in self._agents.items() if c > 0}
        ordered = [self.own_name] + sorted(names - {self.own_name}, key=lambda n: (n.lower(), n))
        listed = [i for n in ordered if (i := self.info(n)) is not None]
        return listed if self.merge is None else self.merge(listed)

    def secret_digest(self, name: str) -> bytes:
        """The stored hash of ``name``'s machine secret (b"" when none: the own machine, an unknown name)."""
        m = self._machines.get(name)
        return m.secret if m is not None else b""

    def connection_of(self, name: str) -> Hashable | None:
        """The connection that answers for ``name`` (its machine service), or None (offline, unknown)."""
        m = self._machines.get(name)
        return m.conn if m is not None else None

    def name_of(self, conn: Hashable) -> str | None:
        return self._by_conn.get(conn)

    def is_own(self, name: str | None) -> bool:
        return name is None or name == "" or name == self.own_name

    # -- transitions --------------------------------------------------------
    def register(
        self, name: str, facts: MachineFacts, secret: str | None, conn: Hashable, now: float, new_secret: str
    ) -> tuple[MachineInfo, str | None, list[BaseModel]]:
        """A machine service joins (or updates its facts). Returns (machine, issued secret or None, events).

        Refused (nothing changes): a connection that already answers for another name (1002); a name online on
        another connection (1002); a known name without its secret (1002); the book full (1008)."""
        held = self._by_conn.get(conn)
        if held is not None and held != name:
            raise MachineError(ErrorCode.FORBIDDEN, f"this connection already registered the machine {held!r}")
        m = self._machines.get(name)
        issued: str | None = None
        if m is not None and m.conn is not None and m.conn != conn:
            raise MachineError(
                ErrorCode.FORBIDDEN, f"machine {name!r} is online on another connection (one service per machine)"
            )
        if m is not None and m.conn != conn and m.secret:
            if not secret or not hmac.compare_digest(m.secret, _digest(secret)):
                raise MachineError(
                    ErrorCode.FORBIDDEN, f"machine {name!r} belongs to another service (register with its secret)"
                )
        if m is None or not m.secret:
            if secret:
                digest = _digest(secret)  # a hypivisor restart: the service keeps the secret it had
            else:
                issued, digest = new_secret, _digest(new_secret)
        else:
            digest = m.secret
        if m is None:
            if len(self._machines) >= self.max_machines:
                self._evict_oldest_offline()
            if len(self._machines) >= self.max_machines:
                raise MachineError(ErrorCode.RATE_LIMITED, f"too many machines ({self.max_machines})")
        before = self.shown(name)
        if m is None:
            m = self._machines[name] = Machine(name)
        went_online = m.conn is None
        changed = went_online or m.facts != facts
        m.facts, m.conn, m.secret = facts, conn, digest
        if went_online:
            m.since = now
        self._by_conn[conn] = name
        info = self.info(name)
        assert info is not None
        if not changed:
            return info, issued, []
        return info, issued, machine_events(name, before, self.shown(name))

    def _evict_oldest_offline(self) -> None:
        offline = [m for m in self._machines.values() if not m.own and m.conn is None]
        if offline:
            oldest = min(offline, key=lambda m: m.since or 0.0)
            del self._machines[oldest.name]

    def connection_closed(self, conn: Hashable, now: float) -> list[BaseModel]:
        """The machine this connection answered for goes offline (``machine_left``); other connections: nothing."""
        name = self._by_conn.pop(conn, None)
        if name is None:
            return []
        m = self._machines.get(name)
        if m is None or m.conn != conn:
            return []
        before = self.shown(name)
        m.conn = None
        m.since = now
        return machine_events(name, before, self.shown(name))

    def node_events(self, events: list[BaseModel]) -> list[BaseModel]:
        """Follow the roster: the machine events its node events imply (agent counts, machines known only from
        agents appearing or leaving). Only a change of a count costs anything (a heartbeat does not)."""
        before: dict[str, MachineInfo | None] = {}  # machine -> what the dashboards saw before this batch
        for event in events:
            if isinstance(event, (NodeJoinedEvent, NodeUpdatedEvent)):
                node = event.node
                old = self._node_machine.get(node.id)
                new = node.machine if node.status == "active" else None
                if old != new:
                    self._move(node.id, old, new, before)
            elif isinstance(event, (NodeOfflineEvent, NodeRemovedEvent)):
                old = self._node_machine.get(event.id)
                if old is not None:
                    self._move(event.id, old, None, before)
        out: list[BaseModel] = []
        for name, seen in before.items():
            out += machine_events(name, seen, self.shown(name))
        return out

    def _move(self, node_id: str, old: str | None, new: str | None, before: dict[str, MachineInfo | None]) -> None:
        for name in (old, new):
            if name is not None and name not in before:
                before[name] = self.shown(name)
        if old is not None:
            left = self._agents.get(old, 0) - 1
            if left > 0:
                self._agents[old] = left
            else:
                self._agents.pop(old, None)
            del self._node_machine[node_id]
        if new is not None:
            self._agents[new] = self._agents.get(new, 0) + 1
            self._node_machine[node_id] = new


def machine_events(name: str, before: MachineInfo | None, after: MachineInfo | None) -> list[BaseModel]:
    """The event that tells a dashboard a machine went from ``before`` to ``after`` (None: not listed): joined, left
    (listed no more, or gone offline: ``machine`` then says how it is now), updated, or nothing when equal."""
    if before is None and after is None:
        return []
    if before is None:
        return [MachineJoinedEvent(machine=after)]
    if after is None:
        return [MachineLeftEvent(name=name, machine=None)]
    if before.model_dump() == after.model_dump():
        return []
    if before.online and not after.online:
        return [MachineLeftEvent(name=name, machine=after)]
    return [MachineUpdatedEvent(machine=after)]
