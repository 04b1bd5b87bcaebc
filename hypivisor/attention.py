"""The inbox: what in every agent needs a person, with per-agent unread counts. Pure (specs/attention.md).

Bridges report (with every register and heartbeat) their live causes (open approvals and pi dialogs) and
their latest settled run; :class:`AttentionBook` turns that into items and push events. An item ends when
its cause does (``by="cause"``), when a person reads the agent (``read``) or dismisses it (``dismissed``),
when the agent leaves (``exited``), or when a newer item of the same kind replaces it (``superseded``).

Persistence is injected (:class:`Sink`): the book tells it every change and is rebuilt from what it kept
(:meth:`AttentionBook.restore`), so the inbox and read markers survive a hypivisor restart.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Protocol

from pydantic import BaseModel

from pi_socket.protocol import (
    AttentionAddedEvent,
    AttentionItem,
    AttentionLive,
    AttentionReport,
    AttentionResolvedEvent,
    NodeInfo,
    UnreadChangedEvent,
)

LIVE_KINDS = frozenset({"approval", "question", "stalled", "budget"})
RUN_KINDS = frozenset({"finished", "error", "exited"})  # ended by reading the agent
MAX_OPEN_ITEMS = 20_000  # oldest resolved as "superseded" beyond it (a bound, not a feature)


class Sink(Protocol):
    def item_added(self, item: AttentionItem, cause_key: str | None) -> None: ...
    def item_resolved(self, item_id: str, by: str, at: float) -> None: ...
    def unread_set(self, node_id: str, unread: int) -> None: ...
    def last_run_set(self, node_id: str, key: str) -> None: ...


class NullSink:
    def item_added(self, item: AttentionItem, cause_key: str | None) -> None:
        pass

    def item_resolved(self, item_id: str, by: str, at: float) -> None:
        pass

    def unread_set(self, node_id: str, unread: int) -> None:
        pass

    def last_run_set(self, node_id: str, key: str) -> None:
        pass


@dataclass
class Where:
    """The last known place of an agent (kept after it leaves, for its `exited` item)."""

    machine: str | None
    cwd: str | None
    session_name: str | None


class AttentionBook:
    def __init__(self, sink: Sink | None = None, first_id: int = 1) -> None:
        self.sink: Sink = sink or NullSink()
        self.items: dict[str, AttentionItem] = {}  # open items, oldest first
        self._causes: dict[tuple[str, str, str], str] = {}  # (node, kind, key) → item id, live kinds only
        self._cause_of: dict[str, tuple[str, str, str]] = {}
        self._dismissed: set[tuple[str, str, str]] = set()  # live causes a person dismissed while they last
        self.unread: dict[str, int] = {}
        self.last_run: dict[str, str] = {}
        self._where: dict[str, Where] = {}
        self._ids = itertools.count(first_id)
        # Live causes per node: the bridge's latest report, and the hypivisor's own (budgets); both together
        # are the node's live set. On a register or heartbeat the registry sets its own causes first (unsynced)
        # and the bridge's report then syncs both, so a restored item is matched by its cause, never redone.
        self._reported: dict[str, list[AttentionLive]] = {}
        self._own: dict[str, list[AttentionLive]] = {}

    # ------------------------------------------------------------------ restore
    def restore(
        self,
        items: list[tuple[AttentionItem, str | None]],
        unread: dict[str, int],
        last_run: dict[str, str],
        next_id: int,
    ) -> None:
        """Rebuild from what the sink kept (open items with their cause keys), without telling the sink."""
        for item, cause in items:
            self.items[item.id] = item
            if cause is not None and item.kind in LIVE_KINDS:
                self._link(item.id, (item.node_id, item.kind, cause))
            self._where.setdefault(item.node_id, Where(item.machine, item.cwd, item.session_name))
        self.unread = {k: v for k, v in unread.items() if v > 0}
        self.last_run = dict(last_run)
        self._ids = itertools.count(next_id)

    def _link(self, item_id: str, cause: tuple[str, str, str]) -> None:
        self._causes[cause] = item_id
        self._cause_of[item_id] = cause

    # ------------------------------------------------------------------ views
    def open_items(self) -> list[AttentionItem]:
        return list(self.items.values())

    def unread_of(self, node_id: str) -> int:
        return self.unread.get(node_id, 0)

    # ------------------------------------------------------------------ changes
    def _add(
        self, node_id: str, kind: str, summary: str, created_at: float, cause: str | None = None, **extra: str | None
    ) -> list[BaseModel]:
        where = self._where.get(node_id) or Where(None, None, None)
        item = AttentionItem(
            id=f"att-{next(self._ids)}",
            node_id=node_id,
            kind=kind,
            summary=summary[:300],
            created_at=created_at,
            machine=where.machine,
            cwd=where.cwd,
            session_name=where.session_name,
            **extra,
        )
        events: list[BaseModel] = []
        if len(self.items) >= MAX_OPEN_ITEMS:
            oldest = next(iter(self.items))
            events += self._resolve(oldest, "superseded", created_at)
        self.items[item.id] = item
        if cause is not None:
            self._link(item.id, (node_id, kind, cause))
        self.sink.item_added(item, cause)
        events.append(AttentionAddedEvent(item=item.model_copy()))
        return events

    def _resolve(self, item_id: str, by: str, now: float) -> list[BaseModel]:
        if self.items.pop(item_id, None) is None:
            return []
        cause = self._cause_of.pop(item_id, None)
        if cause is not None:
            self._causes.pop(cause, None)
        self.sink.item_resolved(item_id, by, now)
        return [AttentionResolvedEvent(id=item_id, by=by)]

    def _set_unread(self, node_id: str, unread: int) -> list[BaseModel]:
        if self.unread.get(node_id, 0) == unread:
            return []
        if unread:
            self.unread[node_id] = unread
        else:
            self.unread.pop(node_id, None)
        self.sink.unread_set(node_id, unread)
        return [UnreadChangedEvent(node_id=node_id, unread=unread)]

    def report(self, node: NodeInfo, report: AttentionReport, now: float) -> list[BaseModel]:
        """A bridge's register or heartbeat: items for new causes, ends for causes gone, one item per new run."""
        node_id = node.id
        self._where[node_id] = Where(node.machine, node.cwd, node.session_name)
        self._reported[node_id] = list(report.live)
        events = self._sync_live(node_id, now)
        run = report.last_run
        if run is not None and self.last_run.get(node_id) != run.key:
            self.last_run[node_id] = run.key
            self.sink.last_run_set(node_id, run.key)
            for item_id, item in list(self.items.items()):
                if item.node_id == node_id and item.kind in RUN_KINDS:
                    events += self._resolve(item_id, "superseded", now)
            events += self._add(node_id, run.outcome, run.summary, run.at)
            if run.new_messages:
                events += self._set_unread(node_id, self.unread_of(node_id) + run.new_messages)
        return events

    def reported(self, node_id: str) -> list[AttentionLive]:
        """The node's live causes as its bridge reported them last (an open approval is one while it waits)."""
        return self._reported.get(node_id, [])

    def set_own(self, node_id: str, live: list[AttentionLive], now: float, sync: bool = True) -> list[BaseModel]:
        """The hypivisor's own live causes of a node (its budget state), kept beside the bridge's report.
        ``sync=False`` when the node's own report follows at once (it syncs both)."""
        if live:
            self._own[node_id] = list(live)
        else:
            self._own.pop(node_id, None)
        return self._sync_live(node_id, now) if sync else []

    def _sync_live(self, node_id: str, now: float) -> list[BaseModel]:
        """Items for new live causes of a node, ends for causes gone."""
        events: list[BaseModel] = []
        seen: set[tuple[str, str, str]] = set()
        for live in self._reported.get(node_id, []) + self._own.get(node_id, []):
            cause: tuple[str, str, str] = (node_id, live.kind, live.key)
            seen.add(cause)
            if cause not in self._causes and cause not in self._dismissed:
                extra = {"approval_id": live.approval_id, "tool_name": live.tool_name}
                events += self._add(node_id, live.kind, live.summary, live.created_at, cause=live.key, **extra)
        for cause, item_id in list(self._causes.items()):
            if cause[0] == node_id and cause not in seen:
                events += self._resolve(item_id, "cause", now)
        self._dismissed = {c for c in self._dismissed if c[0] != node_id or c in seen}
        return events

    def mark_read(self, node_id: str, now: float) -> list[BaseModel]:
        """A person read this agent (on any device): its run items end and its unread count is 0."""
        events: list[BaseModel] = []
        for item_id, item in list(self.items.items()):
            if item.node_id == node_id and item.kind in RUN_KINDS:
                events += self._resolve(item_id, "read", now)
        return events + self._set_unread(node_id, 0)

    def dismiss(self, item_id: str, now: float) -> list[BaseModel] | None:
        """None when there is no such open item."""
        if item_id not in self.items:
            return None
        cause = self._cause_of.get(item_id)
        if cause is not None:
            self._dismissed.add(cause)
        return self._resolve(item_id, "dismissed", now)

    def node_left(self, node_id: str, reason: str | None, now: float) -> list[BaseModel]:
        """The agent left the roster: its live causes end; unread output becomes one `exited` item, and an agent
        that vanished without saying goodbye (swept) is an `error`."""
        events: list[BaseModel] = []
        self._reported.pop(node_id, None)
        self._own.pop(node_id, None)
        for cause, item_id in list(self._causes.items()):
            if cause[0] == node_id:
                events += self._resolve(item_id, "exited", now)
        self._dismissed = {c for c in self._dismissed if c[0] != node_id}
        if reason == "deregistered":
            if self.unread_of(node_id) > 0:
                for item_id, item in list(self.items.items()):
                    if item.node_id == node_id and item.kind in RUN_KINDS:
                        events += self._resolve(item_id, "superseded", now)
                n = self.unread_of(node_id)
                events += self._add(node_id, "exited", f"pi exited with {n} unread message{'s' * (n != 1)}", now)
        elif reason in ("ttl", "ghost"):
            events += self._add(node_id, "error", "the agent stopped responding (pi exited abnormally?)", now)
        return events

    def forget_live_of_absent(self, present: set[str], now: float) -> list[BaseModel]:
        """After a restart: live causes of agents that did not come back within the grace time end."""
        events: list[BaseModel] = []
        for cause, item_id in list(self._causes.items()):
            if cause[0] not in present:
                events += self._resolve(item_id, "exited", now)
        return events
