"""Reading the operational logs: the only place the hardening helper touches log files.

It reads, never writes: log entries are evidence and are never deleted. A log
"file" here means the live file plus its rotated generations (``.1``, ``.2``,
``.3``... as written by :mod:`pi_socket.oplog`), so an error that happened
just before a rotation is still counted. Missing files are normal (the
hypivisor may never have run on this machine); malformed lines are skipped and
counted, never fatal: a crash mid-write must not blind the report.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from pi_socket.oplog import default_log_dir

from .classify import MalformedRecord, Occurrence, occurrence_from_record

DEFAULT_LOG_NAMES = ("pi-socket.jsonl", "hypivisor.jsonl")
_GENERATION = re.compile(r"\.(\d+)$")


@dataclass
class LogScan:
    """What reading the logs found, besides the occurrences themselves."""

    read: list[str] = field(default_factory=list)  # files actually read
    missing: list[str] = field(default_factory=list)  # requested live files that do not exist
    lines: int = 0
    malformed: dict[str, int] = field(default_factory=dict)  # file → skipped line count

    @property
    def malformed_total(self) -> int:
        return sum(self.malformed.values())


def default_logs(log_dir: Path | None = None) -> list[Path]:
    """The bridge's and the hypivisor's logs in the oplog directory (PI_SOCKET_LOG_DIR or ~/.pi/logs)."""
    base = log_dir or default_log_dir()
    return [base / name for name in DEFAULT_LOG_NAMES]


def generations(path: Path) -> list[Path]:
    """Existing files of one log, oldest first: ``x.jsonl.3``, ``x.jsonl.2``, ``x.jsonl.1``, ``x.jsonl``."""
    rotated = []
    if path.parent.is_dir():
        for candidate in path.parent.glob(f"{path.name}.*"):
            match = _GENERATION.search(candidate.name)
            if match and candidate.name == f"{path.name}.{match.group(1)}" and candidate.is_file():
                rotated.append((int(match.group(1)), candidate))
    ordered = [p for _, p in sorted(rotated, reverse=True)]
    return ordered + ([path] if path.is_file() else [])


def _decode(raw: bytes) -> object:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise MalformedRecord(f"not JSON: {exc}") from None


def read_file(path: Path, scan: LogScan) -> Iterator[Occurrence]:
    """Occurrences in one file; malformed lines are counted in ``scan`` and skipped."""
    scan.read.append(str(path))
    with open(path, "rb") as fh:
        for raw in fh:
            if not raw.strip():
                continue
            scan.lines += 1
            try:
                occ = occurrence_from_record(_decode(raw), source=path.name)
            except MalformedRecord:
                scan.malformed[str(path)] = scan.malformed.get(str(path), 0) + 1
                continue
            if occ is not None:
                yield occ


def read_logs(paths: Iterable[Path]) -> tuple[list[Occurrence], LogScan]:
    """All ``needsHardening`` occurrences in the given logs and their rotated generations."""
    scan = LogScan()
    found: list[Occurrence] = []
    for path in paths:
        files = generations(path)
        if not path.is_file():
            scan.missing.append(str(path))
        for file in files:
            try:
                found.extend(read_file(file, scan))
            except OSError:
                scan.missing.append(str(file))
    return found, scan
