"""Watchdogs: the states of a run a person must hear about, from pi's events and the clock. Pure (no I/O).

Each detector is fed every event the bridge sees (:meth:`Watchdog.observe`) and the time (:meth:`tick`); it
reports only its current findings (:meth:`live`), which the bridge sends upward as ``stalled`` attention items
(specs/watchdogs.md). A finding ends by itself when its condition does.

- **stalled**: a run is working and nothing happened for ``stall_s`` (default 5 min). A tool that is running
  and still reporting progress is not stalled; one silent past its own timeout hint (bash ``timeout``) or
  ``stall_s`` is. Waiting on a dialog or an approval is waiting, not stalled.
- **looping**: the same tool call (name + normalised arguments) failed ``loop_n`` times in a row, or the same
  assistant text came ``loop_n`` times in a row.
- **retry storm**: more than ``retry_k`` provider errors (assistant messages with ``stopReason: "error"``)
  within ``retry_window_s``.
- **context nearly full**: context usage at or above ``context_pct`` after a run (pi would have compacted
  before that if it could), or a compaction failed while above 80 %.
"""

from __future__ import annotations

import json
from collections import deque
from dataclasses import dataclass
from typing import Any

from pi_socket.protocol import AttentionLive

from .history import message_text


@dataclass(frozen=True)
class Thresholds:
    stall_s: float = 300.0
    loop_n: int = 3
    retry_k: int = 5
    retry_window_s: float = 600.0
    context_pct: float = 90.0


# The events that change what the detectors know; any other event only proves the run is alive.
_RELEVANT = frozenset({
    "agent_start", "agent_settled", "agent_end", "tool_execution_start", "tool_execution_end", "ui_prompt_start",
    "ui_prompt_end", "message_end", "context_usage", "session_compact_failed", "session_compact", "compaction_end",
})  # fmt: skip


def _norm_args(args: Any) -> str:
    try:
        return json.dumps(args, sort_keys=True, separators=(",", ":"))[:4000]
    except (TypeError, ValueError):
        return repr(args)[:4000]


class Watchdog:
    def __init__(self, thresholds: Thresholds | None = None) -> None:
        self.t = thresholds or Thresholds()
        self.working = False
        self.waiting = 0  # open pi dialogs: waiting for a person is not a stall
        self.approvals_open = 0  # open approval questions (the bridge sets it): waiting too
        self.last_event = 0.0
        self.tools: dict[str, float] = {}  # running tool call id → its own timeout hint in seconds (0: none)
        self.calls: dict[str, str] = {}  # tool call id → "name args" (from the assistant message)
        self.fail_streak: tuple[str, int] = ("", 0)
        self.text_streak: tuple[str, int] = ("", 0)
        self.errors: deque[float] = deque(maxlen=1000)
        self.context_pct: float | None = None
        self.compaction_failed = False
        self.findings: dict[str, AttentionLive] = {}
        self._since: dict[str, float] = {}

    # ------------------------------------------------------------------ inputs
    def observe(self, event: dict[str, Any], now: float) -> bool:
        self.last_event = now
        kind = event.get("type")
        if kind not in _RELEVANT:  # deltas and the like (most events): only the clock moved
            return "stall" in self.findings and self._evaluate(now)
        if kind == "agent_start":
            self.working = True
        elif kind in ("agent_settled", "agent_end"):
            if kind == "agent_settled" or not self._settled_seen:
                self.working = False
                self.tools.clear()
        elif kind == "tool_execution_start":
            args = event.get("args") if isinstance(event.get("args"), dict) else {}
            hint = args.get("timeout") if isinstance(args, dict) else None
            ok = isinstance(hint, (int, float)) and not isinstance(hint, bool) and hint > 0
            self.tools[str(event.get("toolCallId"))] = float(hint) if ok and hint is not None else 0.0
        elif kind == "tool_execution_end":
            self.tools.pop(str(event.get("toolCallId")), None)
        elif kind == "ui_prompt_start":
            self.waiting += 1
        elif kind == "ui_prompt_end":
            self.waiting = max(0, self.waiting - 1)
        elif kind == "message_end":
            self._message(event.get("message"), now)
        elif kind == "context_usage":
            pct = event.get("percent")
            if isinstance(pct, (int, float)) and not isinstance(pct, bool):
                self.context_pct = float(pct)
        elif kind == "session_compact_failed":
            self.compaction_failed = True
        elif kind in ("session_compact", "compaction_end"):
            self.compaction_failed = False
        if kind == "agent_settled":
            self._settled_seen = True
        return self._evaluate(now)

    _settled_seen = False

    def _message(self, message: Any, now: float) -> None:
        if not isinstance(message, dict):
            return
        role = message.get("role")
        if role == "assistant":
            for part in message.get("content") or []:
                if isinstance(part, dict) and part.get("type") == "toolCall":
                    self.calls[str(part.get("id"))] = f"{part.get('name')} {_norm_args(part.get('arguments'))}"
            if len(self.calls) > 500:
                for key in list(self.calls)[:250]:
                    del self.calls[key]
            if message.get("stopReason") == "error":
                self.errors.append(now)
            text = message_text(message).strip()
            if text:
                same, n = self.text_streak
                self.text_streak = (text, n + 1 if text == same else 1)
        elif role == "toolResult":
            call = self.calls.get(str(message.get("toolCallId")), "")
            if message.get("isError") and call:
                same, n = self.fail_streak
                self.fail_streak = (call, n + 1 if call == same else 1)
            else:
                self.fail_streak = ("", 0)

    def set_context(self, pct: float | None, now: float) -> bool:
        """Context usage as the bridge's state learned it after a run (the `state` answer)."""
        self.context_pct = pct
        return self._evaluate(now)

    def tick(self, now: float, approvals_open: int | None = None) -> bool:
        """The clock moved (a stall needs no event), or the number of open approvals changed."""
        if approvals_open is not None:
            if approvals_open == 0 and self.approvals_open:
                self.last_event = now  # a decision is activity: the idle time starts over
            self.approvals_open = approvals_open
        return self._evaluate(now)

    # ------------------------------------------------------------------ findings
    def _evaluate(self, now: float) -> bool:
        t = self.t
        if (  # the common case, cheaply: nothing found before and nothing that could be a finding now
            not self.findings
            and (not self.working or now - self.last_event < t.stall_s)
            and self.fail_streak[1] < t.loop_n
            and self.text_streak[1] < t.loop_n
            and len(self.errors) <= t.retry_k
            and (self.context_pct is None or self.context_pct < min(80.0, t.context_pct))
        ):
            return False
        found: dict[str, str] = {}
        if self.working and not self.waiting and not self.approvals_open:
            idle = now - self.last_event
            running = list(self.tools.values())
            limit = self.t.stall_s
            if running:
                hints = [h for h in running if h > 0]
                limit = max(limit, max(hints) + 30.0) if hints else limit
            if self.last_event and idle >= limit:
                what = "a tool has been silent" if running else "no event"
                found["stall"] = f"stalled: {what} for {int(idle // 60)} min"
        name, n = self.fail_streak
        if n >= self.t.loop_n:
            found["loop"] = f"looping: {name.split(' ', 1)[0]} failed {n} times in a row with the same arguments"
        text, n = self.text_streak
        if n >= self.t.loop_n:
            found["loop-text"] = f"looping: the same answer {n} times in a row"
        while self.errors and now - self.errors[0] > self.t.retry_window_s:
            self.errors.popleft()
        if len(self.errors) > self.t.retry_k:
            found["retry"] = (
                f"retry storm: {len(self.errors)} provider errors in {int(self.t.retry_window_s // 60)} min"
            )
        pct = self.context_pct
        if pct is not None and (pct >= self.t.context_pct or (self.compaction_failed and pct >= 80.0)):
            found["context"] = f"context nearly full: {pct:.0f}% of the window" + (
                " and compaction failed" if self.compaction_failed else ""
            )
        changed = set(found) != set(self.findings) or any(
            self.findings[k].summary != v for k, v in found.items() if k in self.findings and k != "stall"
        )
        new: dict[str, AttentionLive] = {}
        for key, summary in found.items():
            old = self.findings.get(key)
            since = self._since.setdefault(key, now)
            if old is not None and (key == "stall" or old.summary == summary):
                new[key] = old  # the same finding goes on (a stall's minutes are not news)
            else:
                new[key] = AttentionLive(kind="stalled", key=f"{key}-{int(since)}", summary=summary[:300],
                                         created_at=since)  # fmt: skip
        for key in list(self._since):
            if key not in found:
                del self._since[key]
        self.findings = new
        return changed

    def live(self) -> list[AttentionLive]:
        return list(self.findings.values())
