"""pi's session files (JSONL, version 3; v1 and v2 migrated as pi does): header, entries, tree, messages. Pure.

A file is a header line ``{"type": "session", "version": 3, "id", "timestamp", "cwd", "parentSession"?}`` and
one entry per line, linked into a tree by ``id``/``parentId``. The active branch is the path from the *last
entry in the file* up to the root, as pi picks it when it opens a session. pi writes without a lock and appends
line by line, so the last line may be unterminated: only complete lines count (:func:`complete_length`).
Malformed lines are skipped, as pi skips them.

Messages come out in pi's ``AgentMessage`` shapes (what a live agent's ``init_state``/``history_page`` carry),
so a past session renders with the same components as a live one: ``message`` entries as stored,
``custom_message`` as ``role: "custom"``, ``compaction`` as ``role: "compactionSummary"``, ``branch_summary``
as ``role: "branchSummary"`` (pi's ``createCustomMessage``/``createCompactionSummaryMessage``/
``createBranchSummaryMessage``). pi 1.5's ``role: "system"`` messages are not conversation and are left out.
"""

from __future__ import annotations

import collections
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson

CURRENT_VERSION = 3
MAX_LINE_BYTES = 64 * 1024 * 1024  # a longer line (never written by pi) is skipped, not parsed
PREVIEW_CHARS = 200
FIRST_PROMPT_CHARS = 500
MAX_TEXT_PER_ENTRY = 256 * 1024  # characters of one entry that the index reads


class SessionFormatError(ValueError):
    """Not a pi session file (no session header on line 1)."""


@dataclass(frozen=True)
class Header:
    id: str
    cwd: str
    timestamp: str | None
    version: int
    parent_session: str | None


@dataclass
class Session:
    header: Header
    entries: list[dict[str, Any]]  # in file order, header excluded, migrated to v3
    offsets: list[int]  # byte offset of each entry's line in the file (-1 when unknown)
    by_id: dict[str, int] = field(default_factory=dict)  # entry id -> index in ``entries``
    size: int = 0  # bytes of complete lines read
    migrated: bool = False  # the file is v1/v2 (pi rewrites it as v3 when it next opens it)

    @property
    def leaf_id(self) -> str | None:
        return str(self.entries[-1]["id"]) if self.entries else None


@dataclass(frozen=True)
class Meta:
    """What a list of sessions shows of one file."""

    id: str
    cwd: str
    parent_session: str | None
    name: str | None
    first_prompt: str | None
    message_count: int
    model: str | None
    cost: float
    created: float | None  # unix seconds (the header's timestamp)
    modified: float | None  # unix seconds (the last entry's timestamp)


# -- lines ---------------------------------------------------------------------------------------------------


def complete_length(data: bytes) -> int:
    """Bytes of ``data`` that end with a newline: an unterminated last line is pi still writing it."""
    return data.rfind(b"\n") + 1


def lines(data: bytes, base: int = 0) -> Iterator[tuple[int, bytes]]:
    """(absolute offset, line) of each complete, non-empty line; ``base`` is the file offset of ``data[0]``."""
    pos, end = 0, complete_length(data)
    while pos < end:
        nl = data.index(b"\n", pos)
        if nl > pos and nl - pos <= MAX_LINE_BYTES:
            yield base + pos, data[pos:nl]
        pos = nl + 1


def load_line(line: bytes) -> dict[str, Any] | None:
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    return obj if isinstance(obj, dict) else None


def header_of(obj: dict[str, Any] | None) -> Header | None:
    if not isinstance(obj, dict) or obj.get("type") != "session":
        return None
    cwd = obj.get("cwd")
    version = obj.get("version")
    parent = obj.get("parentSession")
    return Header(
        id=str(obj.get("id") or ""),
        cwd=cwd if isinstance(cwd, str) else "",
        timestamp=obj.get("timestamp") if isinstance(obj.get("timestamp"), str) else None,
        version=version if isinstance(version, int) and not isinstance(version, bool) else 1,
        parent_session=parent if isinstance(parent, str) and parent else None,
    )


def header_hash(first_line: bytes) -> str:
    """Identifies a file's header: when it changes (pi's migration rewrites the file) the file is reparsed."""
    return hashlib.sha256(first_line).hexdigest()[:16]


# -- parsing -------------------------------------------------------------------------------------------------


def parse(data: bytes) -> Session:
    """The session in ``data`` (a whole file), migrated to v3 in memory; SessionFormatError without a header."""
    it = lines(data)
    first = next(it, None)
    header = header_of(load_line(first[1])) if first is not None else None
    if header is None or first is None or first[0] != 0:
        raise SessionFormatError("not a pi session file: line 1 is not a session header")
    entries: list[dict[str, Any]] = []
    offsets: list[int] = []
    for offset, line in it:
        obj = load_line(line)
        if obj is None or obj.get("type") == "session" or not isinstance(obj.get("type"), str):
            continue
        entries.append(obj)
        offsets.append(offset)
    session = Session(header, entries, offsets, size=complete_length(data))
    if header.version < CURRENT_VERSION:
        migrate(session)
    index_ids(session)
    return session


def migrate(session: Session) -> None:
    """pi's v1 → v2 → v3 migration, in memory. pi gives v1 entries random ids; these are derived from the line
    (stable across reads) until pi rewrites the file with its own."""
    if session.header.version < 2:
        prev: str | None = None
        for i, entry in enumerate(session.entries):
            entry["id"] = f"v1{i:06x}"
            entry["parentId"] = prev
            prev = entry["id"]
            if entry.get("type") == "compaction" and isinstance(entry.get("firstKeptEntryIndex"), int):
                k = entry.pop("firstKeptEntryIndex") - 1  # the index counts the header line
                if 0 <= k < len(session.entries):
                    entry["firstKeptEntryId"] = f"v1{k:06x}"
    for entry in session.entries:
        msg = entry.get("message")
        if entry.get("type") == "message" and isinstance(msg, dict) and msg.get("role") == "hookMessage":
            msg["role"] = "custom"
    session.migrated = True


def index_ids(session: Session) -> None:
    by_id: dict[str, int] = {}
    for i, entry in enumerate(session.entries):
        eid = entry.get("id")
        if not isinstance(eid, str) or not eid:
            eid = entry["id"] = f"x{i:07x}"  # pi never writes one without an id; keep the entry addressable
        by_id[eid] = i
    session.by_id = by_id


def branch(session: Session, leaf_id: str | None = None) -> list[int]:
    """Indexes of the entries from the root down to ``leaf_id`` (default: the last entry). Bounded: a parent
    cycle (never written by pi) ends the walk."""
    if not session.entries:
        return []
    i = session.by_id.get(leaf_id) if leaf_id is not None else len(session.entries) - 1
    path: list[int] = []
    seen: set[int] = set()
    while i is not None and i not in seen:
        seen.add(i)
        path.append(i)
        parent = session.entries[i].get("parentId")
        i = session.by_id.get(parent) if isinstance(parent, str) else None
    path.reverse()
    return path


def leaf_through(session: Session, entry_id: str) -> str | None:
    """The leaf of the newest branch that passes through ``entry_id`` (None when the id is unknown): opening a
    search hit shows the branch it is on, down to where that branch ends."""
    i = session.by_id.get(entry_id)
    if i is None:
        return None
    newest_child: dict[int, int] = {}
    for j, entry in enumerate(session.entries):
        parent = entry.get("parentId")
        k = session.by_id.get(parent) if isinstance(parent, str) else None
        if k is not None:
            newest_child[k] = j  # file order: the last child is the newest
    for _ in range(len(session.entries)):
        nxt = newest_child.get(i)
        if nxt is None or nxt == i:
            break
        i = nxt
    return str(session.entries[i]["id"])


# -- messages ------------------------------------------------------------------------------------------------


def iso_seconds(value: object) -> float | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _ms(entry: dict[str, Any]) -> int | None:
    secs = iso_seconds(entry.get("timestamp"))
    return int(secs * 1000) if secs is not None else None


def entry_message(entry: dict[str, Any]) -> dict[str, Any] | None:
    """The ``AgentMessage`` an entry shows as in a conversation, or None (model changes, labels, custom data)."""
    kind = entry.get("type")
    if kind == "message":
        msg = entry.get("message")
        if isinstance(msg, dict) and isinstance(msg.get("role"), str) and msg["role"] != "system":
            return msg
        return None
    if kind == "custom_message":
        return {"role": "custom", "customType": entry.get("customType"), "content": entry.get("content"),
                "display": entry.get("display", True), "details": entry.get("details"), "timestamp": _ms(entry)}  # fmt: skip
    if kind == "compaction":
        return {"role": "compactionSummary", "summary": entry.get("summary", ""),
                "tokensBefore": entry.get("tokensBefore"), "timestamp": _ms(entry)}  # fmt: skip
    if kind == "branch_summary":
        return {"role": "branchSummary", "summary": entry.get("summary", ""), "fromId": entry.get("fromId"),
                "timestamp": _ms(entry)}  # fmt: skip
    return None


def branch_messages(session: Session, leaf_id: str | None = None) -> tuple[list[dict[str, Any]], list[str]]:
    """The messages of a branch (default: the active one), oldest first, and each one's entry id."""
    messages: list[dict[str, Any]] = []
    ids: list[str] = []
    for i in branch(session, leaf_id):
        entry = session.entries[i]
        msg = entry_message(entry)
        if msg is not None:
            messages.append(msg)
            ids.append(str(entry["id"]))
    return messages, ids


def content_text(content: object, images: bool = False) -> str:
    """The text of a message's ``content`` (a string or a list of blocks): text, thinking and tool calls."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return ""
    parts: list[str] = []
    for block in content:
        if not isinstance(block, dict):
            continue
        kind = block.get("type")
        if kind == "text" and isinstance(block.get("text"), str):
            parts.append(block["text"])
        elif kind == "thinking" and isinstance(block.get("thinking"), str):
            parts.append(block["thinking"])
        elif kind == "toolCall":
            args = block.get("arguments")
            parts.append(f"{block.get('name', '')} {orjson.dumps(args).decode() if args is not None else ''}")
        elif kind == "image" and images:
            parts.append("[image]")
    return "\n".join(p for p in parts if p)


ROLES = ("user", "assistant", "tool", "custom", "summary")


def entry_text(entry: dict[str, Any]) -> tuple[str, str] | None:
    """(role, text) of an entry for the search index, or None. Roles: user, assistant, tool (tool output and
    bash executions), custom (extension messages), summary (compaction and branch summaries)."""
    kind = entry.get("type")
    if kind == "message":
        msg = entry.get("message")
        if not isinstance(msg, dict):
            return None
        role = msg.get("role")
        if role == "user":
            text, out = content_text(msg.get("content")), "user"
        elif role == "assistant":
            text, out = content_text(msg.get("content")), "assistant"
        elif role == "toolResult":
            text, out = content_text(msg.get("content")), "tool"
        elif role == "bashExecution":
            text, out = f"{msg.get('command', '')}\n{msg.get('output', '')}", "tool"
        elif role == "custom":
            text, out = content_text(msg.get("content")), "custom"
        else:
            return None
    elif kind == "custom_message":
        text, out = content_text(entry.get("content")), "custom"
    elif kind in ("compaction", "branch_summary"):
        summary = entry.get("summary")
        text, out = (summary if isinstance(summary, str) else ""), "summary"
    else:
        return None
    text = text[:MAX_TEXT_PER_ENTRY]
    return (out, text) if text.strip() else None


def _model_of(entry: dict[str, Any]) -> str | None:
    if entry.get("type") == "model_change" and isinstance(entry.get("modelId"), str):
        provider = entry.get("provider")
        return f"{provider}/{entry['modelId']}" if isinstance(provider, str) else entry["modelId"]
    msg = entry.get("message")
    if entry.get("type") == "message" and isinstance(msg, dict) and msg.get("role") == "assistant":
        model = msg.get("model")
        if isinstance(model, str) and model:
            provider = msg.get("provider")
            return f"{provider}/{model}" if isinstance(provider, str) and provider else model
    return None


def _cost_of(entry: dict[str, Any]) -> float:
    msg = entry.get("message")
    if entry.get("type") != "message" or not isinstance(msg, dict) or msg.get("role") != "assistant":
        return 0.0
    usage = msg.get("usage")
    cost = usage.get("cost") if isinstance(usage, dict) else None
    total = cost.get("total") if isinstance(cost, dict) else None
    return float(total) if isinstance(total, (int, float)) and not isinstance(total, bool) and total > 0 else 0.0


@dataclass
class MetaBuilder:
    """Session metadata, folded entry by entry (the indexer feeds it appended entries only)."""

    name: str | None = None
    first_prompt: str | None = None
    message_count: int = 0
    model: str | None = None
    cost: float = 0.0
    modified: float | None = None

    def add(self, entry: dict[str, Any]) -> None:
        kind = entry.get("type")
        ts = iso_seconds(entry.get("timestamp"))
        if ts is not None:
            self.modified = ts if self.modified is None else max(self.modified, ts)
        if kind == "session_info":
            name = entry.get("name")
            if isinstance(name, str):
                self.name = name.strip()[:200] or None
        elif kind == "message":
            msg = entry.get("message")
            role = msg.get("role") if isinstance(msg, dict) else None
            if role == "system" or role is None:
                return
            self.message_count += 1
            if role == "user" and self.first_prompt is None:
                text = content_text(msg.get("content")).strip()  # type: ignore[union-attr]
                self.first_prompt = text[:FIRST_PROMPT_CHARS] or None
        model = _model_of(entry)
        if model is not None:
            self.model = model[:200]
        self.cost += _cost_of(entry)

    def meta(self, header: Header) -> Meta:
        return Meta(id=header.id, cwd=header.cwd, parent_session=header.parent_session, name=self.name,
                    first_prompt=self.first_prompt, message_count=self.message_count, model=self.model,
                    cost=round(self.cost, 6), created=iso_seconds(header.timestamp), modified=self.modified)  # fmt: skip


def meta_of(session: Session) -> Meta:
    builder = MetaBuilder()
    for entry in session.entries:
        builder.add(entry)
    return builder.meta(session.header)


def tree_nodes(session: Session, limit: int = 20_000) -> list[dict[str, Any]]:
    """The session's tree, one small node per entry in file order (``id``, ``parent_id``, ``type``, ``role``,
    ``preview``, ``label``), for navigating branches; at most ``limit`` nodes (the newest)."""
    labels: dict[str, str] = {}
    for entry in session.entries:
        if entry.get("type") == "label" and isinstance(entry.get("targetId"), str):
            label = entry.get("label")
            if isinstance(label, str) and label:
                labels[entry["targetId"]] = label[:100]
            else:
                labels.pop(entry["targetId"], None)
    nodes: list[dict[str, Any]] = []
    for entry in session.entries[-limit:]:
        if entry.get("type") == "label":
            continue
        msg = entry.get("message") if entry.get("type") == "message" else None
        found = entry_text(entry)
        nodes.append({
            "id": entry["id"],
            "parent_id": entry.get("parentId") if isinstance(entry.get("parentId"), str) else None,
            "type": entry.get("type"),
            "role": msg.get("role") if isinstance(msg, dict) else None,
            "preview": " ".join(found[1].split())[:PREVIEW_CHARS] if found else None,
            "label": labels.get(entry["id"]),
        })  # fmt: skip
    return nodes


MAX_BRANCH_POINTS = 200
MAX_BRANCH_OPTIONS = 50


def branch_points(session: Session, leaf_id: str | None = None,
                  message_ids: list[str] | None = None) -> list[dict[str, Any]]:  # fmt: skip
    """Where the branch ending at ``leaf_id`` (default: the active one) meets others (``/tree`` went back and
    on): one point per entry of the branch with more than one child, oldest first, each ``{entry_id, at,
    options}``. ``at`` is how many of the branch's messages come before the split (the messages the branches
    share); ``options`` are the children, oldest first, each ``{entry_id, leaf_id, preview, current}``:
    ``leaf_id`` is where that branch ends (its newest child at each step), which is what a reader opens
    (``read_session {leaf_id}``). ``message_ids``: the branch's message entry ids, if already known."""
    if not session.entries:
        return []
    parents = collections.Counter(p for e in session.entries if isinstance(p := e.get("parentId"), str))
    if not parents or max(parents.values()) < 2:
        return []  # a straight session (the usual case): nothing more to look at
    children: dict[int, list[int]] = {}
    for j, entry in enumerate(session.entries):
        parent = entry.get("parentId")
        k = session.by_id.get(parent) if isinstance(parent, str) else None
        if k is not None and k != j:
            children.setdefault(k, []).append(j)
    path = branch(session, leaf_id)
    on_path = set(path)
    if message_ids is None:
        message_ids = branch_messages(session, leaf_id)[1]
    msg_pos = {eid: n for n, eid in enumerate(message_ids)}

    def leaf_of(i: int) -> int:
        for _ in range(len(session.entries)):
            kids = children.get(i)
            if not kids or kids[-1] == i:
                break
            i = kids[-1]  # file order: the last child is the newest
        return i

    def preview(i: int) -> str | None:
        for _ in range(50):  # the first entry with text down the newest line (model changes, labels have none)
            found = entry_text(session.entries[i])
            if found:
                return " ".join(found[1].split())[:PREVIEW_CHARS]
            kids = children.get(i)
            if not kids:
                return None
            i = kids[-1]
        return None

    points: list[dict[str, Any]] = []
    seen_messages = 0
    for i in path:
        eid = str(session.entries[i]["id"])
        if eid in msg_pos:
            seen_messages = msg_pos[eid] + 1
        kids = children.get(i, [])
        if len(kids) < 2:
            continue
        options = [{"entry_id": str(session.entries[k]["id"]), "leaf_id": str(session.entries[leaf_of(k)]["id"]),
                    "preview": preview(k), "current": k in on_path} for k in kids[-MAX_BRANCH_OPTIONS:]]  # fmt: skip
        points.append({"entry_id": eid, "at": seen_messages, "options": options})
        if len(points) >= MAX_BRANCH_POINTS:
            break
    return points
