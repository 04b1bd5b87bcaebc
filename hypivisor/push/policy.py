"""Which device gets which Web Push for an inbox item. Pure: no I/O, no clock (specs/push.md §2).

The rules:

* approval, question and error notify; finished and exited notify unless a person is looking at that agent
  (on any device); stalled and budget notify once per agent until a person has looked at it.
* Never to a device that is showing that agent right now: one of its pages has that agent open, focused
  and visible (a merely visible tab may be covered by another window).
* Each device's own switches (per kind) and muted agents.
* One push per item per device; none for an item that has ended (also re-checked just before sending).
* Collapsed per agent: the notification ``tag`` and the push service's ``Topic`` name the agent, so a new
  item replaces the agent's older notification rather than stacking.
"""

from __future__ import annotations

import base64
import hashlib
import posixpath
from dataclasses import dataclass, field
from urllib.parse import quote

from pi_socket.protocol import AttentionItem

KINDS = ("approval", "question", "error", "finished", "stalled", "budget", "exited")
WHEN_NOT_LOOKING = frozenset({"finished", "exited"})  # suppressed everywhere while someone looks at the agent
ONCE = frozenset({"stalled", "budget"})  # once per agent until a person has looked at it
URGENT = frozenset({"approval", "question", "error"})
TTL_S = 24 * 3600  # a push service keeps an undelivered notification this long (a phone offline overnight)
MAX_TEXT = 200  # title and body are cut here: a notification shows one or two lines

VERBS = {
    "approval": "needs approval",
    "question": "asks",
    "error": "failed",
    "finished": "finished",
    "stalled": "is stalled",
    "budget": "is over budget",
    "exited": "exited",
}


@dataclass(frozen=True)
class Device:
    """One subscribed browser: its push switches (kinds on) and the agents it muted."""

    id: str
    kinds: frozenset[str] = frozenset(KINDS)
    muted: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Presence:
    """What one open page of a device shows: the agent open (None: roster, inbox, spawn), focused, visible."""

    node_id: str | None
    focused: bool
    visible: bool

    def looking_at(self, node_id: str) -> bool:
        return self.node_id == node_id and self.focused and self.visible


@dataclass(frozen=True)
class Push:
    device_id: str
    item_id: str
    node_id: str
    payload: dict[str, str]
    topic: str
    urgency: str
    ttl: int = TTL_S


def agent_name(item: AttentionItem) -> str:
    """The session name, else the folder's basename, else the node id."""
    if item.session_name and item.session_name.strip():
        return item.session_name.strip()
    if item.cwd:
        base = posixpath.basename(item.cwd.rstrip("/\\").replace("\\", "/"))
        if base:
            return base
    return item.node_id


def _cut(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= MAX_TEXT else text[: MAX_TEXT - 1] + "…"


def topic(node_id: str) -> str:
    """RFC 8030 Topic: at most 32 characters of the URL-safe base64 alphabet, one per agent."""
    digest = hashlib.sha256(node_id.encode()).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")[:32]


def payload(item: AttentionItem) -> dict[str, str]:
    """What the service worker shows: "todo-api finished" / "Tests pass (3 files changed)"."""
    name = agent_name(item)
    out = {
        "title": _cut(f"{name} {VERBS.get(item.kind, item.kind)}"),
        "body": _cut(item.summary),
        "tag": f"hyperpi-agent-{topic(item.node_id)}",
        "url": f"#/agent/{quote(item.node_id, safe='')}",
        "node_id": item.node_id,
        "item_id": item.id,
        "kind": item.kind,
    }
    if item.approval_id:
        out["approval_id"] = item.approval_id
    return out


def looked_at(presence: dict[str, list[Presence]]) -> set[str]:
    """The agents a person is looking at now (a focused, visible page showing them): their once-kinds re-arm."""
    return {p.node_id for ps in presence.values() for p in ps if p.node_id and p.focused and p.visible}


@dataclass
class PushPolicy:
    """The memory the rules need: open items, who was sent what, which once-kinds are spent."""

    open: set[str] = field(default_factory=set)
    sent: dict[str, set[str]] = field(default_factory=dict)  # item id → device ids it went to
    spent: set[tuple[str, str]] = field(default_factory=set)  # (node id, kind) of once-kinds already sent

    def added(self, item: AttentionItem, devices: list[Device], presence: dict[str, list[Presence]]) -> list[Push]:
        """A new inbox item: the pushes to send now (possibly none)."""
        self.open.add(item.id)
        node = item.node_id
        if item.kind in WHEN_NOT_LOOKING and any(p.looking_at(node) for ps in presence.values() for p in ps):
            return []
        once = (node, item.kind)
        if item.kind in ONCE and once in self.spent:
            return []
        done = self.sent.setdefault(item.id, set())
        body = payload(item)
        pushes = []
        for dev in devices:
            if dev.id in done or item.kind not in dev.kinds or node in dev.muted:
                continue
            if any(p.looking_at(node) for p in presence.get(dev.id, [])):
                continue
            done.add(dev.id)
            pushes.append(Push(dev.id, item.id, node, body, topic(node), "high" if item.kind in URGENT else "normal"))
        if pushes and item.kind in ONCE:
            self.spent.add(once)
        return pushes

    def resolved(self, item_id: str) -> None:
        self.open.discard(item_id)
        self.sent.pop(item_id, None)

    def presence_changed(self, presence: dict[str, list[Presence]]) -> None:
        """A person looking at an agent re-arms its once-kinds."""
        looked = looked_at(presence)
        self.spent = {s for s in self.spent if s[0] not in looked}

    def still_wanted(self, push: Push, presence: dict[str, list[Presence]]) -> bool:
        """Just before sending: the item is still open and the device is not showing that agent now."""
        if push.item_id not in self.open:
            return False
        return not any(p.looking_at(push.node_id) for p in presence.get(push.device_id, []))
