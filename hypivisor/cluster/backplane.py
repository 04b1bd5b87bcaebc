"""The backplane: what hypivisors share (registry, events, inbox, approvals, routing), behind one interface.

A hypivisor never talks to NATS (or to its own dicts) directly for these five things; it talks to a
:class:`Backplane`. Two implementations keep the same contract (tested by one parametrised test):

* :class:`InProcessBackplane` over an :class:`InProcessHub`: one process, no broker (the default). Several
  backplanes on one hub behave like several hypivisors on one cluster, which is how the contract is tested.
* ``NatsBackplane`` (:mod:`hypivisor.cluster.nats_backplane`): JetStream KV, streams and core request/reply.

The pure state machines (``hypivisor.registry``, ``hypivisor.attention``) stay pure: the backplane only carries
their inputs and outputs (records, items, decisions) between hypivisors, as JSON (orjson).

The contract:

* **Registry**: :meth:`Backplane.register_agent` writes the agent's record under its :class:`AgentKey` and keeps
  it alive (a heartbeat every ``heartbeat_s``) until :meth:`Backplane.unregister_agent` (a delete) or the owner
  stops (a crash, or :meth:`Backplane.close` with ``deregister=False``): then the record expires after ``ttl_s``
  and every watcher sees ``expired``. Every backplane mirrors the roster of its watched sites in memory
  (:meth:`Backplane.agents`: a snapshot at start, then live) and calls its listeners with each
  :class:`AgentChange`.
* **Events**: :meth:`Backplane.publish_event` reaches every subscriber whose pattern matches, on any
  hypivisor, at most once each (not stored: a subscriber that is away misses them).
* **Approvals**: the owner opens an approval (:meth:`Backplane.open_approval`); the first
  :meth:`Backplane.decide_approval` wins cluster-wide (compare-and-set on the record's revision); any later one,
  from anywhere, raises :class:`ApprovalConflict` naming the winner; an unknown id raises
  :class:`ApprovalUnknown`.
* **Attention**: :meth:`Backplane.publish_attention` appends to the site's durable inbox stream; every
  :meth:`Backplane.consume_attention` handler of the site shares one queue, so each item is handled by exactly one
  of them (at least once: an item whose handler fails or dies unacknowledged is handed out again).
* **Routing**: :meth:`Backplane.serve_agent` makes this hypivisor answer the agent's requests;
  :meth:`Backplane.request_agent` from any hypivisor reaches it, or raises :class:`NoOwner` at once when nobody
  serves the agent (no timeout to wait out).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import math
import time
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson
import structlog

from hypivisor.cluster.feed import gather_delay
from hypivisor.cluster.names import AgentKey, check_site, hv_agents_subject, machine_rpc_subject, subject_matches

log = structlog.get_logger(part="cluster")

Record = dict[str, Any]
EventHandler = Callable[["Event"], Awaitable[None]]
AttentionHandler = Callable[[Record], Awaitable[None]]
RpcHandler = Callable[[bytes], Awaitable[bytes]]
ChangeListener = Callable[["AgentChange"], None]
ApprovalListener = Callable[[AgentKey, str, "Record"], None]
Unsubscribe = Callable[[], Awaitable[None]]

DEFAULT_TTL_S = 45.0  # a record not refreshed for this long expires (specs/cluster.md)
DEFAULT_HEARTBEAT_S = 15.0
RETRY_S = 0.5  # a failed put is tried again this often
ATTN_REPLAY_MAX = 20_000  # items an inbox replay reads at most (the inbox's own bound)
CLOSE_DELETE_S = 2.0  # a clean stop's delete of each owned record waits at most this long


class BackplaneError(Exception):
    """A backplane request that cannot be done (the message says why)."""


class NoOwner(BackplaneError):
    """No hypivisor serves this agent (or machine) now."""


NOT_SERVED = b'{"error":"NoOwner: not served here"}'  # a hypivisor's answer for an agent it does not hold now


class RequestTimeout(BackplaneError):
    """The owner did not answer in time (slow, or it stopped serving a moment ago)."""


class ApprovalUnknown(BackplaneError):
    """No approval with this id was opened (or it expired)."""


class ApprovalConflict(BackplaneError):
    """The approval was already decided; ``winner`` is the decision that counts."""

    def __init__(self, message: str, winner: Record) -> None:
        super().__init__(message)
        self.winner = winner


@dataclass(frozen=True)
class AgentChange:
    """One change of the shared roster: ``put`` (new or refreshed record), ``deleted`` (its owner removed it) or
    ``expired`` (nobody refreshed it within the TTL)."""

    op: Literal["put", "deleted", "expired"]
    key: AgentKey
    record: Record | None
    revision: int


@dataclass(frozen=True)
class Event:
    subject: str
    data: bytes


@dataclass
class Settings:
    hv_id: str
    site: str
    watch_sites: tuple[str, ...] = ()  # sites whose roster this hypivisor mirrors (its own is always one)
    # liveness "agent": every record is put again every heartbeat_s and expires ttl_s after its last put;
    # "lease": records are put only when they change, the hypivisor's lease is put every heartbeat_s and expires
    # ttl_s after its last put, taking every record of that hypivisor with it (specs/cluster.md §3)
    liveness: Literal["agent", "lease"] = "agent"
    ttl_s: float = DEFAULT_TTL_S
    heartbeat_s: float = DEFAULT_HEARTBEAT_S

    def __post_init__(self) -> None:
        check_site(self.site)
        for s in self.watch_sites:
            check_site(s)
        if not self.hv_id:
            raise ValueError("a hypivisor needs an id")
        if self.liveness not in ("agent", "lease"):
            raise ValueError("liveness is agent or lease")
        if not 0 < self.heartbeat_s < self.ttl_s:
            raise ValueError("the heartbeat must be shorter than the TTL")

    @property
    def sites(self) -> tuple[str, ...]:
        return (self.site, *(s for s in self.watch_sites if s != self.site))


def stale_offline(theirs: Record, mine: Record) -> bool:
    """Another hypivisor wrote the agent offline while it is live on this one (its record here is not offline)."""
    return theirs.get("status") == "offline" and mine.get("status") != "offline"


def dumps(record: Record) -> bytes:
    return orjson.dumps(record)


def loads(data: bytes) -> Record:
    value = orjson.loads(data)
    if not isinstance(value, dict):
        raise BackplaneError("a backplane record must be a JSON object")
    return value


class Backplane(ABC):
    """Base: the roster mirror, listeners and the heartbeat loop are shared; the transport is abstract."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._roster: dict[AgentKey, Record] = {}
        self._listeners: list[ChangeListener] = []
        # told True before the changes of one batch (another owner's feed message) and False after them: a listener
        # may show a batch's changes together (hypivisor.cluster.link)
        self._batch_listeners: list[Callable[[bool], None]] = []
        self._owned: dict[AgentKey, Record] = {}
        self._unsaved: set[AgentKey] = set()  # owned records whose last put failed
        self._heartbeat_task: asyncio.Task[None] | None = None
        self._closed = False
        self._agent_handlers: dict[AgentKey, RpcHandler] = {}  # own agents' request handlers (serve_agent)
        self._agents_served: Unsubscribe | None = None
        self._agents_lock = asyncio.Lock()

    @property
    def hv_id(self) -> str:
        return self.settings.hv_id

    # --- lifecycle ---------------------------------------------------------------------------------------------

    async def start(self) -> None:
        await self._start()
        self._heartbeat_task = asyncio.create_task(self._heartbeat_loop(), name=f"cluster-heartbeat-{self.hv_id}")

    async def close(self, deregister: bool = True) -> None:
        """Stop. ``deregister``: delete the agents this hypivisor owns (a clean stop); without it they expire after
        the TTL, as after a crash."""
        if self._closed:
            return
        self._closed = True
        if self._heartbeat_task is not None:
            self._heartbeat_task.cancel()
            await bounded(self._heartbeat_task, CLOSE_DELETE_S)
        if deregister:
            for key in list(self._owned):
                await bounded(self._delete_agent(key), CLOSE_DELETE_S)
            if self.settings.liveness == "lease":
                await bounded(self._delete_lease(), CLOSE_DELETE_S)
        self._owned.clear()
        await self._close()

    async def _heartbeat_loop(self) -> None:
        """Every ``heartbeat_s`` put every owned record again (agent liveness) or this hypivisor's lease (lease
        liveness); a put that failed (the store is electing a leader) is tried again every ``RETRY_S`` until it
        lands, so the latest record always ends up stored."""
        next_beat = asyncio.get_running_loop().time() + self.settings.heartbeat_s
        while True:
            # on the wall clock's multiples of the period: the same wake-up as the roster's gathered puts (feed.py)
            await asyncio.sleep(gather_delay(time.time(), min(RETRY_S, self.settings.heartbeat_s)))
            now = asyncio.get_running_loop().time()
            beat = now >= next_beat
            if beat:
                next_beat = now + self.settings.heartbeat_s
            lease = self.settings.liveness == "lease"
            if beat and lease:
                try:
                    await self._put_lease()
                except Exception as e:
                    log.warning("cluster_lease_put_failed", error=f"{type(e).__name__}: {e}")
            self._unsaved.update(self._overdue(now))
            self._retry_deletes(now)
            for key in list(self._owned if beat and not lease else self._unsaved):
                record = self._owned.get(key)
                if record is None:
                    self._unsaved.discard(key)
                    continue
                await self._save(key, record)

    def _overdue(self, now: float) -> list[AgentKey]:
        """Owned records whose put went out without an answer and has not been seen stored in time (a transport
        that confirms a put by its echo in the watch); they are put again."""
        return []

    def _retry_deletes(self, now: float) -> None:
        """Deletes of records this hypivisor let go that went out without an answer are published again (a
        transport that confirms deletes by the stream's ack); none here."""
        return None

    async def _save(self, key: AgentKey, record: Record) -> bool:
        try:
            await self._put_agent(key, record)
        except Exception as e:
            self._unsaved.add(key)
            log.warning("cluster_put_failed", agent=key.agent, error=f"{type(e).__name__}: {e}")
            return False
        if self._owned.get(key) is record:
            self._unsaved.discard(key)
        else:  # changed meanwhile: this (older) put may have landed after the newer one; put the newest again
            self._unsaved.add(key)
        return True

    # --- registry ----------------------------------------------------------------------------------------------

    def agents(self) -> dict[AgentKey, Record]:
        """The mirrored roster of the watched sites (a copy)."""
        return dict(self._roster)

    def holder(self, key: AgentKey) -> str | None:
        """The hypivisor the mirrored record names as the agent's owner (None: no record)."""
        record = self._roster.get(key)
        hv = record.get("hv") if record is not None else None
        return hv if isinstance(hv, str) else None

    def on_agent_change(self, listener: ChangeListener) -> None:
        self._listeners.append(listener)

    def on_batch(self, listener: Callable[[bool], None]) -> None:
        """``listener(True)`` before the changes of one batch, ``listener(False)`` after them
        (:meth:`_changes_together`)."""
        self._batch_listeners.append(listener)

    @contextlib.contextmanager
    def _changes_together(self) -> Any:
        """The changes applied inside arrived together (one feed message): batch listeners hear where it ends."""
        for listener in self._batch_listeners:
            listener(True)
        try:
            yield
        finally:
            for listener in self._batch_listeners:
                try:
                    listener(False)
                except Exception as e:  # noqa: BLE001 - a listener's failure must not stop the feed
                    log.error("cluster_listener_failed", error=f"{type(e).__name__}: {e}")

    def _apply(self, change: AgentChange) -> None:
        if change.op != "put" and change.key not in self._roster:
            return  # already gone here (e.g. dropped with its owner's lease, then deleted in the store)
        if change.op == "put" and change.record is not None:
            self._roster[change.key] = change.record
            mine = self._owned.get(change.key)
            if mine is not None and change.record.get("hv") != self.hv_id:
                if stale_offline(change.record, mine):
                    # the agent's previous hypivisor noticed late that its connection went: the agent is live here
                    self._unsaved.add(change.key)  # put ours again (within RETRY_S)
                else:
                    # the agent registered with another hypivisor: it owns the record now
                    self._owned.pop(change.key, None)
                    self._unsaved.discard(change.key)
        else:
            self._roster.pop(change.key, None)
            if change.key in self._owned:
                # removed by another hypivisor (a late delete from the agent's previous one, or this one's lease
                # ended while it was cut off): the agent is still ours, so its record is put again
                self._unsaved.add(change.key)
        for listener in list(self._listeners):
            try:
                listener(change)
            except Exception as e:
                log.error("cluster_listener_failed", error=f"{type(e).__name__}: {e}")

    async def register_agent(self, key: AgentKey, record: Record) -> bool:
        """Write (or rewrite, on a status change) an agent this hypivisor owns, kept alive until unregistered.
        False when the store did not take it now (a NATS server lost, a leader being elected): it is put again in
        the background every ``RETRY_S`` until it lands, so the caller never has to."""
        if key.site != self.settings.site:
            raise BackplaneError(
                f"agent {key.agent} is on site {key.site}; this hypivisor owns agents of {self.settings.site}"
            )
        record = {**record, "hv": self.hv_id}
        self._owned[key] = record
        return await self._save(key, record)

    async def unregister_agent(self, key: AgentKey) -> None:
        self._owned.pop(key, None)
        self._unsaved.discard(key)
        await self._delete_agent(key)

    def owned(self) -> list[AgentKey]:
        return list(self._owned)

    # --- transport ---------------------------------------------------------------------------------------------

    @abstractmethod
    async def _start(self) -> None: ...

    @abstractmethod
    async def _close(self) -> None: ...

    @abstractmethod
    async def _put_agent(self, key: AgentKey, record: Record) -> None: ...

    @abstractmethod
    async def _delete_agent(self, key: AgentKey) -> None: ...

    @abstractmethod
    async def _put_lease(self) -> None: ...

    @abstractmethod
    async def _delete_lease(self) -> None: ...

    @abstractmethod
    async def publish_event(self, key: AgentKey, kind: str, data: bytes) -> None: ...

    @abstractmethod
    async def subscribe_events(self, pattern: str, handler: EventHandler) -> Unsubscribe:
        """``pattern``: a subject with NATS wildcards, e.g. :func:`names.site_events` or
        :attr:`AgentKey.events_of_agent` (subscribe while a dashboard watches that agent)."""

    @abstractmethod
    async def open_approval(self, key: AgentKey, approval_id: str, record: Record) -> None: ...

    @abstractmethod
    async def decide_approval(self, key: AgentKey, approval_id: str, decision: Record) -> Record:
        """The stored decided record when this decision won; :class:`ApprovalConflict` or
        :class:`ApprovalUnknown` otherwise."""

    @abstractmethod
    async def get_approval(self, key: AgentKey, approval_id: str) -> Record | None: ...

    @abstractmethod
    async def overwrite_approval(self, key: AgentKey, approval_id: str, record: Record) -> None:
        """Put ``record`` whatever is stored (the owner's correction: what the agent's gate really decided)."""

    @abstractmethod
    async def watch_approvals(self, listener: ApprovalListener) -> None:
        """Call ``listener(key, approval_id, record)`` with every approval record of this hypivisor's site: the
        stored ones first, then each put (the owner forwards its agents' decisions)."""

    @abstractmethod
    async def publish_attention(self, key: AgentKey, what: str, item: Record) -> None: ...

    @abstractmethod
    async def consume_attention(self, handler: AttentionHandler) -> Unsubscribe: ...

    @abstractmethod
    async def attention_log(self, limit: int = ATTN_REPLAY_MAX) -> list[Record]:
        """Every kept item of this hypivisor's site in order, the newest ``limit`` at most (an inbox rebuilt after a
        restart); independent of the push queue: replaying takes nothing from it."""

    # --- routing: an agent's requests go to the hypivisor holding its link, a machine's to the one holding its
    # service's connection; a handler's exception is answered as {"error": "<type>: <message>"}

    # An agent's requests go to the hypivisor its shared record names (``holder``), on that hypivisor's one
    # ``hv_agents_subject``, with the agent's KV key and a newline in front of the payload; the holder hands them to
    # the handler served for that key, or answers NOT_SERVED (the requester's NoOwner). One subscription per
    # hypivisor instead of one per agent: a fleet failing over to a hypivisor costs it no subscription each.

    async def serve_agent(self, key: AgentKey, handler: RpcHandler) -> Unsubscribe:
        if key.site != self.settings.site:
            raise BackplaneError(f"agent {key.agent} is on site {key.site}; this hypivisor serves {self.settings.site}")
        async with self._agents_lock:
            if self._agents_served is None:
                self._agents_served = await self._serve(
                    hv_agents_subject(self.settings.site, self.hv_id), self._answer_agent
                )
        self._agent_handlers[key] = handler

        async def unsubscribe() -> None:
            if self._agent_handlers.get(key) is handler:
                del self._agent_handlers[key]

        return unsubscribe

    async def _answer_agent(self, data: bytes) -> bytes:
        head, _, payload = data.partition(b"\n")
        try:
            key = AgentKey.from_kv_key(self.settings.site, head.decode())
        except (ValueError, UnicodeDecodeError):
            raise BackplaneError("a request for an agent must start with its key and a newline") from None
        handler = self._agent_handlers.get(key)
        if handler is None:
            return NOT_SERVED
        return await handler(payload)

    async def request_agent(self, key: AgentKey, data: bytes, timeout: float = 5.0) -> bytes:
        what = f"agent {key.agent} on {key.machine} ({key.site})"
        hv = self.holder(key)
        if hv is None:
            raise NoOwner(f"no hypivisor serves {what}: not in the roster")
        got = await self._request(hv_agents_subject(key.site, hv), key.kv_key.encode() + b"\n" + data, timeout, what)
        if got == NOT_SERVED:
            raise NoOwner(f"no hypivisor serves {what}: {hv} does not hold it now")
        return got

    async def serve_machine(self, site: str, machine: str, handler: RpcHandler) -> Unsubscribe:
        return await self._serve(machine_rpc_subject(site, machine), handler)

    async def request_machine(self, site: str, machine: str, data: bytes, timeout: float = 5.0) -> bytes:
        return await self._request(machine_rpc_subject(site, machine), data, timeout, f"machine {machine} ({site})")

    @abstractmethod
    async def _serve(self, subject: str, handler: RpcHandler) -> Unsubscribe: ...

    @abstractmethod
    async def _request(self, subject: str, data: bytes, timeout: float, what: str) -> bytes:
        """The answer; :class:`NoOwner` at once when nobody serves ``subject``, :class:`RequestTimeout` after
        ``timeout``."""


async def answer(handler: RpcHandler, data: bytes) -> bytes:
    try:
        return await handler(data)
    except Exception as e:
        return dumps({"error": f"{type(e).__name__}: {e}"})


async def bounded(aw: Awaitable[Any], timeout: float) -> None:
    """Await ``aw`` for at most ``timeout`` s, ignoring its errors; past that it is cancelled and left behind (never
    awaited again, so a coroutine that swallows cancellation cannot hold the caller)."""
    task = asyncio.ensure_future(aw)
    done, _ = await asyncio.wait({task}, timeout=timeout)
    if not done:
        task.cancel()
        log.warning("cluster_step_abandoned", step=repr(aw)[:80])
    task.add_done_callback(lambda t: t.cancelled() or t.exception())


async def cancel_until_done(task: asyncio.Future[Any], timeout: float) -> bool:
    """Cancel ``task`` again every 0.1 s until it has ended, for at most ``timeout`` s; True if it ended. One
    cancellation can be lost: Python 3.11's ``asyncio.wait_for`` returns (or raises) its inner result when the
    cancellation lands as that completes, and a caller that retries on that error (nats-py's connect) goes on."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not task.done():
        left = deadline - loop.time()
        if left <= 0:
            return False
        task.cancel()
        await asyncio.wait({task}, timeout=min(0.1, left))
    return True


def pending_approval(owner: str, record: Record, now: float) -> Record:
    return {**record, "state": "pending", "owner": owner, "opened_at": now}


def decided_approval(pending: Record, decision: Record, hv_id: str, now: float) -> Record:
    return {**pending, "state": "decided", "decision": decision, "decided_by_hv": hv_id, "decided_at": now}


def conflict(key: AgentKey, approval_id: str, winner: Record) -> ApprovalConflict:
    d = winner.get("decision") or {}
    return ApprovalConflict(
        f"approval {approval_id} of agent {key.agent} was already decided ({d.get('decision')!s} by "
        f"{d.get('by')!s} on {winner.get('decided_by_hv')!s})",
        winner,
    )


# ---------------------------------------------------------------------------------------------------------------
# In-process: one hub per process (or per simulated cluster in tests), one backplane per hypivisor on it.


@dataclass
class _Stored:
    record: Record
    revision: int
    expires_at: float


@dataclass
class InProcessHub:
    """The shared state of in-process backplanes: what NATS holds in cluster mode."""

    clock: Callable[[], float] = time.monotonic
    agents: dict[str, dict[AgentKey, _Stored]] = field(default_factory=dict)  # site -> key -> stored
    leases: dict[str, dict[str, float]] = field(default_factory=dict)  # site -> hv -> expires at
    approvals: dict[tuple[AgentKey, str], tuple[Record, int]] = field(default_factory=dict)
    attention: dict[str, asyncio.Queue[Record]] = field(default_factory=dict)  # site -> shared work queue
    attention_kept: dict[str, deque[Record]] = field(default_factory=dict)  # site -> the stream's content
    event_subs: dict[int, tuple[str, EventHandler]] = field(default_factory=dict)
    rpc: dict[str, list[RpcHandler]] = field(default_factory=dict)
    backplanes: list[InProcessBackplane] = field(default_factory=list)
    ttl_s: float | None = None
    _seq: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _sweeper: asyncio.Task[None] | None = None

    def next_revision(self) -> int:
        return next(self._seq)

    def notify(self, site: str, change: AgentChange) -> None:
        for bp in list(self.backplanes):
            if site in bp.settings.sites:
                bp._apply(change)

    def approval_changed(self, key: AgentKey, approval_id: str, record: Record) -> None:
        for bp in list(self.backplanes):
            if key.site == bp.settings.site:
                for listener in list(bp._approval_listeners):
                    listener(key, approval_id, record)

    def sweep(self) -> None:
        """Expire every record not refreshed within its TTL (what NATS's limit markers do), and every record of a
        hypivisor whose lease expired."""
        now = self.clock()
        for site, leases in self.leases.items():
            for hv, expires_at in list(leases.items()):
                if expires_at <= now:
                    del leases[hv]
                    self.drop_hv(site, hv)
        for site, stored in self.agents.items():
            for key, s in list(stored.items()):
                if s.expires_at <= now:
                    del stored[key]
                    self.notify(site, AgentChange("expired", key, None, self.next_revision()))

    def drop_hv(self, site: str, hv: str) -> None:
        stored = self.agents.get(site, {})
        for key, s in list(stored.items()):
            if s.record.get("hv") == hv:
                del stored[key]
                self.notify(site, AgentChange("expired", key, None, self.next_revision()))

    async def _sweep_loop(self, every: float) -> None:
        while True:
            await asyncio.sleep(every)
            self.sweep()

    def attach(self, bp: InProcessBackplane) -> None:
        self.backplanes.append(bp)
        if self._sweeper is None or self._sweeper.done():
            every = max(0.05, bp.settings.ttl_s / 10)
            self._sweeper = asyncio.create_task(self._sweep_loop(every), name="cluster-inprocess-sweep")

    async def detach(self, bp: InProcessBackplane) -> None:
        if bp in self.backplanes:
            self.backplanes.remove(bp)
        if not self.backplanes and self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None


class InProcessBackplane(Backplane):
    """Everything in this process's memory (no broker); several on one hub act as a cluster."""

    def __init__(self, settings: Settings, hub: InProcessHub | None = None) -> None:
        super().__init__(settings)
        self.hub = hub if hub is not None else InProcessHub()
        self._subs: set[int] = set()
        self._served: list[tuple[str, RpcHandler]] = []
        self._consumers: list[asyncio.Task[None]] = []
        self._sub_ids = itertools.count(1)
        self._approval_listeners: list[ApprovalListener] = []

    async def _start(self) -> None:
        if self.settings.liveness == "lease":
            await self._put_lease()
        self.hub.sweep()  # what lapsed while no backplane ran is gone before the snapshot
        self.hub.attach(self)
        for site in self.settings.sites:
            for key, s in self.hub.agents.get(site, {}).items():
                self._apply(AgentChange("put", key, s.record, s.revision))

    async def _close(self) -> None:
        for sid in self._subs:
            self.hub.event_subs.pop(sid, None)
        self._subs.clear()
        for subject, handler in self._served:
            handlers = self.hub.rpc.get(subject, [])
            if handler in handlers:
                handlers.remove(handler)
        self._served.clear()
        for task in self._consumers:
            task.cancel()
        for task in self._consumers:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._consumers.clear()
        await self.hub.detach(self)

    async def _put_agent(self, key: AgentKey, record: Record) -> None:
        rev = self.hub.next_revision()
        lasts = self.settings.liveness == "lease"  # kept until deleted or its owner's lease ends
        stored = _Stored(loads(dumps(record)), rev, math.inf if lasts else self.hub.clock() + self.settings.ttl_s)
        self.hub.agents.setdefault(key.site, {})[key] = stored
        self.hub.notify(key.site, AgentChange("put", key, stored.record, rev))

    async def _delete_agent(self, key: AgentKey) -> None:
        if self.hub.agents.get(key.site, {}).pop(key, None) is not None:
            self.hub.notify(key.site, AgentChange("deleted", key, None, self.hub.next_revision()))

    async def _put_lease(self) -> None:
        self.hub.leases.setdefault(self.settings.site, {})[self.hv_id] = self.hub.clock() + self.settings.ttl_s

    async def _delete_lease(self) -> None:
        self.hub.leases.get(self.settings.site, {}).pop(self.hv_id, None)
        self.hub.drop_hv(self.settings.site, self.hv_id)

    async def publish_event(self, key: AgentKey, kind: str, data: bytes) -> None:
        subject = key.event_subject(kind)
        for pattern, handler in list(self.hub.event_subs.values()):
            if subject_matches(pattern, subject):
                try:
                    await handler(Event(subject, data))
                except Exception as e:
                    log.error("cluster_event_handler_failed", subject=subject, error=f"{type(e).__name__}: {e}")

    async def subscribe_events(self, pattern: str, handler: EventHandler) -> Unsubscribe:
        sid = next(self._sub_ids) + id(self) * 1_000_000
        self.hub.event_subs[sid] = (pattern, handler)
        self._subs.add(sid)

        async def unsubscribe() -> None:
            self.hub.event_subs.pop(sid, None)
            self._subs.discard(sid)

        return unsubscribe

    async def open_approval(self, key: AgentKey, approval_id: str, record: Record) -> None:
        pending = pending_approval(self.hv_id, record, time.time())
        self.hub.approvals[(key, approval_id)] = (pending, self.hub.next_revision())
        self.hub.approval_changed(key, approval_id, pending)

    async def decide_approval(self, key: AgentKey, approval_id: str, decision: Record) -> Record:
        found = self.hub.approvals.get((key, approval_id))
        if found is None:
            raise ApprovalUnknown(f"no open approval {approval_id} on agent {key.agent}")
        current, _rev = found
        if current.get("state") != "pending":
            raise conflict(key, approval_id, current)
        decided = decided_approval(current, decision, self.hv_id, time.time())
        self.hub.approvals[(key, approval_id)] = (decided, self.hub.next_revision())  # no await: atomic here
        self.hub.approval_changed(key, approval_id, decided)
        return decided

    async def get_approval(self, key: AgentKey, approval_id: str) -> Record | None:
        found = self.hub.approvals.get((key, approval_id))
        return None if found is None else found[0]

    async def overwrite_approval(self, key: AgentKey, approval_id: str, record: Record) -> None:
        self.hub.approvals[(key, approval_id)] = (record, self.hub.next_revision())
        self.hub.approval_changed(key, approval_id, record)

    async def watch_approvals(self, listener: ApprovalListener) -> None:
        for (key, approval_id), (record, _rev) in list(self.hub.approvals.items()):
            if key.site == self.settings.site:
                listener(key, approval_id, record)
        self._approval_listeners.append(listener)

    def _queue(self, site: str) -> asyncio.Queue[Record]:
        return self.hub.attention.setdefault(site, asyncio.Queue(maxsize=100_000))

    async def publish_attention(self, key: AgentKey, what: str, item: Record) -> None:
        stored = {**item, "_subject": key.attention_subject(what)}
        self._queue(key.site).put_nowait(stored)
        self.hub.attention_kept.setdefault(key.site, deque(maxlen=ATTN_REPLAY_MAX)).append(stored)

    async def attention_log(self, limit: int = ATTN_REPLAY_MAX) -> list[Record]:
        kept = list(self.hub.attention_kept.get(self.settings.site, ()))
        return kept[-limit:] if limit > 0 else []

    async def consume_attention(self, handler: AttentionHandler) -> Unsubscribe:
        queue = self._queue(self.settings.site)

        async def run() -> None:
            while True:
                item = await queue.get()
                try:
                    await handler(item)
                except Exception as e:  # unacknowledged: back for another consumer (as NATS redelivers)
                    log.warning("cluster_attention_handler_failed", error=f"{type(e).__name__}: {e}")
                    queue.put_nowait(item)
                    await asyncio.sleep(0.05)

        task = asyncio.create_task(run(), name=f"cluster-attention-{self.hv_id}")
        self._consumers.append(task)

        async def unsubscribe() -> None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

        return unsubscribe

    async def _serve(self, subject: str, handler: RpcHandler) -> Unsubscribe:
        self.hub.rpc.setdefault(subject, []).append(handler)
        self._served.append((subject, handler))

        async def unsubscribe() -> None:
            handlers = self.hub.rpc.get(subject, [])
            if handler in handlers:
                handlers.remove(handler)
            with contextlib.suppress(ValueError):
                self._served.remove((subject, handler))

        return unsubscribe

    async def _request(self, subject: str, data: bytes, timeout: float, what: str) -> bytes:
        handlers = self.hub.rpc.get(subject)
        if not handlers:
            raise NoOwner(f"no hypivisor serves {what}")
        try:
            return await asyncio.wait_for(answer(handlers[0], data), timeout)
        except TimeoutError:
            raise RequestTimeout(f"{what} did not answer within {timeout} s") from None
