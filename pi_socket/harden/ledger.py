"""The hardening ledger: one validated JSON object per line, version-controlled.

The ledger is the loop's memory. Logs are never edited or deleted; instead a
ledger entry says "class X was handled by commit Y at time T". An occurrence
of X after T means the fix did not make the class impossible, which is what
the report calls *recurring*.

Every line is validated by :class:`LedgerEntry` on read and on write, so a
hand-edited or truncated ledger fails loudly with its line number rather than
silently forgetting a fix. The schema is documented in ``specs/hardening.md``.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

import orjson
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError, model_validator

from .classify import class_id

Status = Literal["fixed", "attempted", "reverted", "recurring"]
STATUSES: tuple[str, ...] = ("fixed", "attempted", "reverted", "recurring")
SHA = r"^[0-9a-f]{7,40}$"


class LedgerError(ValueError):
    """The ledger (or an entry about to be written) is invalid; the message says where and why."""


class LedgerEntry(BaseModel):
    """One processed error class: what was done about it, in which commit, and why it happened."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    ts: AwareDatetime = Field(description="when the entry was recorded; occurrences after it count as recurrences")
    class_id: str = Field(pattern=r"^[0-9a-f]{12}$")
    error_class: str = Field(min_length=1, description="human label: '<component> <boundary>: <pattern>'")
    boundary: str = Field(min_length=1)
    component: str = Field(min_length=1)
    pattern: str = Field(min_length=1, description="the normalised message")
    occurrences: int = Field(ge=0, description="occurrences seen in the logs when recorded")
    first_seen: AwareDatetime
    last_seen: AwareDatetime
    status: Status
    commit: str = Field(pattern=SHA, description="the commit holding the change (git rev-parse HEAD)")
    root_cause: str = Field(min_length=1)
    action: str = Field(min_length=1, description="what the change does at the source")
    files_changed: list[str] = Field(default_factory=list)
    supersedes: str | None = Field(
        default=None, pattern=SHA, description="commit of the earlier entry this one follows up"
    )

    @model_validator(mode="after")
    def _consistent(self) -> LedgerEntry:
        """Reject entries whose id does not match their class, or whose times are backwards."""
        expected = class_id(self.component, self.boundary, self.pattern)
        if self.class_id != expected:
            raise ValueError(
                f"class_id {self.class_id} does not match component/boundary/pattern (expected {expected})"
            )
        if self.first_seen > self.last_seen:
            raise ValueError("first_seen is after last_seen")
        if self.status in ("fixed", "attempted") and not self.files_changed:
            raise ValueError(f"a {self.status} entry must list files_changed (the change lives somewhere)")
        return self

    def to_line(self) -> str:
        """Serialise as one ledger line (UTC, millisecond precision, fixed key order)."""
        data = self.model_dump(mode="python", exclude_none=True)
        for key in ("ts", "first_seen", "last_seen"):
            data[key] = iso(data[key])
        return orjson.dumps(data).decode()


def iso(when: dt.datetime) -> str:
    """The one timestamp format used in the ledger and the report (matches oplog's)."""
    return when.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _explain(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "entry"
        parts.append(f"{where}: {err['msg']}")
    return "; ".join(parts)


def validate_entry(data: object) -> LedgerEntry:
    """Validate one decoded entry; raise LedgerError with a readable reason."""
    try:
        return LedgerEntry.model_validate(data)
    except ValidationError as exc:
        raise LedgerError(_explain(exc)) from None


def parse_lines(lines: Iterable[str], name: str = "ledger") -> list[LedgerEntry]:
    """Parse ledger text. Blank lines are allowed; anything else invalid is an error with its line number."""
    entries = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            data = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            raise LedgerError(f"{name}:{number}: not JSON ({exc})") from None
        try:
            entries.append(validate_entry(data))
        except LedgerError as exc:
            raise LedgerError(f"{name}:{number}: {exc}") from None
    return entries


def load(path: Path) -> list[LedgerEntry]:
    """Read the ledger; a missing file is an empty ledger."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    return parse_lines(text.splitlines(), name=str(path))


def append(path: Path, entry: LedgerEntry) -> None:
    """Append one entry, never rewriting earlier lines (the ledger is append-only history)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    line = entry.to_line() + "\n"
    with open(path, "ab") as fh:
        if fh.tell() > 0 and not _ends_with_newline(path):
            line = "\n" + line
        fh.write(line.encode())
        fh.flush()
        os.fsync(fh.fileno())


def _ends_with_newline(path: Path) -> bool:
    with open(path, "rb") as fh:
        fh.seek(-1, os.SEEK_END)
        return fh.read(1) == b"\n"
