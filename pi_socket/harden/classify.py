"""Error classes: what makes two logged boundary errors "the same bug".

Pure and I/O-free, so every rule here is unit-tested in microseconds.

An error class is ``component + boundary + normalised message``. The message is
normalised by replacing the parts that change from one occurrence to the next
(ids, hex, uuids, ports, numbers, paths, quoted strings, URLs) with
placeholders, so ``KeyError: 'node-3f2a91'`` on port 8080 and the same
``KeyError`` for another node on port 8081 fall into one class, while the same
message at a different boundary stays a separate class: a different boundary
means a different callback, and so a different fix.

The class id is a short hash of the three parts. The ledger stores the pattern
next to the id, so ids stay valid even if these rules change later (changed
rules produce new patterns, hence new ids, never a silent collision).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

MAX_PATTERN_CHARS = 240
UNKNOWN = "unknown"

# Order matters: quoted strings and URLs swallow whatever ids, paths or ports
# they contain; ids and hex go before bare numbers so a token is replaced whole.
_RULES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"(?<!\w)'[^'\n]{0,300}'(?!\w)"), "<str>"),
    (re.compile(r'"[^"\n]{0,300}"'), "<str>"),
    (re.compile(r"`[^`\n]{0,300}`"), "<str>"),
    (re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s,;)}>]+"), "<url>"),
    (re.compile(r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b"), "<uuid>"),
    (re.compile(r"(?<![\w.<>])(?:~|\.{1,2})?(?:/[\w.@+~-]+){2,}/?"), "<path>"),
    (re.compile(r"\b[A-Za-z]:\\[^\s'\"]+"), "<path>"),
    (re.compile(r"\b\d{1,3}(?:\.\d{1,3}){3}\b"), "<ip>"),
    (re.compile(r"(?<=[\w>\]]):\d{1,5}\b"), ":<port>"),
    (re.compile(r"\b(port)[\s=:]*\d{1,5}\b", re.I), r"\1 <port>"),
    (re.compile(r"\b0x[0-9a-fA-F]+\b"), "<hex>"),
    (re.compile(r"\b(?=[0-9a-fA-F]*\d)[0-9a-fA-F]{8,}\b"), "<hex>"),
    (re.compile(r"\b(\d+(?:\.\d+)?)(ms|us|ns|s|m|h|kb|mb|gb|b)\b", re.I), r"<n>\2"),
    (re.compile(r"\b(?=(?:[\w-]*\d){2})(?=[\w-]*[A-Za-z])[\w-]{6,}\b"), "<id>"),
    (re.compile(r"\d+(?:\.\d+)?"), "<n>"),
    (re.compile(r"\s+"), " "),
)


def normalise(message: str) -> str:
    """Replace the varying parts of an error message with placeholders."""
    text = message
    for pattern, placeholder in _RULES:
        text = pattern.sub(placeholder, text)
    text = text.strip()
    return text if len(text) <= MAX_PATTERN_CHARS else text[: MAX_PATTERN_CHARS - 1] + "…"


def class_id(component: str, boundary: str, pattern: str) -> str:
    """Stable 12-hex-digit id of an error class (the ledger's join key)."""
    digest = hashlib.sha256(f"{component}\n{boundary}\n{pattern}".encode()).hexdigest()
    return digest[:12]


@dataclass(frozen=True)
class ErrorClass:
    """One kind of unanticipated error: where it was caught and what it said."""

    component: str
    boundary: str
    pattern: str

    @property
    def id(self) -> str:
        return class_id(self.component, self.boundary, self.pattern)

    @property
    def label(self) -> str:
        """Human key, also stored in the ledger as ``error_class``."""
        return f"{self.component} {self.boundary}: {self.pattern}"


@dataclass(frozen=True)
class Occurrence:
    """One ``needsHardening`` log line, reduced to what classification needs."""

    ts: dt.datetime
    error_class: ErrorClass
    error: str
    stack: str
    source: str  # which log file it came from (for the report only)


class MalformedRecord(ValueError):
    """A log line that claims to need hardening but cannot be placed in time or parsed."""


def parse_ts(value: Any) -> dt.datetime:
    """ISO-8601 timestamp → aware UTC datetime; naive times are taken as UTC."""
    if not isinstance(value, str):
        raise MalformedRecord(f"ts is not a string: {value!r}")
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise MalformedRecord(f"bad ts {value!r}") from exc
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return parsed.astimezone(dt.UTC)


def _text(value: Any, default: str) -> str:
    return value if isinstance(value, str) and value.strip() else default


def occurrence_from_record(record: Any, source: str = "") -> Occurrence | None:
    """Turn one decoded log line into an Occurrence.

    Returns None for ordinary lines (no ``needsHardening: true``). Raises
    MalformedRecord for a line that is not an object, or a hardening line
    without a usable timestamp: such a line cannot be compared with a fix's
    ledger time, so it is counted as malformed instead of guessed at.
    """
    if not isinstance(record, dict):
        raise MalformedRecord("line is not a JSON object")
    if record.get("needsHardening") is not True:
        return None
    ts = parse_ts(record.get("ts"))
    message = _text(record.get("error"), _text(record.get("msg"), "(no message)"))
    klass = ErrorClass(
        component=_text(record.get("component"), UNKNOWN),
        boundary=_text(record.get("boundary"), UNKNOWN),
        pattern=normalise(message),
    )
    raw_stack = record.get("stack")
    stack = raw_stack if isinstance(raw_stack, str) else ""
    return Occurrence(ts=ts, error_class=klass, error=message, stack=stack, source=source)


@dataclass(frozen=True)
class ClassSummary:
    """All occurrences of one class, summarised for the report."""

    error_class: ErrorClass
    occurrences: tuple[Occurrence, ...]  # oldest first

    @property
    def count(self) -> int:
        return len(self.occurrences)

    @property
    def first_seen(self) -> dt.datetime:
        return self.occurrences[0].ts

    @property
    def last_seen(self) -> dt.datetime:
        return self.occurrences[-1].ts

    @property
    def latest(self) -> Occurrence:
        """The most recent occurrence: its message and stack are the example shown."""
        return self.occurrences[-1]

    @property
    def sources(self) -> tuple[str, ...]:
        return tuple(sorted({o.source for o in self.occurrences if o.source}))

    def count_after(self, when: dt.datetime) -> int:
        return sum(1 for o in self.occurrences if o.ts > when)


def group(occurrences: Iterable[Occurrence]) -> list[ClassSummary]:
    """Group occurrences by class; most frequent first, then most recent."""
    by_class: dict[ErrorClass, list[Occurrence]] = {}
    for occ in occurrences:
        by_class.setdefault(occ.error_class, []).append(occ)
    summaries = [ClassSummary(k, tuple(sorted(v, key=lambda o: o.ts))) for k, v in by_class.items()]
    return sorted(summaries, key=lambda s: (-s.count, -s.last_seen.timestamp(), s.error_class.id))
