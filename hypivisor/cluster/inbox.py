"""Cluster mode's inbox and Web Push (specs/cluster.md §6): I/O glue around the pure
:mod:`hypivisor.cluster.inbox_state`. Imported only with ``--nats``.

* **Own items out.** A tap on the hypivisor's event hub sees what its :class:`~hypivisor.attention.AttentionBook`
  emits (``attention_added`` / ``attention_resolved``) and appends it, in order, to the site's stream
  ``HP_ATTN_<site>`` (subject ``hp.attn.<site>.<machine>.<agent>.<added|resolved>``, with ``hv``). New item ids
  carry a random tag of this start (``att-<tag>-<n>``), so ids are unique across the site's books.
* **The site's inbox in.** One ordered consumer reads the stream from its start (the newest ``ATTN_REPLAY_MAX``
  records: the replay, before this hypivisor listens) and then live; :class:`~hypivisor.cluster.inbox_state.
  SiteInbox` folds each record: ``list_attention`` lists this hypivisor's own book and every other book's open
  items, and its dashboards get ``attention_added`` / ``attention_resolved`` for items other books made.
* **A person's acts anywhere.** ``dismiss_attention`` of another book's item and ``mark_read`` append a
  ``resolved`` (``by: dismissed``) or ``read`` record; the book holding the item ends it when the record reaches it
  (live, or in its replay after a restart, so a dismissed item stays dismissed), and whoever holds the agent sets
  its unread count to 0 (which reaches every roster with its record).
* **Push once.** Every hypivisor fetches from the durable consumer ``pushsender``; the one an ``added`` record is
  handed to decides with the pure push policy (devices and presence of the whole site) and sends, and the record
  is acknowledged once those sends are done: a hypivisor that dies first has it redelivered to another.
  Devices and the VAPID key are shared in the KV bucket ``HP_PUSH_<site>`` (``vapid``: the first hypivisor's key;
  ``dev.<device>``: a device); presence is published as ``hp.evt.<site>.presence.<device>`` (this hypivisor's
  pages of that device, on each change and every ``PRESENCE_BEAT_S``; kept ``PRESENCE_TTL_S``).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import secrets
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import orjson
import structlog
from pydantic import BaseModel

from hypivisor.attention import LIVE_KINDS, Where
from hypivisor.cluster.backplane import ATTN_REPLAY_MAX, BackplaneError, Event, bounded, loads
from hypivisor.cluster.direct import quiet_ordered_consumer
from hypivisor.cluster.inbox_state import (
    Added,
    PresenceTable,
    RecordError,
    SiteInbox,
    added_record,
    merge_presence,
    parse,
    parse_presence,
    presence_record,
    read_record,
    resolved_record,
)
from hypivisor.cluster.names import ATTN_STREAM, AgentKey, site_attention, token, untoken
from hypivisor.push import keys
from hypivisor.push.hub import SEND_TIMEOUT, DeviceRow
from hypivisor.push.policy import ONCE, Presence, Push, looked_at
from pi_socket.protocol import (
    AttentionAddedEvent,
    AttentionResolvedEvent,
    ListAttentionResult,
    NodeJoinedEvent,
    NodeRemovedEvent,
    NodeUpdatedEvent,
    UnreadChangedEvent,
)

if TYPE_CHECKING:
    from hypivisor.cluster.link import ClusterLink

log = structlog.get_logger(part="cluster")

PUSH_BUCKET = "HP_PUSH_{site}"  # vapid -> the site's VAPID private key (PEM); dev.<device> -> a device (JSON);
# once.<agent>.<kind> -> a once-kind (stalled, budget) of that agent was pushed (by the hypivisor id it holds)
PRESENCE_BEAT_S = 5.0
PRESENCE_TTL_S = 15.0
PUBLISH_TRIES = 20  # x 0.5 s: a stream electing a leader takes up to a few seconds
MAX_OUTBOX = 20_000  # records waiting to be appended (a stream unreachable for long): beyond it the oldest go
SPEND_WAIT_S = 5.0  # claiming a once-kind's push in the bucket (a leader election takes a few seconds)
SEND_WAIT_S = SEND_TIMEOUT + 5  # a push record is acknowledged at the latest this long after its sends began
UNKNOWN_MACHINE = "unknown"


def once_key(node_id: str, kind: str) -> str:
    return f"once.{token(node_id)}.{kind}"


def presence_subject(site: str, device_id: str) -> str:
    return f"hp.evt.{token(site)}.presence.{token(device_id)}"


class ClusterInbox:
    def __init__(self, link: ClusterLink) -> None:
        self.link = link
        self.service = link.service
        self.bp: Any = link.backplane
        self.site = link.site
        self.hv_id = link.hv_id
        self.view = SiteInbox(self.hv_id)
        self.presence = PresenceTable(self.hv_id)
        self._keys: dict[str, AgentKey] = {}  # own items published → their agent's key (a resolution names only the id)
        self._outbox: deque[tuple[AgentKey, str, dict[str, Any]]] = deque()
        self._wake = asyncio.Event()
        self._relaying = False
        self._start_deadline = 0.0  # set by start: JetStream calls of the start are retried until then
        self._remote_unread: dict[str, int] = {}  # other hypivisors' agents → the count their dashboards were told
        self._waiting: dict[int, asyncio.Future[None]] = {}  # id(push) → done
        self._tasks: set[asyncio.Future[Any]] = set()
        self._stops: list[Any] = []
        self._push_kv: Any = None
        self._spent: set[tuple[str, str]] = set()  # the site's spent once-kinds (node id, kind), as the bucket says
        self._background: list[asyncio.Task[None]] = []

    # -- lifecycle ------------------------------------------------------------------------------------------------
    async def start(self, env: dict[str, str]) -> None:
        book = self.service.attention
        tag = secrets.token_hex(4)
        first = next(book._ids)  # cluster-unique ids for this start's new items: att-<tag>-<n>
        book._ids = (f"{tag}-{n}" for n in itertools.count(first))  # type: ignore[assignment]
        wait = env.get("HYPI_NATS_PUSH_ACK_WAIT")
        if wait:
            try:
                seconds = float(wait)
            except ValueError:
                seconds = -1.0
            if not 1.0 <= seconds <= 300.0:
                raise ValueError("HYPI_NATS_PUSH_ACK_WAIT must be a number of seconds from 1 to 300")
            self.bp.nsettings.attn_ack_wait_s = seconds
        self._start_deadline = time.monotonic() + self.bp.nsettings.start_timeout_s
        await self._follow()
        for item in book.open_items():  # open in this book (restored, or made while not in a cluster): the site
            # hears of them, and that this book holds them (a restart is a new hypivisor id)
            if not self.view.ended(item.id) and self.view.holder_of(item.id) != self.hv_id:
                self.view.adopted(item.id)
                self._send_added(item, moved=True)
        self.service.hub.taps.append(self.on_events)
        await self._share_push()
        self._stops.append(await self.bp.subscribe_events(f"hp.evt.{token(self.site)}.presence.*", self._on_presence))
        self._stops.append(await self._settled(lambda: self.bp.consume_attention(self._on_push_record), "push queue"))
        self._background.append(asyncio.create_task(self._write_loop(), name="cluster-inbox-writer"))
        self._background.append(asyncio.create_task(self._presence_loop(), name="cluster-presence"))
        log.info("cluster inbox ready", items=len(self.view), devices=len(self.service.push.devices))

    async def _settled(self, call: Callable[[], Awaitable[Any]], step: str) -> Any:
        """One JetStream call of the start, tried again within the start timeout while the cluster settles."""
        from hypivisor.cluster.nats_backplane import settled

        return await settled(call, step, self._start_deadline)

    async def close(self) -> None:
        push = self.service.push
        for device_id in {d for d, _ in push.pages.values()}:  # our pages stop counting at once elsewhere
            with contextlib.suppress(Exception):
                await self.bp.nc.publish(presence_subject(self.site, device_id),
                                         orjson.dumps(presence_record(self.hv_id, device_id, [])))  # fmt: skip
        push.share = None
        with contextlib.suppress(ValueError):
            self.service.hub.taps.remove(self.on_events)
        deadline = time.monotonic() + 1.0
        while self._outbox and time.monotonic() < deadline:  # what the book said last still goes out
            await asyncio.sleep(0.02)
        for task in self._background:
            task.cancel()
        for stop in self._stops:
            await bounded(stop(), 1.0)
        for fut in self._waiting.values():
            if not fut.done():
                fut.cancel()

    # -- own book → the stream --------------------------------------------------------------------------------------
    def on_events(self, events: list[BaseModel]) -> None:
        """The hub's tap: what this hypivisor's own book emitted (never what this module relays)."""
        if self._relaying:
            return
        counts: list[BaseModel] = []
        for event in events:
            if isinstance(event, AttentionAddedEvent):
                if not self._lives_elsewhere(event.item.node_id):
                    self._send_added(event.item)
            elif isinstance(event, AttentionResolvedEvent):
                key = self._keys.pop(event.id, None) or self._key_of_item(event.id)
                if key is not None and not self._lives_elsewhere(key.agent):
                    self._queue(key, "resolved", resolved_record(event.id, event.by, time.time(), self.hv_id))
            elif isinstance(event, NodeJoinedEvent) and not event.node.hv:
                self._adopt(event.node.id)  # before its report: the book matches the items, never raises them again
            elif isinstance(event, (NodeJoinedEvent, NodeUpdatedEvent)) and event.node.hv:
                # another hypivisor's agent: its unread count rides on its record; dashboards count from events
                node = event.node
                if self._remote_unread.get(node.id, 0) != node.unread:
                    self._remote_unread[node.id] = node.unread
                    counts.append(UnreadChangedEvent(node_id=node.id, unread=node.unread))
            elif isinstance(event, NodeRemovedEvent):
                self._remote_unread.pop(event.id, None)
        if counts:  # after the roster event that carried them
            asyncio.get_running_loop().call_soon(self._relay, counts)

    def _relay(self, events: list[BaseModel]) -> None:
        self._relaying = True
        try:
            self.service.hub.publish(events)
        finally:
            self._relaying = False

    def _send_added(self, item: Any, moved: bool = False) -> None:
        book = self.service.attention
        key = AgentKey(self.site, item.machine or self._machine_of(item.node_id), item.node_id)
        self._keys[item.id] = key
        cause = book._cause_of.get(item.id)
        run = book.last_run.get(item.node_id) if item.kind in ("finished", "error") else None
        self._queue(key, "added", added_record(item, self.hv_id, cause[2] if cause else None, run, moved))

    def _lives_elsewhere(self, node_id: str) -> bool:
        """The agent registered with another hypivisor since (its record names that one): what this book still
        says of it is stale (the book it moved to holds its items now)."""
        entry = self.service.registry.get(node_id)
        if entry is not None and entry.node.status == "active":
            return False
        # the shared record (the mirror keeps it even while the registry here still has the id, and after it let
        # the id go: an agent removed here because it moved raises nothing here)
        remote = self.link.mirror.get(node_id)
        return remote is not None and remote.hv != self.hv_id

    def _adopt(self, node_id: str) -> None:
        """The agent registered here: the open items other books hold for it move into this book (with their causes
        and run key, so its report matches them) and the site hears that this book holds them now."""
        book = self.service.attention
        taken = self.view.adoptable(node_id)
        for item, cause, run in taken:
            self.view.adopted(item.id)
            if item.id not in book.items and cause is not None and (node_id, item.kind, cause) in book._causes:
                # this book raised the same cause itself meanwhile: the other item ends as a double
                self._send_added(item, moved=True)
                key = self._keys.pop(item.id)
                self._queue(key, "resolved", resolved_record(item.id, "superseded", time.time(), self.hv_id))
                self._relay([AttentionResolvedEvent(id=item.id, by="superseded")])
                continue
            if item.id not in book.items:
                book.items[item.id] = item
                if cause is not None and item.kind in LIVE_KINDS:
                    book._link(item.id, (node_id, item.kind, cause))
                book.sink.item_added(item, cause)
                if run is not None:
                    book.last_run[node_id] = run
                    book.sink.last_run_set(node_id, run)
                book._where.setdefault(node_id, Where(item.machine, item.cwd, item.session_name))
            self._send_added(item, moved=True)
        entry = self.service.registry.get(node_id)
        record = self.bp._roster.get(AgentKey(self.site, entry.node.machine, node_id)) if entry else None
        unread = record.get("unread") if record is not None and record.get("hv") != self.hv_id else None
        if isinstance(unread, int) and unread > book.unread_of(node_id):  # the count it had where it was
            book.unread[node_id] = unread
            book.sink.unread_set(node_id, unread)
        if taken:
            log.info("cluster inbox: items of an agent that moved here adopted", node_id=node_id[:128], n=len(taken))

    def _key_of_item(self, item_id: str) -> AgentKey | None:
        found = self.view.get(item_id)
        return None if found is None else AgentKey(self.site, found[1], found[0].node_id)

    def _machine_of(self, node_id: str) -> str:
        entry = self.service.registry.get(node_id)
        if entry is not None:
            return entry.node.machine
        remote = self.link.remote(node_id)
        if remote is not None:
            return remote.machine
        return self.view.machine_of(node_id) or UNKNOWN_MACHINE

    def _queue(self, key: AgentKey, what: str, record: dict[str, Any]) -> None:
        if len(self._outbox) >= MAX_OUTBOX:
            self._outbox.popleft()
            log.error("cluster inbox: the stream took nothing for long; an inbox record was dropped")
        self._outbox.append((key, what, record))
        self._wake.set()

    async def _write_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._outbox:
                key, what, record = self._outbox[0]
                for attempt in range(PUBLISH_TRIES):
                    try:
                        await self.bp.publish_attention(key, what, record)
                        break
                    except Exception as exc:  # noqa: BLE001 - a stream electing a leader: try again shortly
                        if attempt == PUBLISH_TRIES - 1:
                            log.error("cluster inbox record not appended", what=what,
                                      error=f"{type(exc).__name__}: {exc}"[:200])  # fmt: skip
                        await asyncio.sleep(0.5)
                if self._outbox and self._outbox[0][2] is record:
                    self._outbox.popleft()

    # -- the stream → the site's inbox ------------------------------------------------------------------------------
    async def _follow(self) -> None:
        """Read the stream in order from its newest ``ATTN_REPLAY_MAX`` records on, then live (one ordered consumer,
        recreated by the client after a lost server); returns once the records stored at start were applied."""
        from nats.js.api import ConsumerConfig, DeliverPolicy

        js = self.bp.js
        info = await self._settled(lambda: js.stream_info(ATTN_STREAM.format(site=self.site)), "inbox stream")
        state = info.state
        replaying = asyncio.get_running_loop().create_future()
        if state.messages:
            start = max(state.first_seq, state.last_seq - ATTN_REPLAY_MAX + 1)
            config = ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=start)
        else:
            config = ConsumerConfig(deliver_policy=DeliverPolicy.ALL)
            replaying.set_result(None)

        async def on_msg(msg: Any) -> None:
            try:
                record = loads(msg.data)
            except (ValueError, BackplaneError):
                self.view.refused += 1
            else:
                self._apply(record, live=replaying.done())
            if msg.metadata.num_pending == 0 and not replaying.done():
                replaying.set_result(None)

        sub = await self._settled(
            lambda: js.subscribe(site_attention(self.site), stream=ATTN_STREAM.format(site=self.site), cb=on_msg,
                                 ordered_consumer=True, config=config, idle_heartbeat=1.0, inactive_threshold=300),
            "inbox replay",
        )  # fmt: skip
        quiet_ordered_consumer(sub)
        self._stops.append(sub.unsubscribe)
        try:
            await asyncio.wait_for(asyncio.shield(replaying), 10.0)
        except TimeoutError:
            log.warning("cluster inbox: the replay did not finish in 10 s; going on live", items=len(self.view))
            if not replaying.done():
                replaying.set_result(None)

    def _apply(self, record: dict[str, Any], live: bool) -> None:
        book = self.service.attention
        effects = self.view.apply_raw(record, book.items)
        now = time.time()
        own: list[BaseModel] = []
        for item_id, by in effects.book:  # someone elsewhere ended an item of this book
            if by == "dismissed":
                own += book.dismiss(item_id, now) or []
            else:
                own += book._resolve(item_id, by, now)
        roster: list[BaseModel] = []
        if effects.read_node is not None and live:  # a person read the agent elsewhere: its count, if held here
            own += book.mark_read(effects.read_node, now)
            roster = self.service.registry.set_unread(effects.read_node, 0)
        if own:
            self.service.hub.publish(own)
        if effects.events:
            self._relay(effects.events)
        if roster:
            self.service.publish(roster)

    # -- a person's acts, and what dashboards read ------------------------------------------------------------------
    def list_attention(self) -> dict[str, Any]:
        book = self.service.attention
        items = book.open_items() + [i for i in self.view.items(held_elsewhere=True) if i.id not in book.items]
        items.sort(key=lambda i: i.created_at)
        unread = dict(book.unread)
        for node in self.link.mirror.nodes():
            if node.unread and node.id not in unread:
                unread[node.id] = node.unread
        return ListAttentionResult(items=items, unread=unread).model_dump(mode="json")

    async def dismiss(self, item_id: str) -> bool:
        """Another book's item: its ``resolved`` goes to the stream (False when no such open item is known)."""
        found = self.view.get(item_id)
        if found is None:
            return False
        item, machine = found
        key = AgentKey(self.site, machine, item.node_id)
        await self.bp.publish_attention(key, "resolved", resolved_record(item_id, "dismissed", time.time(), self.hv_id))
        return True

    async def mark_read(self, node_id: str) -> None:
        """After this hypivisor's own part: every book ends the agent's run items, its holder zeroes the count."""
        key = AgentKey(self.site, self._machine_of(node_id), node_id)
        try:
            await self.bp.publish_attention(key, "read", read_record(node_id, time.time(), self.hv_id))
        except Exception as exc:  # noqa: BLE001 - the local part is done; the others hear of the next read
            log.warning("cluster inbox: a read was not appended", error=f"{type(exc).__name__}: {exc}"[:200])

    # -- push: the site's queue → the policy → sends ----------------------------------------------------------------
    async def _on_push_record(self, record: dict[str, Any]) -> None:
        try:
            rec = parse(record)
        except RecordError:
            return
        if not isinstance(rec, Added) or rec.moved or self.view.ended(rec.item.id):
            return  # only a new item is pushed (not one a book took over), and only while it is open
        push = self.service.push
        devices = [row.policy_device() for row in push.devices.values()]
        pushes = push.policy.added(rec.item, devices, push.presence())
        if not pushes:
            return
        if rec.item.kind in ONCE and not await self._spend_once(rec.item.node_id, rec.item.kind):
            return  # another hypivisor pushed this agent's once-kind already
        loop = asyncio.get_running_loop()
        waits = []
        for p in pushes:
            waits.append(fut := loop.create_future())
            self._waiting[id(p)] = fut
        try:
            push.submit(pushes)
            await asyncio.wait(waits, timeout=SEND_WAIT_S)
        finally:
            for p in pushes:
                self._waiting.pop(id(p), None)

    async def _spend_once(self, node_id: str, kind: str) -> bool:
        """Claim the site's one push of ``kind`` for ``node_id`` until a person looks at it: a create in the push
        bucket, so of two hypivisors handling two such items at once only one pushes. Unreachable bucket: push
        anyway (a second notification is better than none)."""
        from nats.js.errors import KeyWrongLastSequenceError

        try:
            await asyncio.wait_for(self._push_kv.create(once_key(node_id, kind), self.hv_id.encode()), SPEND_WAIT_S)
        except KeyWrongLastSequenceError:
            return False
        except Exception as exc:  # noqa: BLE001 - NATS unreachable, a leader being elected: the push still goes
            log.warning("push: the once-kind was not recorded; pushing anyway", kind=kind,
                        error=f"{type(exc).__name__}: {exc}"[:200])  # fmt: skip
        return True

    def _rearm(self) -> None:
        """A page here looks at agents whose once-kinds the site spent: they are armed again everywhere."""
        looked = looked_at({"": [p for _, p in self.service.push.pages.values()]})
        for node_id, kind in [s for s in self._spent if s[0] in looked]:
            self._spent.discard((node_id, kind))
            self._spawn(self._push_kv.delete(once_key(node_id, kind)))

    def push_done(self, push: Push) -> None:
        fut = self._waiting.get(id(push))
        if fut is not None and not fut.done():
            fut.set_result(None)

    # -- devices and VAPID key, shared -----------------------------------------------------------------------------
    async def _share_push(self) -> None:
        from nats.js.api import KeyValueConfig, StorageType

        push = self.service.push
        bucket = PUSH_BUCKET.format(site=self.site)
        config = KeyValueConfig(bucket=bucket, history=1, storage=StorageType.FILE, replicas=self.bp.nsettings.replicas)
        self._push_kv = kv = await self._settled(lambda: self.bp.js.create_key_value(config), "push bucket")

        async def site_key_pem() -> Any:
            with contextlib.suppress(Exception):  # the first hypivisor's key is the site's; the others take it
                await kv.create("vapid", push.vapid.private_pem())
            return await kv.get("vapid")

        entry = await self._settled(site_key_pem, "push key")
        from py_vapid import Vapid02

        site_key = Vapid02.from_pem(entry.value)
        if keys.public_key_b64(site_key) != push.public_key:
            push.vapid, push.public_key = site_key, keys.public_key_b64(site_key)
            log.info("push: this hypivisor signs with the site's VAPID key (browsers subscribed here subscribe again)")
        local = dict(push.devices)
        push.devices.clear()
        seen: list[str] = []

        def on_entry(raw_key: str, value: bytes, op: str | None, revision: int) -> None:
            if raw_key.startswith("once."):
                self._on_once(raw_key, op)
                return
            if not raw_key.startswith("dev."):
                return
            device_id = untoken(raw_key[4:])
            seen.append(device_id)
            if op is not None:
                push.devices.pop(device_id, None)
                return
            try:
                row = DeviceRow(**json.loads(value))
            except (ValueError, TypeError):
                log.warning("push: a shared device record is unreadable; ignored", device_id=device_id[:64])
                return
            if row.device_id == device_id:
                push.devices[device_id] = row

        await self._settled(lambda: self.bp._watch(bucket, on_entry), "push devices")
        if not seen:  # the first hypivisor of the site brings the devices it had
            for row in local.values():
                push.devices[row.device_id] = row
                self.device_saved(row)
        push.share = self

    def _on_once(self, raw_key: str, op: str | None) -> None:
        node_tok, _, kind = raw_key[len("once.") :].rpartition(".")
        if not node_tok or kind not in ONCE:
            return
        try:
            spent = (untoken(node_tok), kind)
        except (ValueError, UnicodeDecodeError):
            return
        policy = self.service.push.policy
        if op is None:
            self._spent.add(spent)
            policy.spent.add(spent)
        else:  # re-armed (by whichever hypivisor's page looked at the agent)
            self._spent.discard(spent)
            policy.spent.discard(spent)

    def device_saved(self, row: DeviceRow) -> None:
        self._spawn(self._push_kv.put(f"dev.{token(row.device_id)}", json.dumps(row.__dict__).encode()))

    def device_removed(self, device_id: str) -> None:
        self._spawn(self._push_kv.delete(f"dev.{token(device_id)}"))

    def _spawn(self, aw: Any) -> None:
        task = asyncio.ensure_future(aw)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Future[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("cluster push share: a write failed", error=f"{task.exception()}"[:200])

    # -- presence, shared -----------------------------------------------------------------------------------------
    def with_remote_presence(self, local: dict[str, list[Presence]]) -> dict[str, list[Presence]]:
        return merge_presence(local, self.presence.presence(time.monotonic()))

    def _pages_of(self, device_id: str) -> list[Presence]:
        return [p for d, p in self.service.push.pages.values() if d == device_id]

    def presence_changed(self, device_id: str) -> None:
        data = orjson.dumps(presence_record(self.hv_id, device_id, self._pages_of(device_id)))
        self._spawn(self.bp.nc.publish(presence_subject(self.site, device_id), data))
        if self._push_kv is not None:
            self._rearm()

    async def _presence_loop(self) -> None:
        while True:
            await asyncio.sleep(PRESENCE_BEAT_S)
            for device_id in {d for d, _ in self.service.push.pages.values()}:
                self.presence_changed(device_id)

    async def _on_presence(self, event: Event) -> None:
        try:
            hv, device_id, pages = parse_presence(orjson.loads(event.data))
        except (RecordError, ValueError):
            return
        if self.presence.put(hv, device_id, pages, time.monotonic(), PRESENCE_TTL_S):
            push = self.service.push
            push.policy.presence_changed(push.presence())


async def start_inbox(link: ClusterLink, env: dict[str, str]) -> ClusterInbox:
    inbox = ClusterInbox(link)
    await inbox.start(env)
    return inbox
