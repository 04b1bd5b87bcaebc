"""What in this agent needs a person, from pi's events and the approval gate, with no I/O (specs/attention.md).

The bridge sends :meth:`AttentionTracker.report` with every register and heartbeat; the hypivisor turns it
into inbox items. Live causes (an open approval, an open pi dialog) are listed while they last; a settled
run is reported as ``last_run`` under a new key, once per run.
"""

from __future__ import annotations

import itertools
import re
import time
from typing import Any

from pi_socket.protocol import MAX_SUMMARY_LEN, AttentionLive, AttentionReport, AttentionRun

from .approvals import ApprovalBook
from .history import message_text

_KINDS = frozenset({"message_end", "agent_settled", "agent_end", "ui_prompt_start", "ui_prompt_end"})
GATE_DIALOG_PREFIX = "Hyper-Pi:"  # the approval gate's own dialog is an approval, not a question
MAX_QUESTIONS = 20
_FENCE = re.compile(r"```.*?(```|$)", re.S)
_LINK = re.compile(r"!?\[([^\]]*)\]\([^)]*\)")
_MARKS = re.compile(r"(\*\*|__|\*|_|~~|`)")
_LINE_START = re.compile(r"^\s*(#{1,6}\s+|>\s*|[-*+]\s+|\d+[.)]\s+)")


def plain_line(text: str, limit: int = 200) -> str:
    """The first line of text worth showing, with markdown taken off: for a notification or the inbox."""
    text = _FENCE.sub(" ", text)
    for raw in text.splitlines():
        line = _LINE_START.sub("", raw)
        line = _LINK.sub(r"\1", line)
        line = _MARKS.sub("", line)
        line = re.sub(r"<[^>]{1,100}>", "", line)
        line = " ".join(line.split())
        if line.strip("|-: "):
            return line if len(line) <= limit else line[: limit - 1] + "…"
    return ""


def approval_summary(tool_name: str, input_: Any) -> str:
    """``bash `rm -rf build```, ``edit src/a.ts``: what the call would do, in one line."""
    if isinstance(input_, dict):
        command = input_.get("command")
        if isinstance(command, str):
            return f"{tool_name} `{' '.join(command.split())[:200]}`"
        path = input_.get("path")
        if isinstance(path, str):
            return f"{tool_name} {path[:200]}"
    return tool_name


class AttentionTracker:
    def __init__(self) -> None:
        self._run_ids = itertools.count(1)
        self._boot = f"{int(time.time() * 1000):x}"  # run keys stay unique across bridge restarts
        self._messages = 0  # assistant messages of the current run
        self._last_message: dict[str, Any] | None = None
        self._error: str | None = None
        self._aborted = False
        self._questions: dict[str, AttentionLive] = {}
        self._question_ids = itertools.count(1)
        self.last_run: AttentionRun | None = None

    def observe(self, event: dict[str, Any], settled_supported: bool, now: float) -> bool:
        """One pi event; True when the report changed (the roster should hear it now)."""
        kind = event.get("type")
        if kind not in _KINDS:  # deltas and the like: nothing for the inbox
            return False
        if kind == "message_end":
            message = event.get("message")
            if isinstance(message, dict) and message.get("role") == "assistant":
                self._messages += 1
                content = message.get("content")
                if (
                    isinstance(content, str)
                    and content
                    or isinstance(content, list)
                    and any(isinstance(p, dict) and p.get("type") == "text" and p.get("text") for p in content)
                ):
                    self._last_message = message  # made plain text once, when the run settles
                stop = message.get("stopReason")
                # the latest answer decides: an error a retry recovered from is no error
                self._error = (
                    plain_line(str(message.get("errorMessage") or "the model returned an error")) or "failed"
                    if stop == "error"
                    else None
                )
                self._aborted = stop == "aborted"
            return False
        if kind == "agent_settled" or (kind == "agent_end" and not settled_supported):
            return self._settle(bool(event.get("aborted")) or self._aborted, now)
        if kind == "ui_prompt_start":
            title = str(event.get("title") or event.get("message") or "pi asks a question")
            if title.startswith(GATE_DIALOG_PREFIX) or len(self._questions) >= MAX_QUESTIONS:
                return False
            key = f"q{next(self._question_ids)}"
            self._questions[key] = AttentionLive(
                kind="question", key=key, summary=plain_line(title)[:MAX_SUMMARY_LEN] or "pi asks", created_at=now
            )
            return True
        if kind == "ui_prompt_end" and self._questions:
            self._questions.pop(next(reversed(self._questions)))  # dialogs nest: the newest closes first
            return True
        return False

    def _settle(self, aborted: bool, now: float) -> bool:
        last = self._last_message
        messages, error = self._messages, self._error
        self._messages, self._last_message, self._error, self._aborted = 0, None, None, False
        text = plain_line(message_text(last)) if last is not None else ""
        if aborted and error is None:
            return False  # a person stopped it: nothing to tell them
        if messages == 0 and error is None:
            return False
        key = f"{self._boot}-{next(self._run_ids)}"
        if error is not None:
            self.last_run = AttentionRun(key=key, outcome="error", summary=error or "failed", at=now,
                                         new_messages=messages)  # fmt: skip
        else:
            self.last_run = AttentionRun(key=key, outcome="finished", summary=text or "done", at=now,
                                         new_messages=messages)  # fmt: skip
        return True

    def report(self, approvals: ApprovalBook) -> AttentionReport:
        live = [
            AttentionLive(
                kind="approval",
                key=req.id[:128],
                summary=approval_summary(req.tool_name, req.input)[:MAX_SUMMARY_LEN],
                created_at=req.queued_at,
                approval_id=req.id[:128],
                tool_name=req.tool_name[:64],
            )
            for req in approvals.pending_list()[:50]
        ]
        live += list(self._questions.values())
        return AttentionReport(live=live, last_run=self.last_run)
