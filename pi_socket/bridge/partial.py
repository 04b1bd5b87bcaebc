"""Rebuilds the assistant message pi is streaming, from the shim's slim events.

The shim strips the ``message``/``partial`` snapshots from ``message_update``
(they make traffic grow as O(n²), specs/pi-runtime.md §3), so the bridge keeps its own
copy: ``message_start`` gives the empty shell, each ``assistantMessageEvent``
edits one content block, ``message_end`` ends it. A client joining mid-stream
gets this copy as ``init_state.partial`` (invariant 3), then applies the same
deltas itself.
"""

from __future__ import annotations

import copy
from typing import Any

import orjson

Message = dict[str, Any]

_BLOCK_KINDS = {"text": "text", "thinking": "thinking", "toolcall": "toolCall"}


class PartialMessage:
    """The in-flight assistant message, or None between messages."""

    def __init__(self) -> None:
        self.message: Message | None = None
        self._tool_args: dict[int, str] = {}
        # Streamed text is kept as chunks and joined on demand: appending to a str stored in a
        # dict copies it every time, O(n²) over a long reply with thousands of deltas.
        self._chunks: dict[int, list[str]] = {}

    def start(self, message: Any) -> None:
        """``message_start``: only assistant messages stream; user/toolResult arrive whole."""
        self._tool_args, self._chunks = {}, {}
        if isinstance(message, dict) and message.get("role") == "assistant":
            self.message = copy.deepcopy(message)
            if not isinstance(self.message.get("content"), list):
                self.message["content"] = []
        else:
            self.message = None

    def end(self) -> None:
        """``message_end`` (or an aborted run): nothing is streaming any more."""
        self.message = None
        self._tool_args, self._chunks = {}, {}

    def update(self, event: dict[str, Any]) -> bool:
        """``message_update``: apply one ``assistantMessageEvent`` (unknown kinds are ignored).

        A full ``message`` snapshot (the shim's one-off after deltas nobody watched, protocol §4.2) replaces our
        copy; then the answer is True: clients that got the stale copy must start over."""
        snapshot = event.get("message")
        if isinstance(snapshot, dict) and snapshot.get("role") == "assistant":
            self.message = copy.deepcopy(snapshot)
            if not isinstance(self.message.get("content"), list):
                self.message["content"] = []
            self._tool_args, self._chunks = {}, {}
            for i, part in enumerate(self.message["content"]):  # tool arguments still streaming
                if (
                    isinstance(part, dict)
                    and part.get("type") == "toolCall"
                    and isinstance(part.get("partialJson"), str)
                ):
                    self._tool_args[i] = part["partialJson"]
            return True
        ame = event.get("assistantMessageEvent")
        if self.message is None or not isinstance(ame, dict) or not isinstance(ame.get("type"), str):
            return False
        kind, _, phase = ame["type"].partition("_")
        index = ame.get("contentIndex")
        if kind not in _BLOCK_KINDS or not isinstance(index, int) or not 0 <= index < 10_000:
            return False
        handler = {"start": self._start, "delta": self._delta, "end": self._end}.get(phase)
        if handler is not None:
            handler(kind, index, ame)
        return False

    def _block(self, kind: str, index: int) -> dict[str, Any]:
        """The content block at ``index``, created (and gaps padded) when missing."""
        content: list[Any] = self.message["content"]  # type: ignore[index]
        while len(content) <= index:
            content.append(None)
        block = content[index]
        if isinstance(block, dict) and block.get("type") == _BLOCK_KINDS[kind]:
            return block
        block = _empty_block(kind)
        content[index] = block
        self._chunks.pop(index, None)
        return block

    def _start(self, kind: str, index: int, ame: dict[str, Any]) -> None:
        self._chunks.pop(index, None)
        block = self._block(kind, index)
        if kind == "toolcall" and isinstance(ame.get("toolCall"), dict):
            block.update({k: v for k, v in ame["toolCall"].items() if k in ("id", "name", "type")})

    def _delta(self, kind: str, index: int, ame: dict[str, Any]) -> None:
        delta = ame.get("delta")
        if not isinstance(delta, str):
            return
        block = self._block(kind, index)
        if kind == "toolcall":
            self._tool_args[index] = self._tool_args.get(index, "") + delta
            block["arguments"] = _parse_partial_args(self._tool_args[index], block.get("arguments"))
        else:
            field = "text" if kind == "text" else "thinking"
            self._chunks.setdefault(index, [str(block.get(field, ""))]).append(delta)

    def _end(self, kind: str, index: int, ame: dict[str, Any]) -> None:
        block = self._block(kind, index)
        if kind == "toolcall":
            if isinstance(ame.get("toolCall"), dict):
                block.clear()
                block.update(ame["toolCall"])
            self._tool_args.pop(index, None)
        elif isinstance(ame.get("content"), str):
            self._chunks.pop(index, None)
            block["text" if kind == "text" else "thinking"] = ame["content"]

    def snapshot(self) -> Message | None:
        """A copy without the padding of blocks that never started (safe to serialise)."""
        if self.message is None:
            return None
        content = self.message["content"]
        for index, chunks in self._chunks.items():
            block = content[index]
            field = "text" if block.get("type") == "text" else "thinking"
            block[field] = "".join(chunks)
            self._chunks[index] = [block[field]]
        out = dict(self.message)
        out["content"] = [b for b in self.message["content"] if isinstance(b, dict)]
        return out


def _empty_block(kind: str) -> dict[str, Any]:
    if kind == "text":
        return {"type": "text", "text": ""}
    if kind == "thinking":
        return {"type": "thinking", "thinking": ""}
    return {"type": "toolCall", "id": "", "name": "", "arguments": {}}


def _parse_partial_args(fragment: str, previous: Any) -> Any:
    """Tool arguments stream as JSON fragments; show the last value that parsed."""
    try:
        value = orjson.loads(fragment)
    except orjson.JSONDecodeError:
        return previous if isinstance(previous, dict) else {}
    return value if isinstance(value, dict) else (previous if isinstance(previous, dict) else {})
