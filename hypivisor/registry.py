"""The roster of pi agents as a pure state machine: no sockets, no clock, no loop.

Every method takes ``now`` (unix seconds) and returns the push events the caller
must broadcast, in order. The asyncio layer (``rpc.py``) only feeds it requests,
connection closes and sweep ticks, which is what makes the tricky rules below
testable in microseconds:

* the only eviction key is ``machine:port`` (many agents share a folder, so a
  cwd is never an identity);
* a node goes offline only when the connection that *currently* owns it closes:
  a stale socket closing late must not mark a newer registration offline;
* offline nodes are removed after ``ttl``; "active" nodes silent for ``3*ttl``
  are ghosts (half-open TCP) and removed too.

Connections are opaque hashable keys chosen by the caller.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from pi_socket.protocol import (
    HeartbeatParams,
    NodeInfo,
    NodeJoinedEvent,
    NodeOfflineEvent,
    NodeRemovedEvent,
    NodeUpdatedEvent,
    RegisterParams,
)

GHOST_FACTOR = 3

# RegisterParams fields copied onto the node verbatim (host is an address, not roster data).
_NODE_FIELDS = (
    "id", "machine", "cwd", "port", "pid", "activity", "session_name", "model",
    "started_at", "cost", "pi_version", "protocol_version",
)  # fmt: skip
_HEARTBEAT_FIELDS = ("activity", "session_name", "model", "tokens", "cost")


class RegistryError(Exception):
    """A request the registry refuses; ``code`` is a protocol ``ErrorCode`` value."""

    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass
class Entry:
    """A node plus what only the hypivisor needs: who owns it and where to dial it."""

    node: NodeInfo
    owner: Hashable | None
    host: str
    registered_at: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


class Registry:
    """All nodes, keyed by id. Not thread-safe: drive it from one event loop."""

    def __init__(self, ttl: float):
        if ttl <= 0:
            raise ValueError("ttl must be positive")
        self.ttl = float(ttl)
        self._entries: dict[str, Entry] = {}
        # (machine, port) -> the id registered there: registering evicts any other id on the same address,
        # so there is at most one; an index keeps that check O(1) with thousands of nodes
        self._by_addr: dict[tuple[str, int], str] = {}

    # -- queries ----------------------------------------------------------
    def nodes(self) -> list[NodeInfo]:
        """Snapshot for ``init`` and ``list_nodes`` (copies: callers may serialise later)."""
        return [e.node.model_copy() for e in self._entries.values()]

    def get(self, node_id: str) -> Entry | None:
        return self._entries.get(node_id)

    def owned_by(self, conn: Hashable) -> list[str]:
        return [i for i, e in self._entries.items() if e.owner == conn]

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def heartbeat_interval(self) -> float:
        """How often bridges should heartbeat: three chances before the node looks stale."""
        return max(self.ttl / 3.0, 0.05)

    # -- transitions ------------------------------------------------------
    def register(self, params: RegisterParams, conn: Hashable, peer_host: str, now: float) -> tuple[NodeInfo, list[BaseModel]]:
        """Upsert by id (active, owned by ``conn``); evict other ids on the same machine:port."""
        events: list[BaseModel] = []
        addr = (params.machine, params.port)
        other_id = self._by_addr.get(addr)
        if other_id is not None and other_id != params.id and other_id in self._entries:
            self._remove(other_id)
            events.append(NodeRemovedEvent(id=other_id, reason="evicted"))
        previous = self._entries.get(params.id)
        if previous is not None:  # the same id re-registering from another address frees the old one
            self._remove(params.id)
        data = {k: getattr(params, k) for k in _NODE_FIELDS if getattr(params, k) is not None}
        if params.tokens is not None:
            data["tokens"] = params.tokens
        node = NodeInfo(**data, status="active", last_seen=now, offline_since=None)
        self._entries[params.id] = Entry(node=node, owner=conn, host=params.host or peer_host, registered_at=now)
        self._by_addr[addr] = params.id
        # Shallow copies are enough: the registry replaces a node's fields (setattr), it never mutates one in place.
        events.append(NodeJoinedEvent(node=node.model_copy()))
        return node.model_copy(), events

    def _remove(self, node_id: str) -> None:
        entry = self._entries.pop(node_id)
        addr = (entry.node.machine, entry.node.port)
        if self._by_addr.get(addr) == node_id:
            del self._by_addr[addr]

    def heartbeat(self, params: HeartbeatParams, conn: Hashable, now: float) -> list[BaseModel]:
        """Refresh ``last_seen``; changed fields give one ``node_updated``.

        Only the owning connection may heartbeat: anything else means the bridge
        lost its registration (hypivisor restart, sweep) and must register again.
        """
        entry = self._entries.get(params.id)
        if entry is None or entry.owner != conn:
            raise RegistryError(1006, f"node {params.id!r} is not registered on this connection; register again")
        entry.node.last_seen = now
        changed = False
        for name in _HEARTBEAT_FIELDS:
            value = getattr(params, name)
            if value is not None and getattr(entry.node, name) != value:
                setattr(entry.node, name, value)
                changed = True
        return [NodeUpdatedEvent(node=entry.node.model_copy())] if changed else []

    def touch(self, conn: Hashable, now: float) -> None:
        """Any frame from an owning connection proves the agent alive."""
        for entry in self._entries.values():
            if entry.owner == conn:
                entry.node.last_seen = now

    def deregister(self, node_id: str, conn: Hashable, now: float) -> list[BaseModel]:
        """Remove a node. A bridge may only remove its own nodes; dashboards (no nodes) may remove any."""
        entry = self._entries.get(node_id)
        if entry is None:
            raise RegistryError(1006, f"unknown node {node_id!r}")
        owned = self.owned_by(conn)
        if owned and node_id not in owned:
            raise RegistryError(1002, "a bridge connection may only deregister its own node")
        self._remove(node_id)
        return [NodeRemovedEvent(id=node_id, reason="deregistered")]

    def connection_closed(self, conn: Hashable, now: float) -> list[BaseModel]:
        """Mark offline every node this connection still owns (and only those)."""
        events: list[BaseModel] = []
        for node_id, entry in self._entries.items():
            if entry.owner == conn:
                entry.owner = None
                if entry.node.status != "offline":
                    entry.node.status = "offline"
                    entry.node.offline_since = now
                    events.append(NodeOfflineEvent(id=node_id))
        return events

    def sweep(self, now: float) -> list[BaseModel]:
        """Remove offline nodes older than ttl and active ghosts silent for 3*ttl."""
        events: list[BaseModel] = []
        for node_id, entry in list(self._entries.items()):
            node = entry.node
            if node.status == "offline":
                since = node.offline_since if node.offline_since is not None else now
                if now - since > self.ttl:
                    self._remove(node_id)
                    events.append(NodeRemovedEvent(id=node_id, reason="ttl"))
            elif node.last_seen is not None and now - node.last_seen > GHOST_FACTOR * self.ttl:
                self._remove(node_id)
                events.append(NodeRemovedEvent(id=node_id, reason="ghost"))
        return events
