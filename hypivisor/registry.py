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
  are ghosts (half-open TCP) and removed too;
* a node id belongs to whoever first registered it: the first registration
  stores (a hash of) its node secret, and registering that id again needs the
  same secret (or the connection that owns it). A known id is never taken over,
  active or offline: an offline node keeps its secret until it is swept;
* a node's machine:port is evicted only from the peer address that registered
  it (a pi restarted on that machine reusing the port), never from another
  peer, active or offline: otherwise a stranger could remove an offline node,
  secret and all, and then claim its freed id. The address frees when its node
  re-registers elsewhere, is deregistered by its owner, or is swept;
* only the owning connection may heartbeat or deregister a node (dashboards own
  nothing; offline nodes leave by the sweep);
* the proxy dials the peer address of the registering connection: a ``host``
  the client names counts only when it is that address, or when both are this
  machine's loopback (see :func:`dial_host`);
* bounded: at most ``max_nodes`` nodes, ``max_per_connection`` per connection;
  every per-frame call (:meth:`touch`) is O(1).

Connections are opaque hashable keys chosen by the caller.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Hashable
from dataclasses import dataclass

from pydantic import BaseModel

from hypivisor.access import peer_is_loopback
from pi_socket.errors import HypiError
from pi_socket.protocol import (
    ErrorCode,
    HeartbeatParams,
    NodeInfo,
    NodeJoinedEvent,
    NodeOfflineEvent,
    NodeRemovedEvent,
    NodeUpdatedEvent,
    RegisterParams,
)

GHOST_FACTOR = 3
MAX_NODES = 10_000
MAX_NODES_PER_CONNECTION = 1_000

# RegisterParams fields copied onto the node verbatim (host is an address, not roster data).
_NODE_FIELDS = (
    "id", "machine", "cwd", "port", "pid", "activity", "session_name", "model",
    "started_at", "cost", "pi_version", "protocol_version", "approval_policy", "pending_approvals", "git_branch",
    "capabilities", "session_file", "worktree", "worktree_of", "tmux_session",
)  # fmt: skip
_HEARTBEAT_FIELDS = (
    "activity", "session_name", "model", "tokens", "cost", "approval_policy", "pending_approvals", "git_branch",
    "session_file",
)  # fmt: skip


class RegistryError(HypiError):
    """A request the registry refuses; ``code`` is a protocol ``ErrorCode`` value."""


def secret_digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).digest()


def plain_peer(host: str) -> str:
    """A peer address in one spelling: an IPv4-mapped IPv6 address (a dual-stack listener) as plain IPv4."""
    return host[7:] if host.lower().startswith("::ffff:") and "." in host else host


def dial_host(named: str | None, peer_host: str) -> str:
    """Where the proxy may dial this node: the registering connection's peer address.

    A client-named ``host`` is honoured only when it is that peer, or when both are loopback (a bridge bound to
    127.0.0.1 that reached the hypivisor over ::1 is on this machine, and anything on this machine can reach its
    loopback anyway). Anything else would make the proxy an open relay to a host the client chose, so it is
    ignored rather than refused: older bridges send their bind address, and the peer is where they are.
    """
    peer = plain_peer(peer_host)
    if named and (plain_peer(named) == peer or (peer_is_loopback(named) and peer_is_loopback(peer))):
        return plain_peer(named)
    return peer


@dataclass
class Entry:
    """A node plus what only the hypivisor needs: who owns it, from where, and where to dial it."""

    node: NodeInfo
    owner: Hashable | None
    host: str  # what the proxy dials: the registering peer (see dial_host), never a host a client chose freely
    secret: bytes  # sha256 of the node secret that owns this id (never the secret itself)
    peer: str = ""  # peer address of the registering connection (plain_peer): who may evict its machine:port
    registered_at: float = 0.0


class Registry:
    """All nodes, keyed by id. Not thread-safe: drive it from one event loop."""

    def __init__(self, ttl: float, max_nodes: int = MAX_NODES, max_per_connection: int = MAX_NODES_PER_CONNECTION):
        if ttl <= 0:
            raise ValueError("ttl must be positive")
        self.ttl = float(ttl)
        self.max_nodes = max_nodes
        self.max_per_connection = max_per_connection
        self._entries: dict[str, Entry] = {}
        # (machine, port) -> the id registered there: registering evicts any other id on the same address,
        # so there is at most one; an index keeps that check O(1) with thousands of nodes
        self._by_addr: dict[tuple[str, int], str] = {}
        self._owned: dict[Hashable, set[str]] = {}  # connection -> the ids it owns now
        self._conn_seen: dict[Hashable, float] = {}  # connection -> when its last frame arrived

    # -- queries ----------------------------------------------------------
    def nodes(self) -> list[NodeInfo]:
        """Snapshot for ``init`` and ``list_nodes`` (copies: callers may serialise later)."""
        return [self._view(e) for e in self._entries.values()]

    def live(self) -> list[tuple[NodeInfo, float | None]]:
        """Every node as stored (not a copy: read it, never change it) with the ``last_seen`` a view of it shows
        (its connection's latest frame counts): what a roster snapshot serialises without copying each node."""
        return [(entry.node, self._seen(entry)) for entry in self._entries.values()]

    def _seen(self, entry: Entry) -> float | None:
        """The node's ``last_seen``, or its connection's latest frame when that is later."""
        seen = self._conn_seen.get(entry.owner) if entry.owner is not None else None
        last = entry.node.last_seen
        return seen if seen is not None and (last is None or seen > last) else last

    def _view(self, entry: Entry) -> NodeInfo:
        node = entry.node.model_copy()
        node.last_seen = self._seen(entry)
        return node

    def get(self, node_id: str) -> Entry | None:
        return self._entries.get(node_id)

    def owned_by(self, conn: Hashable) -> list[str]:
        return sorted(self._owned.get(conn, ()))

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def heartbeat_interval(self) -> float:
        """How often bridges should heartbeat: three chances before the node looks stale."""
        return max(self.ttl / 3.0, 0.05)

    # -- transitions ------------------------------------------------------
    def register(
        self, params: RegisterParams, conn: Hashable, peer_host: str, now: float, new_secret: str = ""
    ) -> tuple[NodeInfo, str | None, list[BaseModel]]:
        """Upsert by id (active, owned by ``conn``); evict another id on the same machine:port.

        Returns the node, the node secret to hand back (``new_secret`` when this registration was the id's first
        and presented none, else None), and the events. Refusals (RegistryError, nothing changed): a known id
        without its secret (1002), an address held by a node registered from another peer, active or offline
        (1002), the limits (1008). Secrets are compared as sha256 digests with ``hmac.compare_digest``.
        """
        events: list[BaseModel] = []
        peer_host = plain_peer(peer_host)
        previous = self._entries.get(params.id)
        issued: str | None = None
        if previous is not None:
            if previous.owner != conn and not (
                params.node_secret and hmac.compare_digest(previous.secret, secret_digest(params.node_secret))
            ):
                raise RegistryError(
                    ErrorCode.FORBIDDEN,
                    f"node id {params.id!r} belongs to another agent (register with its node_secret)",
                )
            secret = previous.secret
        elif params.node_secret:
            secret = secret_digest(params.node_secret)  # a hypivisor restart: the agent keeps the secret it had
        else:
            issued = new_secret
            secret = secret_digest(new_secret)
        addr = (params.machine, params.port)
        other_id = self._by_addr.get(addr)
        other = self._entries.get(other_id) if other_id is not None and other_id != params.id else None
        if other is not None and other.owner != conn and other.peer != peer_host:
            raise RegistryError(
                ErrorCode.FORBIDDEN,
                f"{params.machine}:{params.port} belongs to node {other_id!r} registered from another "
                f"address; it frees once that node is gone ({self.ttl:g} s after it goes offline)",
            )
        if previous is None:
            if len(self._entries) >= self.max_nodes + (other is not None):
                raise RegistryError(ErrorCode.RATE_LIMITED, f"the roster is full ({self.max_nodes} nodes)")
            if len(self._owned.get(conn, ())) >= self.max_per_connection:
                raise RegistryError(
                    ErrorCode.RATE_LIMITED, f"one connection may own at most {self.max_per_connection} nodes"
                )
        if other is not None and other_id is not None:
            self._remove(other_id)
            events.append(NodeRemovedEvent(id=other_id, reason="evicted"))
        if previous is not None:  # the same id re-registering (maybe from another address) frees the old one
            self._remove(params.id)
        data = {k: getattr(params, k) for k in _NODE_FIELDS if getattr(params, k) is not None}
        if params.tokens is not None:
            data["tokens"] = params.tokens
        # a re-registration that keeps the activity keeps its start: a reconnect is not a new run
        since = (
            previous.node.activity_since if previous is not None and previous.node.activity == params.activity else None
        )
        if previous is not None and previous.node.tmux_session is not None:  # pi is still in the tmux it was spawned in
            data["tmux_session"] = previous.node.tmux_session
        node = NodeInfo(**data, status="active", last_seen=now, offline_since=None, activity_since=since or now)
        self._entries[params.id] = Entry(node=node, owner=conn, host=dial_host(params.host, peer_host), secret=secret,
                                         peer=peer_host, registered_at=now)  # fmt: skip
        self._by_addr[addr] = params.id
        self._owned.setdefault(conn, set()).add(params.id)
        self._conn_seen[conn] = now
        # Shallow copies are enough: the registry replaces a node's fields (setattr), it never mutates one in place.
        events.append(NodeJoinedEvent(node=node.model_copy()))
        return node.model_copy(), issued, events

    def _remove(self, node_id: str) -> None:
        entry = self._entries.pop(node_id)
        addr = (entry.node.machine, entry.node.port)
        if self._by_addr.get(addr) == node_id:
            del self._by_addr[addr]
        self._disown(entry, node_id)

    def _disown(self, entry: Entry, node_id: str) -> None:
        if entry.owner is None:
            return
        owned = self._owned.get(entry.owner)
        if owned is not None:
            owned.discard(node_id)
            if not owned:
                del self._owned[entry.owner]
                self._conn_seen.pop(entry.owner, None)
        entry.owner = None

    def heartbeat(self, params: HeartbeatParams, conn: Hashable, now: float) -> list[BaseModel]:
        """Refresh ``last_seen``; changed fields give one ``node_updated``.

        Only the owning connection may heartbeat: anything else means the bridge
        lost its registration (hypivisor restart, sweep) and must register again.
        """
        entry = self._entries.get(params.id)
        if entry is None or entry.owner != conn:
            raise RegistryError(1006, f"node {params.id!r} is not registered on this connection; register again")
        entry.node.last_seen = now
        self._conn_seen[conn] = now
        changed = False
        for name in _HEARTBEAT_FIELDS:
            value = getattr(params, name)
            if value is not None and getattr(entry.node, name) != value:
                setattr(entry.node, name, value)
                changed = True
                if name == "activity":
                    entry.node.activity_since = now
        return [NodeUpdatedEvent(node=self._view(entry))] if changed else []

    def set_unread(self, node_id: str, unread: int) -> list[BaseModel]:
        """The inbox's unread count on the roster card (``node_updated`` when it changed)."""
        entry = self._entries.get(node_id)
        if entry is None or entry.node.unread == unread:
            return []
        entry.node.unread = unread
        return [NodeUpdatedEvent(node=self._view(entry))]

    def set_tmux_session(self, node_id: str, session: str | None) -> list[BaseModel]:
        """The tmux session a spawn started this node in (only the spawn that presented its secret may say so);
        ``node_updated`` when it changed. A re-registration of the same id keeps it."""
        entry = self._entries.get(node_id)
        if entry is None or not session or entry.node.tmux_session == session:
            return []
        entry.node.tmux_session = session
        return [NodeUpdatedEvent(node=self._view(entry))]

    def set_budget(self, node_id: str, level: str | None, pct: float | None, note: str | None) -> list[BaseModel]:
        """The agent's budget state on its roster card (``node_updated`` when it changed)."""
        entry = self._entries.get(node_id)
        if entry is None:
            return []
        node = entry.node
        if (node.budget_level, node.budget_pct, node.budget_note) == (level, pct, note):
            return []
        node.budget_level, node.budget_pct, node.budget_note = level, pct, note  # type: ignore[assignment]
        return [NodeUpdatedEvent(node=self._view(entry))]

    def touch(self, conn: Hashable, now: float) -> None:
        """Any frame from an owning connection proves its agents alive: O(1), whatever it owns."""
        if conn in self._conn_seen:
            self._conn_seen[conn] = now

    def deregister(self, node_id: str, conn: Hashable, now: float) -> list[BaseModel]:
        """Remove a node. Only the connection that owns it may: a dashboard owns nothing, and an offline node
        (nobody owns it) leaves by the sweep, so no client can remove another agent's node and free its id."""
        entry = self._entries.get(node_id)
        if entry is None:
            raise RegistryError(1006, f"unknown node {node_id!r}")
        if entry.owner != conn:
            raise RegistryError(ErrorCode.FORBIDDEN, "only the connection that registered a node may deregister it")
        self._remove(node_id)
        return [NodeRemovedEvent(id=node_id, reason="deregistered")]

    def release(self, node_id: str) -> list[BaseModel]:
        """Let go of an offline node whose connection is gone (cluster mode: it registered with another hypivisor,
        which shows it from now on): removed at once instead of after the TTL. A live node stays."""
        entry = self._entries.get(node_id)
        if entry is None or entry.owner is not None or entry.node.status != "offline":
            return []
        self._remove(node_id)
        return [NodeRemovedEvent(id=node_id)]

    def connection_closed(self, conn: Hashable, now: float) -> list[BaseModel]:
        """Mark offline every node this connection still owns (and only those)."""
        events: list[BaseModel] = []
        seen = self._conn_seen.get(conn)
        for node_id in sorted(self._owned.get(conn, ())):
            entry = self._entries[node_id]
            if seen is not None and (entry.node.last_seen is None or seen > entry.node.last_seen):
                entry.node.last_seen = seen
            self._disown(entry, node_id)
            if entry.node.status != "offline":
                entry.node.status = "offline"
                entry.node.offline_since = now
                events.append(NodeOfflineEvent(id=node_id))
        self._owned.pop(conn, None)
        self._conn_seen.pop(conn, None)
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
                continue
            seen = self._conn_seen.get(entry.owner, 0.0) if entry.owner is not None else 0.0
            last = max(node.last_seen or 0.0, seen)
            if node.last_seen is not None and now - last > GHOST_FACTOR * self.ttl:
                self._remove(node_id)
                events.append(NodeRemovedEvent(id=node_id, reason="ghost"))
        return events
