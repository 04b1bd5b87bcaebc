"""Turning an assessment into text for people and JSON for tools. Pure: returns strings and dicts."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from .assess import Assessment, Finding
from .ledger import LedgerEntry, iso
from .logs import LogScan

STACK_LINES = 12
_PY_FRAME = re.compile(r'File "([^"]+)", line (\d+), in (\S+)')
_JS_FRAME = re.compile(r"^\s*at (?:(\S+) \()?([^()\s]+):(\d+):\d+\)?\s*$", re.M)


def _short(sha: str) -> str:
    return sha[:12]


def _tail(stack: str, lines: int = STACK_LINES) -> list[str]:
    """The end of a stack is where the error was raised: keep that part."""
    body = [line for line in stack.rstrip().splitlines() if line.strip()]
    return (["…"] if len(body) > lines else []) + body[-lines:]


def raised_at(stack: str) -> str:
    """The innermost frame, ``path:line in function``: where to start reading.

    Python tracebacks list the innermost frame last; the shim's JavaScript
    stacks list it first.
    """
    frames = _PY_FRAME.findall(stack)
    if frames:
        path, line, func = frames[-1]
        return f"{path}:{line} in {func}"
    js = _JS_FRAME.search(stack)
    if js:
        func, path, line = js.groups()
        return f"{path}:{line} in {func or '<anonymous>'}"
    return ""


def entry_json(entry: LedgerEntry) -> dict[str, Any]:
    return {
        "ts": iso(entry.ts),
        "status": entry.status,
        "commit": entry.commit,
        "root_cause": entry.root_cause,
        "action": entry.action,
    }


def finding_json(finding: Finding) -> dict[str, Any]:
    """Everything the skill needs about one class, including the commits to ``git show``."""
    s = finding.summary
    return {
        "class_id": s.error_class.id,
        "kind": finding.kind,
        "error_class": s.error_class.label,
        "component": s.error_class.component,
        "boundary": s.error_class.boundary,
        "pattern": s.error_class.pattern,
        "occurrences": s.count,
        "since_fix": finding.since_fix,
        "first_seen": iso(s.first_seen),
        "last_seen": iso(s.last_seen),
        "example_error": s.latest.error,
        "example_stack": s.latest.stack,
        "raised_at": raised_at(s.latest.stack),
        "sources": list(s.sources),
        "prior_commits": list(finding.prior_commits),
        "history": [entry_json(e) for e in finding.history],
    }


def scan_json(scan: LogScan) -> dict[str, Any]:
    return {
        "read": scan.read,
        "missing": scan.missing,
        "lines": scan.lines,
        "malformed": scan.malformed,
        "malformed_total": scan.malformed_total,
    }


def report_json(assessment: Assessment, scan: LogScan, ledger_path: Path, include_resolved: bool) -> dict[str, Any]:
    shown = assessment.findings if include_resolved else assessment.unprocessed
    return {
        "healthy": assessment.healthy,
        "counts": {k: assessment.count(k) for k in ("new", "recurring", "open", "resolved")},
        "classes": [finding_json(f) for f in shown],
        "ledger": str(ledger_path),
        "ledger_only": list(assessment.ledger_only),
        "logs": scan_json(scan),
    }


def _headline(assessment: Assessment) -> str:
    n = len(assessment.unprocessed)
    if not n:
        return f"healthy: no unprocessed error classes ({assessment.count('resolved')} fixed class(es) quiet)"
    parts = [f"{assessment.count(k)} {k}" for k in ("new", "recurring", "open") if assessment.count(k)]
    return f"NOT healthy: {n} unprocessed error class(es): {', '.join(parts)}"


def _scan_lines(scan: LogScan) -> list[str]:
    out = [f"logs read: {', '.join(scan.read) or '(none)'} ({scan.lines} lines)"]
    if scan.missing:
        out.append(f"logs missing (fine): {', '.join(scan.missing)}")
    if scan.malformed:
        per_file = ", ".join(f"{p}: {n}" for p, n in scan.malformed.items())
        out.append(f"malformed lines skipped: {scan.malformed_total} ({per_file})")
    return out


def _history_lines(finding: Finding) -> list[str]:
    out = []
    for entry in finding.history:
        out.append(
            f"    ledger {iso(entry.ts)} {entry.status:<9} {_short(entry.commit)}  root cause: {entry.root_cause}"
        )
    for sha in finding.prior_commits:
        out.append(f"    read first: git show {_short(sha)}")
    return out


def finding_text(finding: Finding) -> list[str]:
    s = finding.summary
    count = f"x{s.count}" + (f" ({finding.since_fix} since the fix)" if finding.kind == "recurring" else "")
    out = [
        f"{finding.kind.upper():<9} {s.error_class.id}  {s.error_class.component} / {s.error_class.boundary}  {count}",
        f"    pattern:    {s.error_class.pattern}",
        f"    example:    {s.latest.error}",
        f"    first seen: {iso(s.first_seen)}   last seen: {iso(s.last_seen)}   in: {', '.join(s.sources)}",
    ]
    if raised_at(s.latest.stack):
        out.append(f"    raised at:  {raised_at(s.latest.stack)}")
    out += _history_lines(finding)
    if s.latest.stack:
        out.append("    stack (latest occurrence):")
        out += [f"      {line}" for line in _tail(s.latest.stack)]
    return out


def report_text(assessment: Assessment, scan: LogScan, ledger_path: Path, include_resolved: bool) -> str:
    out = [_headline(assessment), *_scan_lines(scan), f"ledger: {ledger_path}"]
    if assessment.ledger_only:
        out.append(f"ledger classes with no occurrence in these logs: {', '.join(assessment.ledger_only)}")
    shown = assessment.findings if include_resolved else assessment.unprocessed
    for finding in shown:
        out += ["", *finding_text(finding)]
    return "\n".join(out) + "\n"


def status_text(assessment: Assessment, scan: LogScan) -> str:
    lines = [_headline(assessment)]
    for f in assessment.unprocessed:
        s = f.summary
        lines.append(f"  {f.kind:<9} {s.error_class.id}  {s.error_class.label}  x{s.count}")
    if scan.malformed_total:
        lines.append(f"  ({scan.malformed_total} malformed log lines skipped)")
    if not assessment.healthy:
        lines.append("run /skill:harden-pi-socket in pi to work through them")
    return "\n".join(lines) + "\n"
