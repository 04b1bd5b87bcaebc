"""The NATS backplane (cluster mode, specs/cluster.md): JetStream KV for the roster and approvals, a JetStream
stream for the inbox, core subjects for events and request/reply routing.

Needs the ``cluster`` extra (``nats-py``) and a NATS server 2.11+ (per-message TTL and KV limit markers: an
expired key reaches every watcher as a PURGE).

Per site ``S`` (created by whichever hypivisor comes first; creating an identical bucket again is a no-op):

* KV ``HP_AGENTS_S``: history 1, key ``<machine>.<agent>`` (tokens of :mod:`hypivisor.cluster.names`) → the
  agent's record plus ``hv`` (its owner). Lease liveness (what the hypivisor runs; KV ``HP_HV_S`` holds the
  leases): the owner puts a record when it changes, with the stream's ack, and publishes what the stream took as
  numbered batches on ``hp.roster.S.<hv>``; the others read the bucket once and follow the batches, reading it
  again after a gap or a reconnect (:mod:`hypivisor.cluster.feed`). Agent liveness (tests): ``ttl`` = the record
  TTL, limit markers, a put on every heartbeat, and a watch (snapshot, then live) on every hypivisor.
* KV ``HP_APPROVALS_S``: key ``<machine>.<agent>.<approval>`` → ``{state: pending, …}``, then, once, ``{state:
  decided, decision, …}`` written with the pending record's revision as the expected last one: the first decision
  wins, a second one gets "wrong last sequence" → :class:`ApprovalConflict`.
* Stream ``HP_ATTN_S`` on ``hp.attn.S.>`` with the durable pull consumer ``pushsender`` that every hypivisor of
  the site fetches from: each item is delivered to one of them and acknowledged after it was handled.
* Events ``hp.evt.S.<machine>.<agent>.<kind>`` and requests ``hp.hv.S.<hv>.agents`` (one per hypivisor, the agent's
  key in front of the payload; queue group ``owner``) are core NATS: not stored, routed by interest; a request
  nobody serves fails at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import nats
import nats.errors
import nats.js.errors
import orjson
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, KeyValueConfig, StorageType, StreamConfig
from nats.js.kv import KV_MARKER_REASON, KV_OP

from hypivisor.cluster.backplane import (
    ATTN_REPLAY_MAX,
    AgentChange,
    ApprovalListener,
    ApprovalUnknown,
    AttentionHandler,
    Backplane,
    BackplaneError,
    Event,
    EventHandler,
    NoOwner,
    Record,
    RequestTimeout,
    RpcHandler,
    Settings,
    Unsubscribe,
    answer,
    bounded,
    cancel_until_done,
    conflict,
    decided_approval,
    dumps,
    loads,
    log,
    pending_approval,
)
from hypivisor.cluster.direct import quiet_ordered_consumer, subscribe_direct
from hypivisor.cluster.feed import GATHER_S, FeedOrder, gather_delay, soon_delay
from hypivisor.cluster.names import (
    AGENTS_BUCKET,
    APPROVALS_BUCKET,
    ATTN_STREAM,
    HV_BUCKET,
    OWNER_QUEUE,
    PUSH_CONSUMER,
    AgentKey,
    site_attention,
    token,
    untoken,
)

START_TIMEOUT_S = 15.0  # connecting, creating the buckets, reading the roster snapshot
APPROVAL_TTL_S = 24 * 3600.0  # an approval nobody decided is long gone (the shim's own timeout is 10 min)
ATTN_MAX_AGE_S = 7 * 24 * 3600.0
ATTN_PER_SUBJECT = 50
ATTN_ACK_WAIT_S = 30.0
ATTN_MAX_DELIVER = 5
# how long one pull request for the next attention item lingers: a quiet hypivisor asks again this often (a request
# lost with its NATS server is asked again then too)
ATTN_FETCH_S = 5.0
ATTN_IN_FLIGHT = 64  # attention items one hypivisor handles at once (a slow handler holds up only its own item)
WATCH_HEARTBEAT_S = 1.0
PUT_CONFIRM_S = 3.0  # an own record put and not acknowledged (or seen in the watch) within this is put again
BATCH_WAIT_S = 0.005  # an acked change waits this long at most for the other acks of its burst
MAX_ACKS = 100_000  # puts and deletes awaiting the stream's ack (the oldest are forgotten: put again if need be)
FEED_BEAT_S = 1.0  # an owner with no batch to publish says its last batch number this often (a gap shows by then)
WINNER_READS = 40  # x 50 ms
REPLAY_TIMEOUT_S = 10.0


@dataclass
class NatsSettings(Settings):
    servers: tuple[str, ...] = ("nats://127.0.0.1:4222",)
    replicas: int = 1  # 3 inside a site of 3+ servers: a store survives one server's loss
    storage: str = "file"  # "memory" for the roster only would do too: owners put it back
    start_timeout_s: float = START_TIMEOUT_S  # connecting, creating the buckets, reading the snapshots
    # an attention item handed to a hypivisor that stops acknowledging it (it died) goes to another after this; a
    # live handler keeps its items with "in progress" however long it takes
    attn_ack_wait_s: float = ATTN_ACK_WAIT_S

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.servers:
            raise ValueError("cluster mode needs at least one NATS server URL")
        if self.storage not in ("file", "memory"):
            raise ValueError("storage is file or memory")


class NatsBackplane(Backplane):
    def __init__(self, settings: NatsSettings) -> None:
        super().__init__(settings)
        self.nsettings = settings
        self.nc: Any = None
        # the roster feed's own connection (lease liveness): it publishes this hypivisor's batches and receives the
        # others', with no_echo, so the server never sends a hypivisor its own batches back (one wake-up each)
        self.feed_nc: Any = None
        self.js: Any = None
        self._agents_kv: dict[str, Any] = {}
        self._hv_kv: dict[str, Any] = {}
        self._leases: dict[str, set[str]] = {}  # site -> hypivisors with a live lease
        self._revisions: dict[AgentKey, int] = {}  # the mirror's revision of each record
        # own records put and not yet seen in the watch: key → (the bytes put, the record, when); see _put_agent
        self._sent: dict[AgentKey, tuple[bytes, Record, float]] = {}
        self._tasks: set[asyncio.Future[None]] = set()
        self._last_error: str | None = None
        self._approvals_kv: Any = None
        self._watchers: list[Any] = []
        self._consumers: list[asyncio.Task[None]] = []
        # the live roster feed (lease liveness, specs/cluster.md §3; hypivisor/cluster/feed.py)
        self._feed = FeedOrder()
        self._acks: dict[int, tuple[AgentKey, bytes | None, Record | None]] = {}  # put or delete awaiting its ack
        self._ack_n = itertools.count(1)
        self._ack_prefix = ""  # set once the ack subscription exists: puts ask for the stream's ack from then on
        self._batch: list[bytes] = []  # acked changes not yet published
        self._batch_no = 0
        self._batch_at = 0.0  # when the last batch (or heartbeat) went out (loop time)
        self._batch_handle: asyncio.Handle | None = None
        self._batch_urgent = False
        self._later: dict[AgentKey, tuple[str, bytes, Record]] = {}  # puts gathered for the next burst
        self._later_handle: asyncio.Handle | None = None
        # changes to show at once (record None: a delete), gathered for SOON_S: the latest per key, in the order of
        # the latest changes (a delete and the register after it, a fleet failing over: one burst, one batch)
        self._soon: dict[AgentKey, tuple[str, bytes, Record | None]] = {}
        self._soon_handle: asyncio.Handle | None = None
        self._soon_last = 0  # how many changes the last burst gathered (a storm waits longer: feed.soon_delay)
        self._deleting: dict[AgentKey, int] = {}  # a delete published, not yet acked: its ack number
        # deletes of records this hypivisor let go, not yet acked (loop time of the last try): published again after
        # PUT_CONFIRM_S (a lost delete would leave a ghost agent shown across the site for as long as this
        # hypivisor's lease lives)
        self._unconfirmed_deletes: dict[AgentKey, float] = {}
        self._ack_top = 0  # the number of the last put or delete published
        self._buffer: list[Any] | None = None  # batches that arrive while the bucket is read
        self._reading: asyncio.Task[None] | None = None
        self._read_again = False

    @property
    def _storage(self) -> StorageType:
        return StorageType.FILE if self.nsettings.storage == "file" else StorageType.MEMORY

    async def _start(self) -> None:
        """Connect and open everything within ``start_timeout_s``, else a :class:`BackplaneError` naming the servers.

        The tries run in a task of their own that is cancelled until it ends: one cancellation is not enough here.
        Python 3.11's ``asyncio.wait_for`` returns its inner result when a cancellation lands as that completes, and
        nats-py's connect loop goes on after the refused connection it then gets. A single ``asyncio.timeout`` was
        lost that way (a start with no NATS server ran on past the timeout, retrying for ever)."""
        s = self.nsettings
        tries = asyncio.ensure_future(self._start_tries())
        try:
            await asyncio.wait({tries}, timeout=s.start_timeout_s)
        except BaseException:  # this start is cancelled itself (the hypivisor stops meanwhile)
            tries.cancel()
            raise
        if tries.done() and not tries.cancelled() and not isinstance(tries.exception(), TimeoutError):
            tries.result()  # started, or an error of its own (raised as it is)
            return
        if not await cancel_until_done(tries, 5.0):
            log.error("cluster_start_not_cancelled", hv=s.hv_id)
        await self._drop_connections()
        where = ", ".join(s.servers)
        why = f" (last error: {self._last_error})" if self._last_error else ""
        raise BackplaneError(f"cluster mode: no NATS server of {where} answered within {s.start_timeout_s:g} s{why}")

    async def _start_tries(self) -> None:
        s = self.nsettings
        while True:
            try:
                await self._connect_and_open()
                return
            except (nats.js.errors.Error, nats.errors.TimeoutError) as e:  # e.g. "no suitable peers for
                # placement" while a cluster settles or a server is away, "no response from stream" while a
                # stream elects a leader: a fresh connection tries again within the start timeout
                self._last_error = f"{type(e).__name__}: {e}"
                log.warning("cluster_start_retry", hv=s.hv_id, error=self._last_error)
                await self._drop_connections()
                for part in (self._agents_kv, self._hv_kv, self._leases, self._roster, self._revisions):
                    part.clear()
                self._feed.clear()
                self._acks.clear()
                for task in self._consumers:  # the feed's heartbeat of the failed try
                    task.cancel()
                self._consumers.clear()
                self._ack_prefix, self._buffer = "", None
                self._watchers.clear()
                await asyncio.sleep(0.5)

    async def _drop_connections(self) -> None:
        """A start that failed: both connections closed (bounded), none kept."""
        for nc in (self.nc, self.feed_nc):
            if nc is not None:
                await bounded(nc.close(), 2)
        self.nc = self.feed_nc = None

    async def _connect_and_open(self) -> None:
        s = self.nsettings

        async def on_error(e: Exception) -> None:
            self._last_error = f"{type(e).__name__}: {e}"
            log.warning("cluster_nats_error", hv=s.hv_id, error=f"{type(e).__name__}: {e}")

        options: dict[str, Any] = {
            "servers": list(s.servers),
            "dont_randomize": True,  # the first URL is this hypivisor's own server; the others are fail-over
            "connect_timeout": 2,
            "reconnect_time_wait": 0.2,
            "max_reconnect_attempts": -1,
            "ping_interval": 5,
            "max_outstanding_pings": 2,
            "error_cb": on_error,
            "reconnected_cb": self._on_reconnected,
        }
        self.nc = await nats.connect(name=f"hypivisor-{s.hv_id}", **options)
        self.js = self.nc.jetstream(timeout=1.5)
        # The reply subscription of requests (``_INBOX.<id>.*``) is made by the first request; made now, its interest
        # has reached every server of the cluster before the first real request needs an answer routed back.
        with contextlib.suppress(nats.errors.NoRespondersError, nats.errors.TimeoutError):
            await self.nc.request(f"_hp.warmup.{token(s.hv_id)}", b"", timeout=0.5)
        await self.nc.flush(timeout=2)
        lease = s.liveness == "lease"
        for site in s.sites:
            # agent liveness: records expire (a PURGE to every watcher); lease liveness: they last until deleted
            self._agents_kv[site] = await self._bucket(AGENTS_BUCKET.format(site=site), None if lease else s.ttl_s)
            if lease:
                self._hv_kv[site] = await self._bucket(HV_BUCKET.format(site=site), s.ttl_s)
        self._approvals_kv = await self.js.create_key_value(
            KeyValueConfig(
                bucket=APPROVALS_BUCKET.format(site=s.site),
                history=1,
                ttl=APPROVAL_TTL_S,
                storage=self._storage,
                direct=False,  # reads go to the stream leader: a decision just made is never read as pending
                replicas=s.replicas,
            )
        )
        await self.js.add_stream(
            StreamConfig(
                name=ATTN_STREAM.format(site=s.site),
                subjects=[site_attention(s.site)],
                max_age=ATTN_MAX_AGE_S,
                max_msgs_per_subject=ATTN_PER_SUBJECT,
                storage=self._storage,
                num_replicas=s.replicas,
            )
        )
        if lease:
            await self._put_lease()
            # the feed first (batches arriving meanwhile wait), then the bucket: nothing falls between the two
            self._buffer = []
            self.feed_nc = await nats.connect(name=f"hypivisor-{s.hv_id}-feed", no_echo=True, **options)
            for site in self._agents_kv:
                self._watchers.append(await subscribe_direct(self.feed_nc, feed_subject(site, "*"), self._on_batch))
            ack_prefix = self.nc.new_inbox()
            self._watchers.append(await subscribe_direct(self.nc, f"{ack_prefix}.*", self._on_ack))
            await self.feed_nc.flush(timeout=2)
            await self.nc.flush(timeout=2)
            self._ack_prefix = ack_prefix
        await self._read_roster(live=not lease)
        if lease:
            self._drain_buffer()
            self._consumers.append(asyncio.ensure_future(self._feed_beat()))
        for site in self._agents_kv:
            if lease:
                # after the roster's snapshot: a record's lease was put before the record, so every live owner of a
                # record seen above is in this snapshot, and a record whose owner has no lease is an orphan
                await self._watch(HV_BUCKET.format(site=site), lambda *e, site=site: self._on_lease(site, *e))
                owners = self._leases.get(site, set())
                for key, record in list(self._roster.items()):
                    if key.site == site and record.get("hv") not in owners:
                        await self._drop_orphan(key)

    async def _bucket(self, name: str, ttl: float | None) -> Any:
        s = self.nsettings
        return await self.js.create_key_value(
            KeyValueConfig(
                bucket=name,
                history=1,
                ttl=ttl,
                limit_marker_ttl=max(1.0, ttl) if ttl else None,
                storage=self._storage,
                replicas=s.replicas,
            )
        )

    def _on_lease(self, site: str, raw_key: str, value: bytes, op: str | None, revision: int) -> None:
        hv = untoken(raw_key)
        if op is None:
            self._leases.setdefault(site, set()).add(hv)
            return
        self._leases.get(site, set()).discard(hv)
        if hv == self.hv_id:
            if not self._closed:  # our own lease lapsed (we were cut off): put it back, our records with it
                log.warning("cluster_own_lease_lost", site=site)
                self._unsaved.update(k for k in self._owned if k.site == site)
            return
        self._feed.forget(hv)
        # the hypivisor is gone: its agents are, everywhere at once; the first to get here deletes them from the
        # store (with the revision seen, so a record its agent re-registered elsewhere meanwhile stays)
        for key, record in list(self._roster.items()):
            if key.site == site and record.get("hv") == hv:
                self._spawn(self._drop_orphan(key))

    async def _drop_orphan(self, key: AgentKey) -> None:
        revision = self._revisions.get(key)
        self._apply(AgentChange("expired", key, None, revision or 0))
        if revision:
            with contextlib.suppress(Exception):
                await self._agents_kv[key.site].delete(key.kv_key, last=revision)

    async def _put_lease(self) -> None:
        record = dumps({"hv": self.hv_id, "site": self.settings.site, "at": time.time()})
        await self._hv_kv[self.settings.site].put(token(self.hv_id), record)

    async def _delete_lease(self) -> None:
        await self._hv_kv[self.settings.site].delete(token(self.hv_id))

    async def _watch(
        self, bucket: str, on_entry: Callable[[str, bytes, str | None, int], None], live: bool = True
    ) -> None:
        """Mirror one bucket: the latest value of every key (the snapshot), then every change.

        An ordered push consumer as ``KeyValue.watchall`` makes, with a 1 s idle heartbeat instead of 5 s: when the
        server holding the consumer dies, two missed heartbeats make the client recreate it from the next stream
        sequence, so the mirror misses nothing and is live again a few seconds later."""
        pre = f"$KV.{bucket}."
        loop = asyncio.get_running_loop()
        snapshot_done: asyncio.Future[None] = loop.create_future()

        async def on_msg(msg: Any) -> None:
            meta = msg.metadata
            headers = msg.headers or {}
            op = headers.get(KV_OP)
            if op is None and KV_MARKER_REASON in headers:  # a server-placed marker: the key aged out
                op = {"MaxAge": "PURGE", "Purge": "PURGE", "Remove": "DEL"}.get(headers[KV_MARKER_REASON], "?")
            if op != "?":
                on_entry(msg.subject[len(pre) :], msg.data, op, meta.sequence.stream)
            if meta.num_pending == 0 and not snapshot_done.done():
                snapshot_done.set_result(None)

        sub = await self.js.subscribe(
            f"{pre}>",
            stream=f"KV_{bucket}",
            cb=on_msg,
            ordered_consumer=True,
            deliver_policy=DeliverPolicy.LAST_PER_SUBJECT,
            idle_heartbeat=WATCH_HEARTBEAT_S,
            inactive_threshold=300 if live else 10,
        )
        quiet_ordered_consumer(sub)
        self._watchers.append(sub)
        info = await sub.consumer_info()
        # empty only when the server has delivered nothing either: messages it already pushed are still on their way
        # to the callback (num_pending 0, nothing handled yet), and the last of them says num_pending 0 itself
        sent = info.delivered.consumer_seq if info.delivered is not None else 0
        if info.num_pending == 0 and not sent and sub.delivered == 0 and not snapshot_done.done():
            snapshot_done.set_result(None)
        await snapshot_done
        if not live:
            self._watchers.remove(sub)
            with contextlib.suppress(Exception):
                await sub.unsubscribe()

    def _on_entry(self, site: str, raw_key: str, value: bytes, op: str | None, revision: int) -> None:
        try:
            key = AgentKey.from_kv_key(site, raw_key)
        except (ValueError, UnicodeDecodeError):
            log.warning("cluster_bad_key", site=site, key=raw_key)
            return
        if not self._feed.newer(key, revision):
            return  # the feed brought this change (or a newer one) already
        if op is None:
            sent = self._sent.get(key)
            if sent is not None and sent[0] == value:  # our own latest put, stored: confirmed, and parsed already
                del self._sent[key]
                record = sent[1]
            else:
                try:
                    record = loads(value)
                except (ValueError, BackplaneError):
                    log.warning("cluster_bad_record", site=site, key=raw_key)
                    return
            self._revisions[key] = revision
            self._feed.applied(key, revision)
            self._apply(AgentChange("put", key, record, revision))
        else:
            self._revisions.pop(key, None)
            self._feed.applied(key, revision, deleted=True)
            self._apply(AgentChange("expired" if op == "PURGE" else "deleted", key, None, revision))

    async def _close(self) -> None:
        """Bounded whatever the client does: a step that does not finish in time is abandoned (nats-py's drain, for
        one, swallows cancellation and then flushes)."""
        for handle in (self._later_handle, self._soon_handle, self._batch_handle):
            if handle is not None:
                handle.cancel()
        if self._soon and self.nc is not None and not self.nc.is_closed:
            await bounded(self._publish_burst(self._take_soon()), 2)
        for task in (*self._consumers, *self._tasks, *([self._reading] if self._reading is not None else [])):
            task.cancel()
        await bounded(asyncio.gather(*self._consumers, return_exceptions=True), 2)
        for watcher in self._watchers:
            await bounded(watcher.unsubscribe(), 2)
        for nc in (self.feed_nc, self.nc):
            if nc is not None:
                await bounded(nc.flush(timeout=2), 2.5)
                await bounded(nc.close(), 5)

    # --- registry ----------------------------------------------------------------------------------------------

    async def _put_agent(self, key: AgentKey, record: Record) -> None:
        """A publish to the bucket's subject. With lease liveness it asks for the stream's ack, which confirms the
        put and gives its stream sequence for the feed (:meth:`_on_ack`); a put that keeps the record's owner and
        status (a new session name, activity) waits up to ``GATHER_S`` to go out in one burst with others. Else a
        plain publish, confirmed when the watch brings these bytes back (:meth:`_on_entry`). Either way one not
        confirmed within ``PUT_CONFIRM_S`` is put again by the heartbeat loop. Never a request per put: a burst of
        writes (an agent fleet failing over to this hypivisor) is pipelined."""
        if self.nc is None or self.nc.is_closed:
            raise BackplaneError("not connected to NATS")
        data = dumps(record)
        self._sent[key] = (data, record, asyncio.get_running_loop().time())
        self._unconfirmed_deletes.pop(key, None)  # held here again: this put replaces the delete
        subject = _record_subject(key)
        if not self._ack_prefix:
            await self.nc.publish(subject, data)
            return
        # a delete of the key not yet acked: the record is gone, whatever the roster here still shows
        previous = None if self._deleting.get(key) in self._acks else self._roster.get(key)
        if key not in self._soon and not _urgent(previous, record):
            self._later[key] = (subject, data, record)
            if self._later_handle is None:
                self._later_handle = asyncio.get_running_loop().call_later(
                    gather_delay(time.time(), GATHER_S), self._put_later
                )
            return
        self._later.pop(key, None)
        self._put_soon(key, subject, data, record)

    def _put_soon(self, key: AgentKey, subject: str, data: bytes, record: Record | None) -> None:
        """A change to show at once, out within ``SOON_S`` with any other of that moment (a later change of the same
        key replaces it: puts after it are gathered here too, so they never overtake it)."""
        self._soon.pop(key, None)
        self._soon[key] = (subject, data, record)
        if self._soon_handle is None:
            self._soon_handle = asyncio.get_running_loop().call_later(soon_delay(self._soon_last), self._put_soon_now)

    def _take_soon(self) -> list[tuple[AgentKey, str, bytes, Record | None]]:
        """The gathered changes: deletes, and puts of records still held here (not let go meanwhile)."""
        soon, self._soon = self._soon, {}
        self._soon_last = len(soon)
        return [
            (key, *change) for key, change in soon.items() if change[2] is None or self._owned.get(key) is change[2]
        ]

    def _put_soon_now(self) -> None:
        self._soon_handle = None
        if self._soon:
            self._spawn(self._publish_burst(self._take_soon()))

    async def _publish_acked(self, key: AgentKey, subject: str, data: bytes, record: Record | None) -> None:
        n = self._ack_top = next(self._ack_n)
        self._acks[n] = (key, data if record is not None else None, record)
        if record is None:
            self._deleting[key] = n
        else:
            self._deleting.pop(key, None)
        while len(self._acks) > MAX_ACKS:  # acks that never came (a stream without a leader answers nothing)
            old = next(iter(self._acks))
            old_key = self._acks.pop(old)[0]
            if self._deleting.get(old_key) == old:
                del self._deleting[old_key]
        headers = None if record is not None else {KV_OP: "DEL"}
        try:
            await self.nc.publish(subject, data, reply=f"{self._ack_prefix}.{n}", headers=headers)
        except Exception:
            self._acks.pop(n, None)
            raise

    def _put_later(self) -> None:
        self._later_handle = None
        later, self._later = self._later, {}
        burst = [(key, *put) for key, put in later.items() if self._owned.get(key) is put[2]]  # still held here
        if burst:
            self._spawn(self._publish_burst(burst))

    async def _publish_burst(self, burst: Sequence[tuple[AgentKey, str, bytes, Record | None]]) -> None:
        """The gathered puts, in order, from one task (one write to the server for all of them). One that cannot be
        published (the connection lost) stays unconfirmed and is put again (``PUT_CONFIRM_S``); the others go on."""
        failed = 0
        for key, subject, data, record in burst:
            try:
                await self._publish_acked(key, subject, data, record)
            except Exception as e:  # noqa: BLE001 - put again by the heartbeat loop
                failed += 1
                error = f"{type(e).__name__}: {e}"[:300]
        if failed:
            log.warning("cluster_put_failed", puts=failed, error=error)

    def _spawn(self, aw: Any) -> None:
        task = asyncio.ensure_future(aw)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _on_ack(self, msg: Any) -> None:
        """The stream took (or refused) one of this hypivisor's puts or deletes: applied here, and queued for the
        feed with its stream sequence. A refusal or an unreadable ack leaves the put unconfirmed (put again)."""
        n = int(msg.subject.rsplit(".", 1)[1])
        entry = self._acks.pop(n, None)
        if entry is None:
            return
        if self._deleting.get(entry[0]) == n:
            del self._deleting[entry[0]]
        try:
            seq = int(orjson.loads(msg.data)["seq"])
        except (ValueError, KeyError, TypeError):
            return
        key, data, record = entry
        urgent = True
        if record is not None:
            sent = self._sent.get(key)
            if sent is not None and sent[0] == data:
                del self._sent[key]
        else:
            self._unconfirmed_deletes.pop(key, None)
        if self._feed.newer(key, seq):
            if record is not None:
                urgent = _urgent(self._roster.get(key), record)
            self._apply_at(key, seq, record)
        self._batch.append(b'["' + key.kv_key.encode() + b'",' + str(seq).encode() + b"," + (data or b"null") + b"]")
        loop = asyncio.get_running_loop()
        if urgent and not self._batch_urgent:
            if self._batch_handle is not None:
                self._batch_handle.cancel()
            self._batch_urgent = True
            self._batch_handle = loop.call_soon(self._flush_batch)
        elif n == self._ack_top:  # the last put's ack (a burst's acks come in order): the batch goes now
            if self._batch_handle is not None:
                self._batch_handle.cancel()
            self._batch_handle = loop.call_soon(self._flush_batch)
        elif self._batch_handle is None:  # more acks to come: they join this batch unless they are late
            self._batch_handle = loop.call_later(BATCH_WAIT_S, self._flush_batch)

    def _flush_batch(self) -> None:
        self._batch_handle = None
        self._batch_urgent = False
        if not self._batch or self.feed_nc is None or self.feed_nc.is_closed:
            return
        self._batch_no += 1
        entries, self._batch = self._batch, []
        self._publish_batch(b",".join(entries))

    def _publish_batch(self, entries: bytes) -> None:
        self._batch_at = asyncio.get_running_loop().time()
        data = b'{"hv":' + orjson.dumps(self.hv_id) + b',"n":' + str(self._batch_no).encode()
        self._spawn(
            self.feed_nc.publish(feed_subject(self.settings.site, self.hv_id), data + b',"e":[' + entries + b"]}")
        )

    async def _feed_beat(self) -> None:
        """Every ``FEED_BEAT_S`` without a batch: the last batch number, so a hypivisor that missed it knows."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(gather_delay(time.time(), FEED_BEAT_S / 2))  # with the gathered puts' wake-up
            if loop.time() - self._batch_at >= FEED_BEAT_S and self.feed_nc is not None and not self.feed_nc.is_closed:
                self._publish_batch(b"")

    def _on_batch(self, msg: Any) -> None:
        if self._buffer is not None:
            self._buffer.append(msg)
        else:
            self._apply_batch(msg)

    def _apply_batch(self, msg: Any) -> None:
        """Another owner's batch: each change newer than what is applied here is applied; a gap in its numbers
        has the bucket read again."""
        try:
            site = untoken(msg.subject.split(".")[2])
            batch = orjson.loads(msg.data)
            hv, n, entries = batch["hv"], batch["n"], batch["e"]
            if not isinstance(hv, str) or not isinstance(n, int) or not isinstance(entries, list):
                raise TypeError
        except (ValueError, KeyError, TypeError, IndexError, UnicodeDecodeError):
            log.warning("cluster_bad_batch", subject=msg.subject[:200])
            return
        if hv == self.hv_id:
            return
        heard = self._feed.batch(hv, n, heartbeat=not entries)
        if entries:
            with self._changes_together():
                self._apply_entries(site, hv, entries)
        if heard == "gap":
            log.info("cluster_feed_gap", hv=hv[:64], n=n)
            self._read_bucket()

    def _apply_entries(self, site: str, hv: str, entries: list[Any]) -> None:
        for entry in entries:
            try:
                raw_key, seq, record = entry
                key = AgentKey.from_kv_key(site, raw_key)
                if not isinstance(seq, int) or not (record is None or isinstance(record, dict)):
                    raise TypeError
            except (ValueError, TypeError, UnicodeDecodeError):
                log.warning("cluster_bad_batch_entry", hv=hv[:64])
                continue
            if self._feed.newer(key, seq):
                self._apply_at(key, seq, record)

    def _apply_at(self, key: AgentKey, seq: int, record: Record | None) -> None:
        """A change newer than what is applied here (its stream sequence ``seq``): a put, or a delete (None)."""
        if record is None:
            self._revisions.pop(key, None)
            self._feed.applied(key, seq, deleted=True)
            self._apply(AgentChange("deleted", key, None, seq))
        else:
            self._revisions[key] = seq
            self._feed.applied(key, seq)
            self._apply(AgentChange("put", key, record, seq))

    async def _read_roster(self, live: bool) -> None:
        """Every watched site's roster bucket: its last value per key, then (``live``) every change after it."""
        for site in list(self._agents_kv):
            await self._watch(AGENTS_BUCKET.format(site=site), lambda *e, site=site: self._on_entry(site, *e), live)

    def _drain_buffer(self) -> None:
        buffered, self._buffer = self._buffer or [], None
        for msg in buffered:
            self._apply_batch(msg)

    async def _on_reconnected(self) -> None:
        """Batches published while a connection was down are lost (the feed's; the acks' too, whose puts are put
        again): the bucket is read again."""
        if self._ack_prefix:
            self._read_bucket()

    def _read_bucket(self) -> None:
        """Read the bucket again (after a gap or a reconnect), batches waiting meanwhile; one read at a time, and
        one more when another gap showed during it."""
        if self._closed:
            return
        if self._reading is not None and not self._reading.done():
            self._read_again = True
            return
        self._reading = asyncio.ensure_future(self._reread())

    async def _reread(self) -> None:
        while True:
            self._read_again = False
            self._buffer = self._buffer if self._buffer is not None else []
            try:
                await asyncio.wait_for(self._read_roster(live=False), self.nsettings.start_timeout_s)
            except Exception as e:  # noqa: BLE001 - NATS away again: the next reconnect or gap reads again
                log.warning("cluster_feed_reread_failed", error=f"{type(e).__name__}: {e}"[:300])
            finally:
                self._drain_buffer()
            if not self._read_again or self._closed:
                return

    def _overdue(self, now: float) -> list[AgentKey]:
        overdue: list[AgentKey] = []
        for key, (_, record, at) in list(self._sent.items()):
            if self._owned.get(key) is not record:
                del self._sent[key]  # superseded, unregistered or moved on: nothing to confirm
            elif at < now - PUT_CONFIRM_S:
                overdue.append(key)
        return overdue

    def _retry_deletes(self, now: float) -> None:
        """Deletes not acked within ``PUT_CONFIRM_S`` (lost with a connection, or by a stream without a leader) are
        published again unless it holds the agent again or the record names another hypivisor (a delete of a key
        already gone only writes one more delete marker, and its ack ends the retries)."""
        for key, at in list(self._unconfirmed_deletes.items()):
            if key in self._owned or self.holder(key) not in (None, self.hv_id):
                del self._unconfirmed_deletes[key]  # held here again, or another hypivisor's now
            elif at < now - PUT_CONFIRM_S:
                self._unconfirmed_deletes[key] = now
                log.info("cluster_delete_again", agent=key.agent[:128])
                self._put_soon(key, _record_subject(key), b"", None)

    async def _delete_agent(self, key: AgentKey) -> None:
        self._sent.pop(key, None)
        self._later.pop(key, None)
        if self._ack_prefix:
            self._unconfirmed_deletes[key] = asyncio.get_running_loop().time()
            if self._closed:  # a clean stop deletes its records now
                self._soon.pop(key, None)
                await self._publish_acked(key, _record_subject(key), b"", None)
            else:
                self._put_soon(key, _record_subject(key), b"", None)
            return
        await self._agents_kv[key.site].delete(key.kv_key)

    # --- events ------------------------------------------------------------------------------------------------

    async def publish_event(self, key: AgentKey, kind: str, data: bytes) -> None:
        await self.nc.publish(key.event_subject(kind), data)

    async def subscribe_events(self, pattern: str, handler: EventHandler) -> Unsubscribe:
        async def cb(msg: Any) -> None:
            try:
                await handler(Event(msg.subject, msg.data))
            except Exception as e:
                log.error("cluster_event_handler_failed", subject=msg.subject, error=f"{type(e).__name__}: {e}")

        sub = await self.nc.subscribe(pattern, cb=cb)

        async def unsubscribe() -> None:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()

        return unsubscribe

    async def flush(self, timeout: float = 2.0) -> None:
        """Until the server has every subscription and publication sent so far (tests, ordering)."""
        if self.feed_nc is not None:
            await self.feed_nc.flush(timeout=timeout)
        await self.nc.flush(timeout=timeout)

    # --- approvals ---------------------------------------------------------------------------------------------

    async def open_approval(self, key: AgentKey, approval_id: str, record: Record) -> None:
        await self._approvals_kv.put(
            key.approval_key(approval_id), dumps(pending_approval(self.hv_id, record, time.time()))
        )

    async def _get_approval_entry(self, key: AgentKey, approval_id: str) -> Any:
        try:
            return await self._approvals_kv.get(key.approval_key(approval_id))
        except (nats.js.errors.KeyNotFoundError, nats.js.errors.KeyDeletedError):
            return None

    async def get_approval(self, key: AgentKey, approval_id: str) -> Record | None:
        entry = await self._get_approval_entry(key, approval_id)
        return None if entry is None else loads(entry.value)

    async def overwrite_approval(self, key: AgentKey, approval_id: str, record: Record) -> None:
        await self._approvals_kv.put(key.approval_key(approval_id), dumps(record))

    async def watch_approvals(self, listener: ApprovalListener) -> None:
        site = self.settings.site

        def on_entry(raw_key: str, value: bytes, op: str | None, revision: int) -> None:
            if op is not None:  # a deleted or expired approval: nothing to forward
                return
            try:
                machine, agent, approval = (untoken(t) for t in raw_key.split("."))
                record = loads(value)
            except (ValueError, UnicodeDecodeError, BackplaneError):
                log.warning("cluster_bad_approval", site=site, key=raw_key[:200])
                return
            listener(AgentKey(site, machine, agent), approval, record)

        async def watch() -> None:
            made = len(self._watchers)
            try:
                await self._watch(APPROVALS_BUCKET.format(site=site), on_entry)
            except (nats.js.errors.Error, nats.errors.TimeoutError):
                for sub in self._watchers[made:]:  # a half-made watch of this try never forwards anything twice
                    await bounded(sub.unsubscribe(), 2)
                del self._watchers[made:]
                raise

        # at start, like the other JetStream steps of it: retried while the stream elects a leader (a server away)
        await settled(watch, "approvals", time.monotonic() + self.nsettings.start_timeout_s)

    async def decide_approval(self, key: AgentKey, approval_id: str, decision: Record) -> Record:
        entry = await self._get_approval_entry(key, approval_id)
        if entry is None:
            raise ApprovalUnknown(f"no open approval {approval_id} on agent {key.agent}")
        current = loads(entry.value)
        if current.get("state") != "pending":
            raise conflict(key, approval_id, current)
        decided = decided_approval(current, decision, self.hv_id, time.time())
        try:
            await self._approvals_kv.update(key.approval_key(approval_id), dumps(decided), last=entry.revision)
        except nats.js.errors.KeyWrongLastSequenceError:
            # Another decision is ahead of this one; the leader may refuse ours before it has applied that one, so
            # a read right now can still say pending: read again (bounded) until it shows the winner.
            winner: Record | None = None
            for _ in range(WINNER_READS):
                winner = await self.get_approval(key, approval_id)
                if winner is not None and winner.get("state") == "decided":
                    break
                await asyncio.sleep(0.05)
            raise conflict(key, approval_id, winner or {}) from None
        return decided

    # --- attention ---------------------------------------------------------------------------------------------

    async def publish_attention(self, key: AgentKey, what: str, item: Record) -> None:
        subject = key.attention_subject(what)
        await self.js.publish(subject, dumps({**item, "_subject": subject}))

    async def attention_log(self, limit: int = ATTN_REPLAY_MAX) -> list[Record]:
        """Read the site's stream from the newest ``limit`` messages on with a throw-away ordered consumer, until
        nothing is pending (bounded by ``REPLAY_TIMEOUT_S``)."""
        if limit <= 0:
            return []
        stream = ATTN_STREAM.format(site=self.settings.site)
        info = await self.js.stream_info(stream)
        last = info.state.last_seq
        if info.state.messages == 0:
            return []
        start = max(info.state.first_seq, last - limit + 1)
        out: list[Record] = []
        done = asyncio.get_running_loop().create_future()

        async def on_msg(msg: Any) -> None:
            with contextlib.suppress(ValueError, BackplaneError):
                out.append(loads(msg.data))
            if msg.metadata.sequence.stream >= last and not done.done():
                done.set_result(None)

        sub = await self.js.subscribe(
            site_attention(self.settings.site),
            stream=stream,
            cb=on_msg,
            ordered_consumer=True,
            config=ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=start),
            inactive_threshold=30,
        )
        try:
            await asyncio.wait_for(done, REPLAY_TIMEOUT_S)
        finally:
            await bounded(sub.unsubscribe(), 2)
        return out[-limit:]

    async def consume_attention(self, handler: AttentionHandler) -> Unsubscribe:
        """Each fetched item is handled in its own task (at most ``ATTN_IN_FLIGHT`` at once), told "in progress" to
        the server while its handler runs, acknowledged when the handler returns and handed back (nak) when it
        raises; an item of a hypivisor that died is redelivered to another after ``attn_ack_wait_s``."""
        site = self.settings.site
        ack_wait = self.nsettings.attn_ack_wait_s
        psub = await self.js.pull_subscribe(
            site_attention(site),
            durable=PUSH_CONSUMER,
            stream=ATTN_STREAM.format(site=site),
            config=ConsumerConfig(ack_policy=AckPolicy.EXPLICIT, ack_wait=ack_wait, max_deliver=ATTN_MAX_DELIVER),
        )
        handling: set[asyncio.Task[None]] = set()

        async def keep(msg: Any) -> None:
            while True:
                await asyncio.sleep(ack_wait / 3)
                with contextlib.suppress(Exception):
                    await msg.in_progress()

        async def handle(msg: Any) -> None:
            keeper = asyncio.create_task(keep(msg))
            try:
                await handler(loads(msg.data))
            except Exception as e:
                log.warning("cluster_attention_handler_failed", error=f"{type(e).__name__}: {e}")
                with contextlib.suppress(Exception):
                    await msg.nak(delay=0.5)
                return
            finally:
                keeper.cancel()
            with contextlib.suppress(Exception):
                await msg.ack_sync(timeout=2)

        async def run() -> None:
            try:
                while True:
                    free = ATTN_IN_FLIGHT - len(handling)
                    if free <= 0:
                        await asyncio.wait(set(handling), return_when=asyncio.FIRST_COMPLETED)
                        continue
                    try:
                        # one item per lingering request: it comes back as soon as an item is published, and a quiet
                        # hypivisor asks again only every ATTN_FETCH_S
                        msgs = await psub.fetch(batch=1, timeout=ATTN_FETCH_S)
                    except (TimeoutError, nats.errors.TimeoutError):
                        continue
                    except asyncio.CancelledError:
                        raise
                    except Exception as e:  # a server lost mid-fetch: the client reconnects, fetch again
                        log.warning("cluster_attention_fetch_failed", error=f"{type(e).__name__}: {e}")
                        await asyncio.sleep(0.2)
                        continue
                    for msg in msgs:
                        task = asyncio.create_task(handle(msg))
                        handling.add(task)
                        task.add_done_callback(handling.discard)
            finally:
                for task in list(handling):
                    task.cancel()

        task = asyncio.create_task(run(), name=f"cluster-attention-{self.hv_id}")
        self._consumers.append(task)

        async def unsubscribe() -> None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
            with contextlib.suppress(Exception):
                await psub.unsubscribe()

        return unsubscribe

    # --- routing -----------------------------------------------------------------------------------------------

    async def _serve(self, subject: str, handler: RpcHandler) -> Unsubscribe:
        async def respond(msg: Any) -> None:
            reply = await answer(handler, msg.data)
            with contextlib.suppress(Exception):
                await msg.respond(reply)

        async def cb(msg: Any) -> None:
            # each request in its own task: a slow one (a spawn waits for its agent) never holds the next
            self._spawn(respond(msg))

        sub = await self.nc.subscribe(subject, queue=OWNER_QUEUE, cb=cb)

        async def unsubscribe() -> None:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()

        return unsubscribe

    async def _request(self, subject: str, data: bytes, timeout: float, what: str) -> bytes:
        try:
            msg = await self.nc.request(subject, data, timeout=timeout)
        except nats.errors.NoRespondersError:
            raise NoOwner(f"no hypivisor serves {what}") from None
        except nats.errors.TimeoutError:
            raise RequestTimeout(f"{what} did not answer within {timeout} s") from None
        return bytes(msg.data)


async def settled(call: Callable[[], Awaitable[Any]], step: str, deadline: float) -> Any:
    """One JetStream call of a hypivisor's start, tried again (0.5 s apart, until ``deadline`` on the monotonic
    clock) while the cluster cannot answer it yet: a stream or the meta layer electing a leader, a new bucket's
    replicas waiting for a server that is away (one of three restarting, or a fresh cluster settling)."""
    while True:
        try:
            return await call()
        except (nats.js.errors.Error, nats.errors.TimeoutError) as exc:
            if time.monotonic() >= deadline:
                raise
            log.warning("cluster_start_retry", step=step, error=f"{type(exc).__name__}: {exc}"[:300])
            await asyncio.sleep(0.5)


def _record_subject(key: AgentKey) -> str:
    """The subject a KV put or delete of the agent's (or machine's) record is published to."""
    return f"$KV.{AGENTS_BUCKET.format(site=key.site)}.{key.kv_key}"


def feed_subject(site: str, hv: str) -> str:
    """Where an owner publishes its roster batches (``*`` for every owner of the site)."""
    return f"hp.roster.{token(site)}.{hv if hv == '*' else token(hv)}"


def _urgent(previous: Record | None, record: Record) -> bool:
    """A change every dashboard should see at once: a new record, a new owner, a status (or a machine going online
    or offline). Others (a session name, activity, counts) may wait ``GATHER_S``."""
    if previous is None:
        return True
    return any(previous.get(f) != record.get(f) for f in ("hv", "status", "online"))
