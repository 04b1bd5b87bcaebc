"""The site's inbox and presence as one hypivisor keeps them in cluster mode. Pure: no NATS, no clock, no loop.

Cluster mode (specs/cluster.md §6): each hypivisor's :class:`~hypivisor.attention.AttentionBook` keeps deciding
the items of the agents it holds (it is their owner); what a book emits goes to the site's attention stream
``HP_ATTN_<site>`` as records, and every hypivisor folds the stream, in order, into a :class:`SiteInbox`:

* ``added``: an item (``AttentionItem`` fields), ``hv``, the hypivisor whose book holds it, and what that book
  matches it by (``cause``: a live cause's key; ``run``: the run's key). The same item added again (``moved``) is
  a book taking it over (its agent registered there, or its hypivisor restarted): it holds it from now on, and
  nothing is pushed for it again;
* ``resolved``: ``{id, by, at, hv}``: the item ended. A person's end (``dismissed``, ``read``) counts from any
  hypivisor; any other end only from the book holding the item (a book that lost the agent cannot know);
* ``read``: ``{node_id, at, hv}``: a person read the agent on hypivisor ``hv``: its finished/error/exited items end
  wherever they are, and whoever holds the agent's unread count sets it to 0.

:meth:`SiteInbox.apply` says, for one record, what this hypivisor does about it (:class:`Effects`): the events its
dashboards get (only for items another book made: its own book's events went out already), the items of its own
book that end because someone elsewhere ended them, and whether its own book should mark an agent read.

:class:`PresenceTable` keeps which pages the other hypivisors' dashboards show (per hypivisor and device, each
entry lasting ``ttl`` unless refreshed), so "is anyone looking at this agent" covers every hypivisor.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ValidationError

from hypivisor.attention import RUN_KINDS
from hypivisor.cluster.names import untoken
from hypivisor.push.policy import Presence
from pi_socket.protocol import AttentionAddedEvent, AttentionItem, AttentionResolvedEvent

MAX_ITEMS = 20_000  # open items kept (an owner's book has the same bound); beyond it the oldest leave silently
MAX_RESOLVED = 50_000  # ids remembered as ended: an item handed to the push queue after its end is not pushed
MAX_PAGES_PER_DEVICE = 32  # pages of one device on one hypivisor that a presence record may carry
RESOLVED_BY = frozenset({"cause", "read", "dismissed", "exited", "superseded"})
PERSON_ENDS = frozenset({"read", "dismissed"})  # from any hypivisor; other ends only from the holding book
MAX_KEY = 256
Whats = Literal["added", "resolved", "read"]
WHATS: tuple[str, ...] = ("added", "resolved", "read")


class RecordError(ValueError):
    """A stream record this hypivisor cannot use (the message says why); it is skipped, never fatal."""


@dataclass(frozen=True)
class Added:
    item: AttentionItem
    machine: str  # the machine token of its subject (where its agent was when the item was made)
    hv: str
    cause: str | None = None  # a live item's cause key in its book
    run: str | None = None  # a run item's run key in its book
    moved: bool = False  # a book taking over an item already raised: never pushed again


@dataclass(frozen=True)
class Resolved:
    id: str
    by: str
    at: float
    hv: str


@dataclass(frozen=True)
class Read:
    node_id: str
    at: float
    hv: str


Record = Added | Resolved | Read


def added_record(
    item: AttentionItem, hv: str, cause: str | None = None, run: str | None = None, moved: bool = False
) -> dict[str, Any]:
    record: dict[str, Any] = {**item.model_dump(mode="json"), "hv": hv}
    if moved:
        record["moved"] = True
    if cause is not None:
        record["cause"] = cause
    if run is not None:
        record["run"] = run
    return record


def resolved_record(item_id: str, by: str, at: float, hv: str) -> dict[str, Any]:
    return {"id": item_id, "by": by, "at": at, "hv": hv}


def read_record(node_id: str, at: float, hv: str) -> dict[str, Any]:
    return {"node_id": node_id, "at": at, "hv": hv}


def parse(record: dict[str, Any]) -> Record:
    """A stream record (as the backplane hands it, with ``_subject``) → :data:`Record`; :class:`RecordError` if bad."""
    subject = record.get("_subject")
    parts = subject.split(".") if isinstance(subject, str) else []
    if len(parts) != 6 or parts[0] != "hp" or parts[1] != "attn" or parts[5] not in WHATS:
        raise RecordError(f"not an attention subject: {str(subject)[:120]!r}")
    hv = record.get("hv")
    if not isinstance(hv, str) or not hv:
        raise RecordError("a record without its hypivisor (hv)")
    what = parts[5]
    try:
        machine, agent = untoken(parts[3]), untoken(parts[4])
    except (ValueError, UnicodeDecodeError):
        raise RecordError("a subject whose tokens do not decode") from None
    at = record.get("at")
    if what == "added":
        try:
            fields = {k: v for k, v in record.items() if k not in ("hv", "_subject", "cause", "run", "moved")}
            item = AttentionItem.model_validate(fields)
        except ValidationError:
            raise RecordError("an added record that is not an inbox item") from None
        if item.node_id != agent:
            raise RecordError("an added record filed under another agent")
        cause, run = record.get("cause"), record.get("run")
        for key in (cause, run):
            if key is not None and (not isinstance(key, str) or not key or len(key) > MAX_KEY):
                raise RecordError("an added record's cause and run are short strings")
        return Added(item, machine, hv, cause, run, record.get("moved") is True)
    if not isinstance(at, (int, float)) or isinstance(at, bool):
        raise RecordError(f"a {what} record without its time (at)")
    if what == "resolved":
        item_id, by = record.get("id"), record.get("by")
        if not isinstance(item_id, str) or not item_id or by not in RESOLVED_BY:
            raise RecordError("a resolved record needs an id and a known 'by'")
        return Resolved(item_id, str(by), float(at), hv)
    node_id = record.get("node_id")
    if node_id != agent:
        raise RecordError("a read record filed under another agent")
    return Read(agent, float(at), hv)


@dataclass
class Effects:
    """What one record means for this hypivisor."""

    events: list[BaseModel] = field(default_factory=list)  # to its dashboards (items other books made)
    book: list[tuple[str, str]] = field(default_factory=list)  # (item id, by): end these in its own book
    read_node: str | None = None  # a person read this agent elsewhere: its own book marks it read (when it holds it)


@dataclass
class _Kept:
    item: AttentionItem
    machine: str
    local: bool  # held by this hypivisor's own book: its dashboards had its events from the book itself
    holder: str  # the hypivisor whose book holds it (the last to add it)
    cause: str | None
    run: str | None


class SiteInbox:
    """The open items of the site, in stream order. Not thread-safe: drive it from one event loop."""

    def __init__(self, hv_id: str) -> None:
        self.hv_id = hv_id
        self._items: OrderedDict[str, _Kept] = OrderedDict()
        self._by_node: dict[str, dict[str, None]] = {}  # node id → its open items' ids, in stream order
        self._ended: OrderedDict[str, None] = OrderedDict()
        self.refused = 0  # records that could not be used (counted, never fatal)

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, item_id: object) -> bool:
        return item_id in self._items

    def get(self, item_id: str) -> tuple[AttentionItem, str] | None:
        kept = self._items.get(item_id)
        return None if kept is None else (kept.item, kept.machine)

    def ended(self, item_id: str) -> bool:
        return item_id in self._ended

    def items(self, held_elsewhere: bool = False) -> list[AttentionItem]:
        """Open items, oldest first; ``held_elsewhere``: only those another hypivisor's book holds (this one's own
        book is the truth for its own items, even before their ends come back from the stream)."""
        return [k.item for k in self._items.values() if not held_elsewhere or k.holder != self.hv_id]

    def machine_of(self, node_id: str) -> str | None:
        ids = self._by_node.get(node_id)
        return self._items[next(reversed(ids))].machine if ids else None

    def _of_node(self, node_id: str) -> list[tuple[str, _Kept]]:
        """``node_id``'s open items (id, kept), in stream order: an agent joining costs its own items, not the
        site's (a fail-over moves thousands of agents)."""
        return [(item_id, self._items[item_id]) for item_id in self._by_node.get(node_id, ())]

    def apply_raw(self, record: dict[str, Any], in_book: set[str] | dict[str, Any]) -> Effects:
        try:
            parsed = parse(record)
        except RecordError:
            self.refused += 1
            return Effects()
        return self.apply(parsed, in_book)

    def apply(self, rec: Record, in_book: set[str] | dict[str, Any]) -> Effects:
        """One record, in stream order. ``in_book``: the ids open in this hypivisor's own book right now."""
        out = Effects()
        if isinstance(rec, Added):
            item_id = rec.item.id
            if item_id in self._ended:
                return out  # ended already (its end overtook it)
            kept = self._items.get(item_id)
            if kept is not None:  # seen twice, or adopted by the book its agent moved to: that book holds it now
                kept.holder = rec.hv
                kept.local = kept.local or rec.hv == self.hv_id
                return out
            local = rec.hv == self.hv_id or item_id in in_book
            self._items[item_id] = _Kept(rec.item, rec.machine, local, rec.hv, rec.cause, rec.run)
            self._by_node.setdefault(rec.item.node_id, {})[item_id] = None
            if not local:
                out.events.append(AttentionAddedEvent(item=rec.item.model_copy()))
            while len(self._items) > MAX_ITEMS:
                self._end(next(iter(self._items)))
            return out
        if isinstance(rec, Resolved):
            kept = self._items.get(rec.id)
            if kept is not None and rec.by not in PERSON_ENDS and rec.hv != kept.holder:
                return out  # a book that no longer holds the item (its agent moved on) cannot end it
            self._resolve(rec.id, rec.by, rec.hv, in_book, out)
            return out
        for item_id, kept in self._of_node(rec.node_id):
            if kept.item.kind in RUN_KINDS:
                self._resolve(item_id, "read", rec.hv, in_book, out)
        if rec.hv != self.hv_id:
            out.read_node = rec.node_id
        return out

    def adoptable(self, node_id: str) -> list[tuple[AttentionItem, str | None, str | None]]:
        """Open items of ``node_id`` that another hypivisor's book holds: (item, cause, run). Its agent registered
        here, so this hypivisor's book takes them over (:meth:`adopted`) rather than raising them again."""
        return [(k.item, k.cause, k.run) for _, k in self._of_node(node_id) if k.holder != self.hv_id]

    def holder_of(self, item_id: str) -> str | None:
        kept = self._items.get(item_id)
        return None if kept is None else kept.holder

    def adopted(self, item_id: str) -> None:
        kept = self._items.get(item_id)
        if kept is not None:
            kept.holder, kept.local = self.hv_id, True

    def _resolve(self, item_id: str, by: str, hv: str, in_book: set[str] | dict[str, Any], out: Effects) -> None:
        kept = self._end(item_id)
        if item_id in in_book and hv != self.hv_id:
            out.book.append((item_id, by))  # its book ends it and says so to its own dashboards
        elif kept is not None and not kept.local:
            out.events.append(AttentionResolvedEvent(id=item_id, by=by))

    def _end(self, item_id: str) -> _Kept | None:
        kept = self._items.pop(item_id, None)
        if kept is not None:
            ids = self._by_node.get(kept.item.node_id)
            if ids is not None:
                ids.pop(item_id, None)
                if not ids:
                    del self._by_node[kept.item.node_id]
        self._ended[item_id] = None
        self._ended.move_to_end(item_id)
        while len(self._ended) > MAX_RESOLVED:
            self._ended.popitem(last=False)
        return kept


# --- presence across hypivisors ------------------------------------------------------------------------------------


def presence_record(hv: str, device_id: str, pages: list[Presence]) -> dict[str, Any]:
    """One hypivisor's pages of one device (an empty list: none any more)."""
    return {"hv": hv, "device": device_id,
            "pages": [[p.node_id, p.focused, p.visible] for p in pages[:MAX_PAGES_PER_DEVICE]]}  # fmt: skip


def parse_presence(record: Any) -> tuple[str, str, list[Presence]]:
    """(hv, device id, pages) of a presence record; :class:`RecordError` if bad."""
    if not isinstance(record, dict):
        raise RecordError("a presence record must be an object")
    hv, device, pages = record.get("hv"), record.get("device"), record.get("pages")
    if not isinstance(hv, str) or not hv or not isinstance(device, str) or not device or len(device) > 256:
        raise RecordError("a presence record needs hv and device")
    if not isinstance(pages, list) or len(pages) > MAX_PAGES_PER_DEVICE:
        raise RecordError("a presence record's pages must be a short list")
    out: list[Presence] = []
    for page in pages:
        if (
            not isinstance(page, list)
            or len(page) != 3
            or not (page[0] is None or (isinstance(page[0], str) and len(page[0]) <= 1024))
            or not isinstance(page[1], bool)
            or not isinstance(page[2], bool)
        ):
            raise RecordError("a page is [node id or null, focused, visible]")
        out.append(Presence(page[0], page[1], page[2]))
    return hv, device, out


class PresenceTable:
    """(hypivisor, device) → the pages it reported and until when they count."""

    def __init__(self, hv_id: str, max_entries: int = 10_000) -> None:
        self.hv_id = hv_id
        self.max_entries = max_entries
        self._entries: dict[tuple[str, str], tuple[list[Presence], float]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def put(self, hv: str, device_id: str, pages: list[Presence], now: float, ttl: float) -> bool:
        """Keep what ``hv`` reported for ``device_id`` (nothing for this hypivisor's own reports). True when a page
        now shows an agent focused and visible that it did not before (once-kinds re-arm on looking)."""
        if hv == self.hv_id:
            return False
        key = (hv, device_id)
        before = self._entries.pop(key, None)
        if pages:
            if len(self._entries) >= self.max_entries:
                self._entries.pop(next(iter(self._entries)))
            self._entries[key] = (list(pages), now + ttl)
        looked = {p.node_id for p in pages if p.node_id and p.focused and p.visible}
        was = {p.node_id for p in (before[0] if before else []) if p.node_id and p.focused and p.visible}
        return bool(looked - was)

    def drop_hv(self, hv: str) -> None:
        for key in [k for k in self._entries if k[0] == hv]:
            del self._entries[key]

    def presence(self, now: float) -> dict[str, list[Presence]]:
        """Device → the pages other hypivisors' dashboards show now (expired entries are dropped)."""
        out: dict[str, list[Presence]] = {}
        for key, (pages, until) in list(self._entries.items()):
            if until <= now:
                del self._entries[key]
                continue
            out.setdefault(key[1], []).extend(pages)
        return out


def merge_presence(a: dict[str, list[Presence]], b: dict[str, list[Presence]]) -> dict[str, list[Presence]]:
    if not b:
        return a
    out = {k: list(v) for k, v in a.items()}
    for device, pages in b.items():
        out.setdefault(device, []).extend(pages)
    return out
