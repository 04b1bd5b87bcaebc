"""The bridge's mirror of pi's conversation and the two ways clients read it.

pi's session is the source of truth: the bridge asks the shim for it once per
session (``history``) and then appends every ``message_end`` itself, so no
client request ever walks pi's session again.

Cursor semantics (what the earlier implementation got wrong, see
specs/pi-runtime.md §6): every message has an absolute index ``0..total-1``.
``init_state.cursor`` and ``history_page.cursor`` are the index of the first
message in that frame; a client asks for the next older page with
``fetch_history{before: <the oldest cursor it holds>}``. Pages are contiguous
ranges ending at ``min(before, total)``, so walking them from the init window
down to ``cursor == 0`` visits every message exactly once.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, TypeGuard

import orjson

Message = dict[str, Any]

# How many of the newest mirrored messages are compared when a history snapshot
# arrives while message_end events were in flight (see ``HistoryMirror.reset``).
RECONCILE_WINDOW = 50


def json_size(message: Message) -> int:
    """Bytes this message adds to a JSON array (its encoding plus a separator)."""
    return len(orjson.dumps(message)) + 1


def message_key(message: Message) -> tuple[Any, ...]:
    """Identity of a pi message for de-duplication: role, timestamp and tool call id."""
    return (message.get("role"), message.get("timestamp"), message.get("toolCallId"), message.get("responseId"))


def is_visible(message: Any) -> TypeGuard[dict[str, Any]]:
    """pi 1.5's ``role: "system"`` prompt messages never reach clients (specs/pi-runtime.md §3)."""
    return isinstance(message, dict) and isinstance(message.get("role"), str) and message["role"] != "system"


@dataclass(frozen=True)
class Window:
    """A contiguous slice ``[cursor, cursor + len(messages))`` of the history."""

    messages: list[Message]
    cursor: int
    total: int

    @property
    def truncated(self) -> bool:
        return self.cursor > 0


class HistoryMirror:
    """Messages in order, with their JSON sizes cached so windows cost O(window)."""

    def __init__(self, messages: Iterable[Message] = ()) -> None:
        self._messages: list[Message] = []
        self._sizes: list[int] = []
        for m in messages:
            self.append(m)

    def __len__(self) -> int:
        return len(self._messages)

    @property
    def messages(self) -> list[Message]:
        return self._messages

    def append(self, message: Message) -> bool:
        """Add a finished message; system and malformed messages are ignored (returns False)."""
        if not is_visible(message):
            return False
        self._messages.append(message)
        self._sizes.append(json_size(message))
        return True

    def reset(self, snapshot: Iterable[Message], arrived_meanwhile: Iterable[Message] = ()) -> None:
        """Replace the mirror with pi's snapshot, then re-add messages whose ``message_end``
        arrived while the snapshot was being fetched but which the snapshot does not hold yet
        (pi may persist a message after notifying extensions; a message must be neither lost nor doubled)."""
        self._messages, self._sizes = [], []
        for m in snapshot:
            self.append(m)
        recent = {message_key(m) for m in self._messages[-RECONCILE_WINDOW:]}
        for m in arrived_meanwhile:
            if is_visible(m) and message_key(m) not in recent:
                self.append(m)
                recent.add(message_key(m))

    def tail_window(self, budget_bytes: int) -> Window:
        """The newest messages whose JSON fits ``budget_bytes`` (at least one if any exist)."""
        return self._window_ending(len(self._messages), len(self._messages), budget_bytes)

    def page(self, before: int, limit: int, budget_bytes: int) -> Window:
        """Up to ``limit`` messages ending just before index ``before`` (clamped to the total),
        cut to ``budget_bytes`` from the newest side (at least one message)."""
        end = min(max(before, 0), len(self._messages))
        return self._window_ending(end, max(limit, 0), budget_bytes)

    def _window_ending(self, end: int, limit: int, budget_bytes: int) -> Window:
        start, used = end, 0
        while start > 0 and end - start < limit:
            size = self._sizes[start - 1]
            if used + size > budget_bytes and start < end:
                break
            used += size
            start -= 1
        return Window(self._messages[start:end], start, len(self._messages))


def message_text(message: Message) -> str:
    """The text parts of a pi message, joined by newlines (its content may also be a plain string)."""
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
    return ""


def usage_totals(messages: Iterable[Message]) -> tuple[dict[str, int], float]:
    """Token and cost totals summed over assistant messages' ``usage`` (pi keeps no session total)."""
    totals = {"input": 0, "output": 0, "cache_read": 0, "cache_write": 0, "total": 0}
    cost = 0.0
    for m in messages:
        t, c = message_usage(m)
        for k in totals:
            totals[k] += t[k]
        cost += c
    return totals, cost


def message_usage(message: Message) -> tuple[dict[str, int], float]:
    """One message's usage in our snake_case totals; zero for anything but a well-formed assistant usage."""
    zero = {"input": 0, "output": 0, "cache_read": 0, "cache_write": 0, "total": 0}
    usage = message.get("usage") if message.get("role") == "assistant" else None
    if not isinstance(usage, dict):
        return zero, 0.0

    def num(value: Any) -> int:
        return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0

    out = {
        "input": num(usage.get("input")),
        "output": num(usage.get("output")),
        "cache_read": num(usage.get("cacheRead")),
        "cache_write": num(usage.get("cacheWrite")),
        "total": num(usage.get("totalTokens")),
    }
    cost = usage.get("cost")
    total_cost = cost.get("total") if isinstance(cost, dict) else None
    return out, float(total_cost) if isinstance(total_cost, (int, float)) and not isinstance(total_cost, bool) else 0.0
