"""The registry's JSON-RPC methods: validate params, drive the pure parts, publish events.

``dispatch`` is what the ``/ws`` handler calls for each request. Every failure
a caller can cause comes back as :class:`RpcFailure` (code + message) so the
handler answers ``{id, error}`` and the connection stays open; nothing here
changes state before validation succeeded.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
import time
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from typing import Any

import orjson
import structlog
from pydantic import BaseModel, ValidationError

from hypivisor import paths, spawn_cmd, worktree
from hypivisor.access import is_loopback, peer_is_loopback
from hypivisor.attention import AttentionBook
from hypivisor.broadcast import Hub, chunk_nodes, node_payload, nodes_joined_payload, text_frame
from hypivisor.budget_desk import BudgetDesk, BudgetError
from hypivisor.config import Config, home_dir
from hypivisor.machine_desk import LIST_TIMEOUT_S, MachineDesk
from hypivisor.machines import MachineBook, MachineError
from hypivisor.push.hub import PushHub, SubscriptionError
from hypivisor.push.policy import KINDS as PUSH_KINDS
from hypivisor.registry import Registry, RegistryError
from hypivisor.sessions import SessionDesk
from hypivisor.spawner import Spawner, SpawnError
from hypivisor.store import Store
from pi_socket import __version__
from pi_socket.errors import HypiError
from pi_socket.machine.facts import own_facts
from pi_socket.protocol import (
    CAPABILITIES,
    PROTOCOL_VERSION,
    REGISTRY_METHODS,
    DecideApprovalParams,
    DeregisterParams,
    DirectoryEntry,
    DismissAttentionParams,
    ErrorCode,
    GetSpendParams,
    GetTotalsParams,
    HeartbeatParams,
    HeartbeatResult,
    ListAttentionParams,
    ListAttentionResult,
    ListBudgetsParams,
    ListDirectoriesParams,
    ListDirectoriesResult,
    ListMachinesParams,
    ListMachinesResult,
    ListNodesParams,
    ListSessionsParams,
    MachineFacts,
    MachineIndexProgressParams,
    MachineReplyParams,
    MarkReadParams,
    NodeInfo,
    NodeRemovedEvent,
    OkResult,
    OverrideBudgetParams,
    PushConfigParams,
    PushConfigResult,
    PushSubscribeParams,
    PushUnsubscribeParams,
    ReadSessionParams,
    RegisterMachineParams,
    RegisterMachineResult,
    RegisterParams,
    RegisterResult,
    RemoveWorktreeParams,
    RemoveWorktreeResult,
    ResumeSessionParams,
    SearchParams,
    SetBudgetParams,
    SetPresenceParams,
    SetPushPrefsParams,
    SpawnAgentParams,
    SpawnAgentResult,
    incompatibility,
    unknown_fields,
)

log = structlog.get_logger(part="registry")  # lazy: bound after oplog.configure

# How old the cached roster snapshot may get while no event changed it (only ``last_seen`` moves then).
SNAPSHOT_MAX_AGE = 1.0
# The ``init`` frame holds nodes up to this size; the rest of the roster follows at once as ``node_joined`` frames,
# so no frame of a large roster exceeds a bridge's or a proxy's frame limit (a bridge accepts 16 MiB).
INIT_CHUNK_BYTES = 1024 * 1024
# One ``list_nodes`` answer holds nodes up to this size whatever ``limit`` asks (at least one node), then
# ``next_cursor``: a page stays far below a bridge's 16 MiB frame limit and bounds what one queued answer costs.
# A roster of typical nodes (~300 bytes) fits in one page even at the 10,000-node cap.
LIST_PAGE_BYTES = 4 * 1024 * 1024


@dataclass
class Snapshot:
    """The roster serialised once: each node's JSON and the framed ``init`` event; the sequences sent after it are
    built from them by the first client that asks for each (:meth:`blob`, :meth:`chunked`).

    ``shared``: the roster passed ``INIT_CHUNK_BYTES``, so its ``init`` is followed by more node frames anyway;
    such a snapshot serves every dashboard that connects while it is fresh and the same nodes are on the roster, each
    also sent the changes of those nodes fanned out since it was built (``Hub.roster_log``, specs/cluster.md §11):
    the nodes of the sequence, and ``init.total``, are always the roster's. A smaller roster's snapshot is rebuilt
    after every change, so its ``init`` frame alone is the roster of that moment."""

    built_at: float
    nodes: list[bytes]
    ids: set[str]  # of ``nodes``
    init: bytes  # the framed init event, holding ``nodes[:head]``
    head: int
    _first_page: dict[str, Any] | None = None
    _blob: bytes | None = None
    _chunked: bytes | None = None

    @property
    def shared(self) -> bool:
        return self.head < len(self.nodes)

    @property
    def frame_count(self) -> int:
        """How many frames the roster takes one node per frame (:meth:`blob`)."""
        return 1 + len(self.nodes) - self.head

    def blob(self) -> bytes:
        """The init frame, then a ``node_joined`` frame for each node past it (one bytes object)."""
        if self._blob is None:
            self._blob = self.init + b"".join(
                text_frame(node_payload("node_joined", raw)) for raw in self.nodes[self.head :]
            )
        return self._blob

    def chunked(self) -> bytes:
        """The sequence for a client that asked for the roster in chunks (``/ws?roster=chunks``): the same init
        frame, then the nodes past it as ``nodes_joined`` frames of up to ``INIT_CHUNK_BYTES`` each (a 10,000-node
        roster: ~7 frames instead of ~8,600)."""
        if self._chunked is None:
            self._chunked = self.init + b"".join(
                text_frame(nodes_joined_payload(chunk))
                for chunk in chunk_nodes(self.nodes, self.head, INIT_CHUNK_BYTES)
            )
        return self._chunked

    @property
    def first_page(self) -> dict[str, Any]:
        """The answer to ``list_nodes`` without params, built by the first such call: a reconnect storm while the
        roster changes rebuilds the snapshot for each ``init`` and asks for no page."""
        if self._first_page is None:
            self._first_page = _page(self.nodes, 0, len(self.nodes))
        return self._first_page


class RpcFailure(HypiError):
    """A request answered with an error: how every refusal leaves :meth:`Service.dispatch`."""

    def __init__(self, code: int, message: str):
        super().__init__(int(code), message)


def validation_message(exc: ValidationError) -> str:
    """Short, readable summary of what was wrong with the params (no input values echoed)."""
    parts = []
    for err in exc.errors()[:5]:
        where = ".".join(str(x) for x in err["loc"]) or "params"
        parts.append(f"{where}: {err['msg']}")
    return "invalid params: " + "; ".join(parts)


class Service:
    """Everything the registry endpoint needs, shared by all connections."""

    def __init__(self, config: Config, env: dict[str, str] | None = None):
        self.config = config
        self.env = dict(os.environ if env is None else env)
        self.home = home_dir(self.env)
        self.registry = Registry(config.node_ttl)
        self.hub = Hub()
        self.spawner = Spawner(config.spawn_command, config.spawn_timeout)
        self._snapshot: Snapshot | None = None
        self._roster_changed = False  # an event changed the roster since the snapshot was built
        # node id → (its last_seen then, the node object, its JSON): a snapshot rebuilt after a change serialises
        # only the nodes that changed (an event drops its node's entry; a node object replaced is a miss)
        self._node_json: dict[str, tuple[float | None, NodeInfo, bytes]] = {}
        self._unserialisable: set[str] = set()  # node ids already logged as unserialisable
        self._unknown_seen: set[str] = set()  # "method.field" already logged as unknown
        self.store = Store(config.state_dir / "hypivisor.sqlite3") if config.state_dir is not None else None
        self.attention = AttentionBook(self.store)
        if self.store is not None:
            self.attention.restore(*self.store.load(time.time()))
        self.budget = BudgetDesk(self)
        self.push = PushHub(config.state_dir, self.store)
        self.hub.taps.append(self.push.on_events)
        self.sessions = SessionDesk(self)
        self.senders: dict[Hashable, Callable[[bytes], bool]] = {}  # /ws connection → send a frame to it
        self.machines = MachineDesk(MachineBook(machine_name(self.env), own_facts(self.home)))
        self.started_at = time.time()
        self.cluster: Any = None  # cluster mode (--nats): a hypivisor.cluster.link.ClusterLink, set by the server
        # a bridge says its dial-back failed: the waiting link falls back at once (hypivisor.front, set there)
        self.dial_back_failed: Callable[[Hashable, str], None] | None = None

    def publish(self, events: list[BaseModel]) -> None:
        if events:
            self._roster_changed = True  # the next init / list_nodes rebuilds the snapshot (or replays: _roster)
            self._forget_json(events)
            if self.cluster is None:
                self.hub.publish(events + self.machines.book.node_events(events))
            else:  # cluster mode: heard at once, shown with the cluster's bursts and ticks (specs/cluster.md §3)
                self.cluster.show(events + self.machines.book.node_events(events), own=True)
                self.cluster.local_events(events)
            gone = [e for e in events if isinstance(e, NodeRemovedEvent)]
            for event in gone:  # the inbox hears who left (their live items end; unread output stays as an item)
                self.hub.publish(self.attention.node_left(event.id, event.reason, time.time()))

    def remote_roster_changed(self, events: list[BaseModel], quiet: bool = False) -> None:
        """Cluster mode: another hypivisor's agents changed (its registry decided; this one only shows them). The
        machine book counts them too: every machine's ``agents`` is the whole roster's. ``quiet``: the events only
        change quiet fields (shown on the cluster's tick, specs/cluster.md §3)."""
        self._roster_changed = True
        self._forget_json(events)
        self.cluster.show(events + self.machines.book.node_events(events), quiet)

    def _forget_json(self, events: list[BaseModel]) -> None:
        for event in events:
            node = getattr(event, "node", None)
            node_id = node.id if isinstance(node, NodeInfo) else getattr(event, "id", None)
            if isinstance(node_id, str):
                self._node_json.pop(node_id, None)

    def _attention_report(self, node: NodeInfo, params: RegisterParams | HeartbeatParams, now: float) -> None:
        """A bridge's attention report (with its register or heartbeat) into the inbox; the card's unread count."""
        if params.attention is not None:
            self.hub.publish(self.attention.report(node, params.attention, now))
            if self.cluster is not None:  # its open approvals become shared records (specs/cluster.md §5)
                self.cluster.approvals_report(node, params)
        self.publish(self.registry.set_unread(node.id, self.attention.unread_of(node.id)))

    def forget_absent(self, now: float) -> None:
        """Once, a grace time after start: live items of agents that never came back end (``exited``)."""
        present = {node.id for node in self.registry.nodes()}
        self.hub.publish(self.attention.forget_live_of_absent(present, now))

    def _roster(self, exact: bool = False) -> Snapshot:
        """The roster serialised once for every ``init`` and ``list_nodes`` until it changes.

        Every dashboard's ``/ws`` connection starts with an ``init`` holding all nodes; serialising 1,000 nodes per
        connection made reconnect storms quadratic. The cache is dropped by every published event and rebuilt at
        least every ``SNAPSHOT_MAX_AGE`` seconds (``last_seen``). A shared snapshot (a roster past one ``init``
        chunk) outlives the changes of its nodes for ``init``: they are replayed from ``Hub.roster_log`` after it,
        until that log passes half the roster or a node joins or leaves. ``exact`` (``list_nodes``, which has no
        replay): the roster as of now.
        A node that cannot be serialised is left out (and logged once); it never takes the roster down.
        """
        now = time.monotonic()
        snap = self._snapshot
        if snap is None or now - snap.built_at > SNAPSHOT_MAX_AGE:
            stale = True
        elif exact or not snap.shared:
            stale = self._roster_changed
        else:
            stale = self.hub.roster_log is None  # the replay log outgrew its bound
        if stale or snap is None:
            self._roster_changed = False
            snap = self._snapshot = self._build_snapshot(now)
            self.hub.share_roster(snap.ids if snap.shared else None)
        return snap

    def _build_snapshot(self, now: float) -> Snapshot:
        """Each node's JSON comes from ``_node_json`` while the node is the same object, no event named it, and
        its ``last_seen`` moved by at most ``SNAPSHOT_MAX_AGE`` (the staleness a whole cached snapshot has too):
        while events flow, a reconnecting dashboard costs the changed nodes' serialisation, not the roster's."""
        nodes: list[bytes] = []
        roster = self.registry.live()
        if self.cluster is not None:  # the other hypivisors' agents after this one's own
            local = {node.id for node, _ in roster}
            roster += [(node, node.last_seen) for node in self.cluster.remote_nodes(local)]
        old, cache = self._node_json, {}
        ids: set[str] = set()
        for node, seen in roster:
            hit = old.get(node.id)
            if hit is not None and hit[1] is node and (seen is None or (hit[0] or 0.0) >= seen - SNAPSHOT_MAX_AGE):
                cache[node.id] = hit
                nodes.append(hit[2])
                ids.add(node.id)
                continue
            try:
                data = node.model_dump(mode="json")
                data["last_seen"] = seen
                raw = orjson.dumps(data)
            except Exception as exc:  # noqa: BLE001 - one bad node must not take the roster down
                if node.id not in self._unserialisable:
                    self._unserialisable.add(node.id)
                    log.error("node left out of the roster: cannot serialise it", node_id=node.id[:128],
                              error=f"{type(exc).__name__}: {exc}"[:200])  # fmt: skip
                continue
            cache[node.id] = (seen, node, raw)
            nodes.append(raw)
            ids.add(node.id)
        self._node_json = cache
        head = next(chunk_nodes(nodes, 0, INIT_CHUNK_BYTES), [])
        init = {"event": "init", "nodes": orjson.Fragment(b"[" + b",".join(head) + b"]"),
                "protocol_version": PROTOCOL_VERSION, "hypivisor_version": __version__,
                "capabilities": CAPABILITIES, "total": len(nodes)}  # fmt: skip
        # Pi-DE's fail-over list (specs/cluster.md §8): only with a token, so only a connection that presented it
        # (every /ws connection then did) learns where the other hypivisors are
        if self.config.peers and self.config.token:
            init["peers"] = list(self.config.peers)
        return Snapshot(now, nodes, ids, text_frame(orjson.dumps(init)), len(head))

    def init_frames(self, chunks: bool = False) -> list[bytes]:
        """The framed ``init`` event (an ``InitEvent``) with the roster; past ``INIT_CHUNK_BYTES`` the remaining
        nodes follow as ``node_joined`` frames, and the roster frames fanned out since the snapshot was built
        (every client already upserts those). The first element is a bytes object holding many frames. ``chunks``:
        the client asked for the roster in chunks, so the nodes past ``init`` come as ``nodes_joined`` frames."""
        return self.init_sequence(chunks)[0]

    def init_sequence(self, chunks: bool = False) -> tuple[list[bytes], int]:
        """:meth:`init_frames` and the roster's size in node frames (as if unchunked), which bounds how many events
        may queue behind it (``Outbox.send_snapshot``)."""
        snap = self._roster()
        blob = snap.chunked() if chunks else snap.blob()
        replay = self.hub.roster_log  # None unless the snapshot is shared
        if not replay:
            return [blob], snap.frame_count
        return [blob, *replay], snap.frame_count + len(replay)

    async def dispatch(self, method: str, raw_params: dict[str, Any] | None, conn: Hashable, peer: str) -> Any:
        model = REGISTRY_METHODS.get(method)
        if model is None:
            raise RpcFailure(ErrorCode.METHOD_NOT_FOUND, f"unknown method {method[:64]!r}")
        try:
            params = model.model_validate(raw_params or {})
        except ValidationError as exc:
            raise RpcFailure(ErrorCode.INVALID_PARAMS, validation_message(exc)) from None
        self._note_unknown(method, model, raw_params)
        try:
            if self.cluster is not None and (routed := self.cluster.machines.route(method, params)) is not None:
                return await routed  # cluster mode: a machine another hypivisor holds answers (its result or error)
            return await METHOD_HANDLERS[method](self, params, conn, peer)
        except RpcFailure:
            raise
        except HypiError as exc:  # a component's refusal (registry, paths, spawner) is the caller's answer
            raise RpcFailure(exc.code, exc.message) from None

    def _note_unknown(self, method: str, model: type[BaseModel], raw: dict[str, Any] | None) -> None:
        """Unknown params (a newer peer's) are ignored; each (method, field) is logged once, at debug."""
        for name in unknown_fields(model, raw):
            key = f"{method}.{name}"
            if key not in self._unknown_seen and len(self._unknown_seen) < 1000:
                self._unknown_seen.add(key)
                log.debug("unknown param ignored (a newer peer?)", method=method, field=name)

    # -- methods ------------------------------------------------------------
    async def _m_register(self, params: RegisterParams, conn: Hashable, peer: str) -> dict:
        """Join (or rejoin) the roster; the rules are ``Registry.register``'s.

        A refusal (someone else's id, an address held from another peer, the limits) is an error answer and a
        warning line; nothing changes. ``node_secret`` is in the answer only when it was issued here (the id's
        first registration presented none), so only the registering connection ever sees it. A ``host`` the
        proxy will not dial (not this connection's address) is ignored with an info line, not refused: bridges
        that send their bind address keep working, and the proxy dials where they are.
        """
        problem = incompatibility(
            params.protocol_version, f"the agent {params.id[:64]!r}", "the hypivisor",
            "the agent's pi-socket (pip install -U hyper-pi, then python -m pi_socket install)",
        )  # fmt: skip
        if problem is not None:
            log.warning("register refused: protocol mismatch", node_id=params.id, remote=peer,
                        version=params.protocol_version)  # fmt: skip
            raise RpcFailure(ErrorCode.VERSION_MISMATCH, problem)
        now = time.time()
        try:
            node, issued, events = self.registry.register(params, conn, peer, now, secrets.token_urlsafe(32))
        except RegistryError as exc:
            log.warning("register refused", node_id=params.id, remote=peer, code=exc.code, reason=exc.message[:200])
            raise
        self.publish(events)
        hold = self.budget.report(node, params.spend, now, registered=True, sync_self=params.attention is None)
        self._attention_report(node, params, now)
        if not self.spawner.node_registered(node, params.spawn_id):
            self.machines.node_registered(node, params.spawn_id)
        log.info("node registered", node_id=node.id, machine=node.machine, port=node.port, cwd=node.cwd)
        entry = self.registry.get(node.id)
        if params.host and entry is not None and entry.host != params.host:
            log.info("register: host ignored, the proxy dials the connection's address", node_id=node.id,
                     host=params.host[:64], dials=entry.host)  # fmt: skip
        result = RegisterResult(node=node, heartbeat_interval=self.registry.heartbeat_interval, node_secret=issued,
                                hold=hold)  # fmt: skip
        excluded = {"node_secret"} if issued is None else set()
        return result.model_dump(mode="json", exclude=excluded | ({"hold"} if hold is None else set()))

    async def _m_heartbeat(self, params: HeartbeatParams, conn: Hashable, peer: str) -> dict:
        """Only the connection that owns the node (1006 otherwise: the bridge registers again)."""
        now = time.time()
        self.publish(self.registry.heartbeat(params, conn, now))
        entry = self.registry.get(params.id)
        hold = None
        if entry is not None:
            hold = self.budget.report(entry.node, params.spend, now, registered=False,
                                      sync_self=params.attention is None)  # fmt: skip
            if params.attention is not None:
                self._attention_report(entry.node, params, now)
        return HeartbeatResult(hold=hold).model_dump(mode="json", exclude_none=True)

    async def _m_deregister(self, params: DeregisterParams, conn: Hashable, peer: str) -> dict:
        """Only the connection that owns the node (1002 otherwise); a dashboard owns nothing."""
        self.publish(self.registry.deregister(params.id, conn, time.time()))
        log.info("node deregistered", node_id=params.id)
        return OkResult(status="deregistered").model_dump(mode="json")

    async def _m_list_nodes(self, params: ListNodesParams, conn: Hashable, peer: str) -> dict:
        """A ``ListNodesResult`` from the cached serialisation; ``cursor``/``limit`` page a large roster, and a
        page never holds more than ``LIST_PAGE_BYTES`` of nodes (``next_cursor`` says where the rest starts)."""
        snap = self._roster(exact=True)
        if params.cursor == 0 and params.limit is None:
            return snap.first_page
        return _page(snap.nodes, params.cursor, len(snap.nodes) if params.limit is None else params.limit)

    async def _m_list_directories(self, params: ListDirectoriesParams, conn: Hashable, peer: str) -> dict:
        if not self.machines.book.is_own(params.machine):  # that machine lists, under its own $HOME policy
            answer = await self.machines.request(
                params.machine or "", "list_directories", {"path": params.path}, LIST_TIMEOUT_S
            )
            return _checked(ListDirectoriesResult, answer, params.machine or "")
        listing = await asyncio.to_thread(paths.list_directories, params.path, self.home)
        return await asyncio.to_thread(worktree.annotate, ListDirectoriesResult(
            path=listing.path,
            parent=listing.parent,
            home=listing.home,
            directories=[DirectoryEntry(name=n, path=p) for n, p in listing.directories],
        ).model_dump(mode="json"))  # fmt: skip

    async def _m_list_attention(self, params: ListAttentionParams, conn: Hashable, peer: str) -> dict:
        if self.cluster is not None:  # the site's inbox: every hypivisor's items (hypivisor/cluster/inbox.py)
            return self.cluster.inbox.list_attention()
        book = self.attention
        return ListAttentionResult(items=book.open_items(), unread=dict(book.unread)).model_dump(mode="json")

    async def _m_mark_read(self, params: MarkReadParams, conn: Hashable, peer: str) -> dict:
        """A person read this agent: its finished/error/exited items end and its unread count is 0, everywhere."""
        now = time.time()
        self.hub.publish(self.attention.mark_read(params.node_id, now))
        self.publish(self.registry.set_unread(params.node_id, 0))
        if self.cluster is not None:  # and on every other hypivisor (its items, its holder's count)
            await self.cluster.inbox.mark_read(params.node_id)
        return {"status": "ok", "node_id": params.node_id, "unread": 0}

    async def _m_dismiss_attention(self, params: DismissAttentionParams, conn: Hashable, peer: str) -> dict:
        if self.cluster is not None and params.id not in self.attention.items:  # another hypivisor's item
            if await self.cluster.inbox.dismiss(params.id):
                return {"status": "dismissed", "id": params.id}
        events = self.attention.dismiss(params.id, time.time())
        if events is None:
            raise RpcFailure(ErrorCode.NOT_FOUND, f"no open inbox item {params.id[:128]!r} (already resolved?)")
        self.hub.publish(events)
        return {"status": "dismissed", "id": params.id}

    # -- Web Push (specs/push.md) ------------------------------------------------
    async def _m_push_config(self, params: PushConfigParams, conn: Hashable, peer: str) -> dict:
        push = self.push
        return PushConfigResult(enabled=True, public_key=push.public_key, kinds=list(PUSH_KINDS),
                                device=push.device(params.device_id)).model_dump(mode="json")  # fmt: skip

    async def _m_push_subscribe(self, params: PushSubscribeParams, conn: Hashable, peer: str) -> dict:
        try:
            device = self.push.subscribe(params.device_id, params.subscription, params.kinds, params.muted)
        except SubscriptionError as exc:
            raise RpcFailure(ErrorCode.INVALID_PARAMS, str(exc)) from None
        return {"status": "subscribed", "device": device.model_dump(mode="json")}

    async def _m_push_unsubscribe(self, params: PushUnsubscribeParams, conn: Hashable, peer: str) -> dict:
        gone = self.push.unsubscribe(params.device_id)
        return {"status": "unsubscribed" if gone else "not_subscribed", "device_id": params.device_id}

    async def _m_set_push_prefs(self, params: SetPushPrefsParams, conn: Hashable, peer: str) -> dict:
        device = self.push.set_prefs(params.device_id, params.kinds, params.muted)
        if device is None:
            raise RpcFailure(ErrorCode.NOT_FOUND, f"device {params.device_id[:64]!r} has not subscribed")
        return {"status": "ok", "device": device.model_dump(mode="json")}

    async def _m_set_presence(self, params: SetPresenceParams, conn: Hashable, peer: str) -> dict:
        """Kept while this /ws connection lasts; a person looking at an agent suppresses its notifications."""
        self.push.set_presence(str(conn), params.device_id, params.node_id, params.focused, params.visible)
        return {"status": "ok"}

    # -- spend and budgets (specs/budgets.md) ----------------------------------------
    async def _m_get_spend(self, params: GetSpendParams, conn: Hashable, peer: str) -> dict:
        return self.budget.get_spend(params, time.time())

    async def _m_get_totals(self, params: GetTotalsParams, conn: Hashable, peer: str) -> dict:
        return self.budget.get_totals(time.time())

    async def _m_list_budgets(self, params: ListBudgetsParams, conn: Hashable, peer: str) -> dict:
        return self.budget.list_budgets()

    async def _m_set_budget(self, params: SetBudgetParams, conn: Hashable, peer: str) -> dict:
        try:
            return self.budget.set_budget(params, time.time())
        except BudgetError as exc:
            raise RpcFailure(exc.code, exc.message) from None

    async def _m_override_budget(self, params: OverrideBudgetParams, conn: Hashable, peer: str) -> dict:
        try:
            return self.budget.override(params, time.time())
        except BudgetError as exc:
            raise RpcFailure(exc.code, exc.message) from None

    # -- past sessions (specs/sessions.md) ----------------------------------------------
    async def _m_list_sessions(self, params: ListSessionsParams, conn: Hashable, peer: str) -> dict:
        return await self.sessions.list_sessions(params)

    async def _m_read_session(self, params: ReadSessionParams, conn: Hashable, peer: str) -> dict:
        return await self.sessions.read_session(params)

    async def _m_search(self, params: SearchParams, conn: Hashable, peer: str) -> dict:
        return await self.sessions.search(params, self.senders.get(conn))

    async def _m_resume_session(self, params: ResumeSessionParams, conn: Hashable, peer: str) -> dict:
        """``pi --session <file>`` (or ``--fork``) in the session's folder, spawned as spawn_agent spawns."""
        if not self.spawn_allowed():
            raise RpcFailure(ErrorCode.FORBIDDEN, "resume_session is refused: bound to a non-loopback address "
                                                  "without HYPI_TOKEN (as spawn_agent)")  # fmt: skip
        # another machine spawns with its own HYPI_SPAWN_COMMAND and checks it itself
        template = self.config.spawn_command if self.machines.book.is_own(params.machine) else None
        if template and not spawn_cmd.template_resumes(template):
            raise RpcFailure(ErrorCode.SPAWN_FAILED, "HYPI_SPAWN_COMMAND cannot resume a session: it must pass "
                                                     f'--session "${spawn_cmd.SESSION_FILE_VAR}" to pi')  # fmt: skip
        if template and params.fork and not spawn_cmd.template_forks(template):
            raise RpcFailure(ErrorCode.SPAWN_FAILED, "HYPI_SPAWN_COMMAND cannot fork a session: it must pass "
                                                     f'--fork instead of --session when ${spawn_cmd.FORK_VAR} is 1')  # fmt: skip

        async def spawn(target: paths.SpawnTarget, session_file: str, fork: bool) -> dict:
            self.spawner.admit()
            try:
                return await self._spawn_admitted(target, session_file, fork)
            finally:
                self.spawner.release()

        return await self.sessions.resume_session(params, spawn)

    def spawn_allowed(self) -> bool:
        c = self.config
        return bool(c.token) or is_loopback(c.host) or c.allow_unauthenticated_spawn

    async def _m_spawn_agent(self, params: SpawnAgentParams, conn: Hashable, peer: str) -> dict:
        if not self.spawn_allowed():
            raise RpcFailure(
                ErrorCode.FORBIDDEN,
                "spawn_agent is refused: bound to a non-loopback address without HYPI_TOKEN "
                "(set HYPI_TOKEN, bind --host 127.0.0.1, or pass --allow-unauthenticated-spawn)",
            )
        if not self.machines.book.is_own(params.machine):  # that machine validates, creates and starts pi
            return await self._spawn_on(params.machine or "", params)
        # validation first (it creates nothing): a bad path gets its own error and costs no spawn budget
        target = await asyncio.to_thread(paths.spawn_target, params.path, params.new_folder, self.home)
        session_file = None
        if params.session_file is not None:
            session_file = await self._resumable(params, target)
        if params.worktree is not None:  # a new git worktree on a new branch (hypivisor/worktree.py)
            return await self._spawn_worktree(target, params)
        self.spawner.admit()
        try:
            return await self._spawn_admitted(target, session_file)
        finally:
            self.spawner.release()

    async def _spawn_worktree(self, target: paths.SpawnTarget, params: SpawnAgentParams) -> dict:
        """pi in a new worktree of the repository holding ``target``; a failed spawn removes it and its branch."""
        if params.new_folder is not None or params.session_file is not None:
            raise RpcFailure(ErrorCode.INVALID_PARAMS, "worktree is not combined with new_folder or session_file")
        plan = await worktree.plan(target.path, params.worktree.branch if params.worktree else None, self.home)
        self.spawner.admit()
        try:
            async with worktree.prepared(plan) as made:
                return await self._spawn_admitted(paths.SpawnTarget(made.cwd, create=False))
        finally:
            self.spawner.release()

    async def _m_remove_worktree(self, params: RemoveWorktreeParams, conn: Hashable, peer: str) -> dict:
        """Remove a linked worktree on request: refused while an active agent of that machine runs in it (1011),
        and as spawning is refused (a destructive request); the machine checks the rest (hypivisor/worktree.py)."""
        if not self.spawn_allowed():
            raise RpcFailure(ErrorCode.FORBIDDEN, "remove_worktree is refused like spawn_agent: bound to a "
                             "non-loopback address without HYPI_TOKEN")  # fmt: skip
        own = self.machines.book.is_own(params.machine)
        here = self.machines.book.own_name if own else (params.machine or "")
        path = await asyncio.to_thread(paths.resolve_dir, params.path, self.home) if own else params.path
        busy = worktree.agents_in(self.registry.nodes(), here, path)
        if busy:
            raise RpcFailure(ErrorCode.AGENT_BUSY, f"agent {busy[0].id[:64]!r} runs in this worktree; stop it first")
        if not own:
            data = params.model_dump(mode="json", exclude={"machine"})
            answer = await self.machines.request(here, "remove_worktree", data, worktree.GIT_TIMEOUT_S * 3)
            return _checked(RemoveWorktreeResult, answer, here)
        result = await worktree.remove(params.path, self.home, params.force, params.delete_branch)
        log.info("worktree removed", path=spawn_cmd.printable(str(result["path"]), lines=False)[:300])
        return RemoveWorktreeResult.model_validate(result).model_dump(mode="json")

    async def _resumable(self, params: SpawnAgentParams, target: paths.SpawnTarget) -> str:
        """The validated session file to resume (``paths.session_file``), or a refusal before anything starts."""
        if params.new_folder is not None or target.create:
            raise RpcFailure(
                ErrorCode.INVALID_PARAMS, "session_file resumes a session in its own folder: no new_folder"
            )
        template = self.config.spawn_command
        if template and not spawn_cmd.template_resumes(template):
            raise RpcFailure(
                ErrorCode.SPAWN_FAILED,
                f'HYPI_SPAWN_COMMAND cannot resume a session: it must pass --session "${spawn_cmd.SESSION_FILE_VAR}" to pi',
            )
        return await asyncio.to_thread(paths.session_file, params.session_file or "", target.path, self.home)

    async def _spawn_admitted(
        self, target: paths.SpawnTarget, session_file: str | None = None, fork: bool = False
    ) -> dict:
        try:
            if target.create:
                await asyncio.to_thread(os.mkdir, target.path, 0o755)
        except OSError as exc:
            raise RpcFailure(ErrorCode.SPAWN_FAILED, f"cannot create folder: {exc.strerror}") from None
        env = spawn_cmd.child_env(self.env, f"ws://127.0.0.1:{self.config.port}/ws", self.config.token)
        if fork:  # pi --fork <session_file>: a new session copied from it (spawn_cmd.tmux_argv)
            env[spawn_cmd.FORK_VAR] = "1"
        shown = spawn_cmd.printable(target.path, lines=False)
        log.info("spawning agent", path=shown, resume=session_file is not None)
        try:
            node, session = await self.spawner.spawn(target.path, env, time.time(), session_file)
        except BaseException as exc:
            if target.create:  # a failed spawn leaves nothing behind: not even the folder it made
                await asyncio.to_thread(_remove_empty_dir, target.path)
            if not isinstance(exc, (SpawnError, spawn_cmd.TemplateError)):
                raise
            code = getattr(exc, "code", ErrorCode.SPAWN_FAILED)
            log.warning("spawn failed", path=shown, code=code, error=spawn_cmd.printable(str(exc))[:300])
            raise RpcFailure(code, getattr(exc, "message", str(exc))) from None
        node = self._spawned_in(node, session)
        return SpawnAgentResult(node_id=node.id, tmux_session=session, path=target.path, node=node).model_dump(
            mode="json"
        )

    def _spawned_in(self, node: NodeInfo, session: str | None) -> NodeInfo:
        """Note on the roster which tmux session the spawn started ``node`` in (Pi-DE shows `tmux attach`)."""
        if not isinstance(session, str) or not session:
            return node
        self.publish(self.registry.set_tmux_session(node.id, session[:200]))
        entry = self.registry.get(node.id)
        return entry.node.model_copy() if entry is not None else node

    async def _spawn_on(self, machine: str, params: SpawnAgentParams) -> dict:
        data = params.model_dump(mode="json", exclude={"machine"}, exclude_none=True)
        log.info("spawning agent on a machine", machine=machine[:255])
        answer = await self.machines.spawn(machine, data, self.config.spawn_timeout)
        node_id = answer.get("node_id")
        entry = self.registry.get(node_id) if isinstance(node_id, str) else None
        if entry is None:
            raise RpcFailure(ErrorCode.SPAWN_FAILED, f"machine {machine[:255]!r} answered with an unknown agent")
        session = answer.get("tmux_session")
        node = self._spawned_in(entry.node, session if isinstance(session, str) else None)
        return SpawnAgentResult(
            node_id=node.id, tmux_session=session if isinstance(session, str) else None,
            path=str(answer.get("path") or node.cwd), node=node,
        ).model_dump(mode="json")  # fmt: skip

    # -- machines (specs/machines.md) ---------------------------------------------
    async def _m_register_machine(self, params: RegisterMachineParams, conn: Hashable, peer: str) -> dict:
        """A machine service joins; the connection then answers for that machine (``machine_reply``)."""
        problem = incompatibility(params.protocol_version, f"the machine {params.name[:64]!r}", "the hypivisor",
                                  "the machine's pi-socket (pip install -U hyper-pi)")  # fmt: skip
        if problem is not None:
            raise RpcFailure(ErrorCode.VERSION_MISMATCH, problem)
        c = self.config
        if not c.token and not c.allow_unauthenticated_remote and not peer_is_loopback(peer):
            raise RpcFailure(ErrorCode.FORBIDDEN, "register_machine from another machine needs HYPI_TOKEN on the "
                             "hypivisor (or --allow-unauthenticated-remote)")  # fmt: skip
        facts = MachineFacts.model_validate(params.model_dump(include=set(MachineFacts.model_fields)))
        try:
            if self.cluster is not None:  # a name another hypivisor lists is taken only with its secret
                self.cluster.machines.check_register(params.name, params.machine_secret)
            info, issued, events = self.machines.book.register(
                params.name, facts, params.machine_secret, conn, time.time(), secrets.token_urlsafe(32)
            )
        except MachineError as exc:
            log.warning("register_machine refused", machine=params.name[:255], remote=peer, reason=exc.message[:200])
            raise
        self.hub.publish(events)
        if events:
            log.info("machine registered", machine=params.name[:255], remote=peer)
        result = RegisterMachineResult(machine=info, machine_secret=issued)
        return result.model_dump(mode="json", exclude=set() if issued else {"machine_secret"})

    async def _m_list_machines(self, params: ListMachinesParams, conn: Hashable, peer: str) -> dict:
        return ListMachinesResult(machines=self.machines.book.machines()).model_dump(mode="json")

    async def _m_machine_reply(self, params: MachineReplyParams, conn: Hashable, peer: str) -> dict:
        if self.machines.book.name_of(conn) is None or not self.machines.reply(conn, params):
            raise RpcFailure(ErrorCode.NOT_FOUND, "no request with this rid is waiting for this connection")
        return {"status": "ok"}

    async def _m_dial_back_result(self, params: Any, conn: Hashable, peer: str) -> dict:
        """A bridge's answer to a dial-back: one this hypivisor forwarded for another (cluster mode, specs/cluster.md
        §7), or a failed one of its own (its link connects directly at once instead of after the nonce's life)."""
        if self.cluster is not None and self.cluster.dial_back_result(conn, params.nonce, params.ok, params.error):
            return {}
        if not params.ok and self.dial_back_failed is not None:  # one of this hypivisor's own dial-backs
            self.dial_back_failed(conn, params.nonce)
        return {}

    async def _m_machine_index_progress(self, params: MachineIndexProgressParams, conn: Hashable, peer: str) -> dict:
        return self.sessions.machine_progress(self.machines.book.name_of(conn), params)

    async def _m_decide_approval(self, params: DecideApprovalParams, conn: Hashable, peer: str) -> dict:
        """A person's answer to an agent's open approval: the first wins (cluster-wide with ``--nats``)."""
        from hypivisor.cluster.approvals import decide  # no cost to a process that never decides this way

        return await decide(self, params)

    def connection_closed(self, conn: Hashable) -> None:
        """A /ws connection ended: its machine (if it registered one) goes offline, its requests fail."""
        self.hub.publish(self.machines.detach(conn, time.time()))


Handler = Callable[[Service, Any, Hashable, str], Awaitable[dict]]

# One handler per method of ``REGISTRY_METHODS`` (checked at import): what ``dispatch`` calls, and nothing else.
METHOD_HANDLERS: dict[str, Handler] = {
    "register": Service._m_register,
    "deregister": Service._m_deregister,
    "heartbeat": Service._m_heartbeat,
    "list_nodes": Service._m_list_nodes,
    "list_directories": Service._m_list_directories,
    "spawn_agent": Service._m_spawn_agent,
    "remove_worktree": Service._m_remove_worktree,
    "list_attention": Service._m_list_attention,
    "mark_read": Service._m_mark_read,
    "dismiss_attention": Service._m_dismiss_attention,
    "push_config": Service._m_push_config,
    "push_subscribe": Service._m_push_subscribe,
    "push_unsubscribe": Service._m_push_unsubscribe,
    "set_push_prefs": Service._m_set_push_prefs,
    "set_presence": Service._m_set_presence,
    "get_spend": Service._m_get_spend,
    "get_totals": Service._m_get_totals,
    "set_budget": Service._m_set_budget,
    "list_budgets": Service._m_list_budgets,
    "override_budget": Service._m_override_budget,
    "list_sessions": Service._m_list_sessions,
    "read_session": Service._m_read_session,
    "resume_session": Service._m_resume_session,
    "search": Service._m_search,
    "register_machine": Service._m_register_machine,
    "list_machines": Service._m_list_machines,
    "machine_reply": Service._m_machine_reply,
    "machine_index_progress": Service._m_machine_index_progress,
    "dial_back_result": Service._m_dial_back_result,
    "decide_approval": Service._m_decide_approval,
}
if METHOD_HANDLERS.keys() != REGISTRY_METHODS.keys():  # pragma: no cover - a programming error, caught at import
    raise RuntimeError(
        f"methods without a handler or a params model: {METHOD_HANDLERS.keys() ^ REGISTRY_METHODS.keys()}"
    )


def _page(nodes: list[bytes], cursor: int, limit: int) -> dict[str, Any]:
    """``list_nodes``' answer: up to ``limit`` serialised nodes from ``cursor``, within ``LIST_PAGE_BYTES``."""
    end, size, stop = cursor, 0, min(len(nodes), cursor + limit)
    while end < stop and (end == cursor or size + len(nodes[end]) <= LIST_PAGE_BYTES):
        size += len(nodes[end]) + 1
        end += 1
    return {"nodes": orjson.Fragment(b"[" + b",".join(nodes[cursor:end]) + b"]"),
            "next_cursor": end if end < len(nodes) else None}  # fmt: skip


def machine_name(env: dict[str, str]) -> str:
    """This machine's name on the roster: ``PI_SOCKET_MACHINE``, else the host name (what bridges send)."""
    return (env.get("PI_SOCKET_MACHINE") or "").strip()[:255] or socket.gethostname() or "localhost"


def _checked(model: type[BaseModel], answer: dict[str, Any], machine: str) -> dict:
    """A machine's answer in the shape the method promises, or a clear error (never a malformed result)."""
    try:
        return model.model_validate(answer).model_dump(mode="json")
    except ValidationError:
        raise RpcFailure(ErrorCode.INTERNAL_ERROR, f"machine {machine[:255]!r} sent a malformed answer") from None


def _remove_empty_dir(path: str) -> None:
    """Remove a folder spawn_agent created, if nothing was put in it meanwhile."""
    try:
        os.rmdir(path)
    except OSError:
        pass
