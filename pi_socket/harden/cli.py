"""``python -m pi_socket.harden report|record|status``: the helper the harden-pi-socket skill calls.

The skill never parses logs by hand: parsing, grouping and the ledger
comparison live here, tested, so the agent spends its effort on root causes.
This module is the thin I/O shell (files, git, argv, exit codes) around the
pure modules ``classify``, ``assess`` and ``render``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson

from . import ledger as ledger_mod
from .assess import assess
from .classify import ClassSummary, group
from .ledger import STATUSES, LedgerEntry, LedgerError
from .logs import LogScan, default_logs, read_logs
from .render import finding_json, report_json, report_text, scan_json, status_text

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_LEDGER = REPO_ROOT / "skills" / "harden-pi-socket" / "ledger.jsonl"


class UsageError(Exception):
    """Bad input from the caller: printed as ``error: ...``, exit code 2."""


def default_ledger() -> Path:
    """HARDEN_LEDGER, else the checkout's skills/harden-pi-socket/ledger.jsonl (relative to this package).

    Installed from a wheel there is no checkout next to the package: the ledger belongs to the
    Hyper-Pi repository the fixes are committed to, so look for it from the current directory up.
    """
    env = os.environ.get("HARDEN_LEDGER")
    if env:
        return Path(env)
    if DEFAULT_LEDGER.parent.is_dir():
        return DEFAULT_LEDGER
    here = Path.cwd().resolve()
    for folder in (here, *here.parents):
        candidate = folder / "skills" / "harden-pi-socket" / "ledger.jsonl"
        if candidate.parent.is_dir():
            return candidate
    return DEFAULT_LEDGER


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--log-dir",
        type=Path,
        help="directory holding pi-socket.jsonl and hypivisor.jsonl (default: PI_SOCKET_LOG_DIR or ~/.pi/logs)",
    )
    parser.add_argument(
        "--log",
        dest="logs",
        type=Path,
        action="append",
        metavar="FILE",
        help="read this log (and its rotated .1 .2 .3 files) instead of the defaults; repeatable",
    )
    parser.add_argument(
        "--ledger",
        type=Path,
        help="ledger file (default: HARDEN_LEDGER or the repo's skills/harden-pi-socket/ledger.jsonl)",
    )
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m pi_socket.harden", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    report = sub.add_parser("report", help="new, recurring and open error classes with counts, times and a stack")
    _common(report)
    report.add_argument("--all", action="store_true", help="also list fixed classes that stayed quiet")
    status = sub.add_parser("status", help="exit 0 when healthy (no unprocessed class), 1 when not")
    _common(status)
    record = sub.add_parser("record", help="append a validated ledger entry for one error class")
    _common(record)
    record.add_argument("--class-id", required=True, help="the id shown by `report`")
    record.add_argument("--status", required=True, choices=STATUSES)
    record.add_argument("--root-cause", required=True, help="why the error happened (not what it said)")
    record.add_argument("--action", required=True, help="what the change does at the source")
    record.add_argument("--files", nargs="+", default=[], metavar="PATH", help="files the change touched")
    record.add_argument("--commit", help="commit holding the change (default: git rev-parse HEAD in --repo)")
    record.add_argument("--supersedes", help="commit of the earlier ledger entry this one follows up")
    record.add_argument(
        "--repo", type=Path, default=REPO_ROOT, help="git repository for the commit (default: this repo)"
    )
    return parser


def _load(args: argparse.Namespace) -> tuple[list[ClassSummary], LogScan, list[LedgerEntry], Path]:
    ledger_path = args.ledger or default_ledger()
    paths = args.logs or default_logs(args.log_dir)
    occurrences, scan = read_logs(paths)
    return group(occurrences), scan, ledger_mod.load(ledger_path), ledger_path


def _print_json(data: Any) -> None:
    sys.stdout.write(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode() + "\n")


def cmd_report(args: argparse.Namespace) -> int:
    """What needs work, for the skill to act on. Always exit 0: health is `status`'s job."""
    summaries, scan, entries, ledger_path = _load(args)
    result = assess(summaries, entries)
    if args.json:
        _print_json(report_json(result, scan, ledger_path, args.all))
    else:
        sys.stdout.write(report_text(result, scan, ledger_path, args.all))
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    """Healthy or not as an exit code, for CI and scripts."""
    summaries, scan, entries, _ = _load(args)
    result = assess(summaries, entries)
    if args.json:
        _print_json(
            {"healthy": result.healthy, "unprocessed": [_brief(f) for f in result.unprocessed], "logs": scan_json(scan)}
        )
    else:
        sys.stdout.write(status_text(result, scan))
    return 0 if result.healthy else 1


def _brief(finding: Any) -> dict[str, Any]:
    """One line's worth of a class for `status --json`: enough for CI to say what is wrong."""
    full = finding_json(finding)
    return {k: full[k] for k in ("class_id", "kind", "error_class", "occurrences", "since_fix", "last_seen")}


def git(repo: Path, *argv: str) -> str:
    """Run git in ``repo``; any failure becomes a UsageError, so `record` never writes a guessed commit."""
    try:
        done = subprocess.run(["git", "-C", str(repo), *argv], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise UsageError(f"cannot run git in {repo}: {exc}") from None
    if done.returncode != 0:
        raise UsageError(done.stderr.strip() or f"git exited {done.returncode}")
    return done.stdout.strip()


def resolve_commit(repo: Path, commit: str | None) -> str:
    """The full SHA of ``commit`` (default HEAD); refuses a commit the repository does not have."""
    try:
        return git(repo, "rev-parse", "--verify", "--quiet", f"{commit or 'HEAD'}^{{commit}}")
    except UsageError as exc:
        raise UsageError(f"no commit {commit or 'HEAD'!r} in the git repository {repo}: {exc}") from None


def _class_fields(class_id: str, summaries: list[ClassSummary], entries: list[LedgerEntry]) -> dict[str, Any]:
    """Class identity and counts, from the logs if it is there, else from its latest ledger entry."""
    for s in summaries:
        if s.error_class.id == class_id:
            c = s.error_class
            return {
                "class_id": class_id,
                "error_class": c.label,
                "boundary": c.boundary,
                "component": c.component,
                "pattern": c.pattern,
                "occurrences": s.count,
                "first_seen": s.first_seen,
                "last_seen": s.last_seen,
            }
    earlier = [e for e in entries if e.class_id == class_id]
    if not earlier:
        raise UsageError(f"class {class_id} is in neither the logs read nor the ledger; run `report` for the ids")
    latest = max(earlier, key=lambda e: e.ts)
    keep = ("class_id", "error_class", "boundary", "component", "pattern", "occurrences", "first_seen", "last_seen")
    return {k: getattr(latest, k) for k in keep}


def _same_record(a: LedgerEntry, b: LedgerEntry) -> bool:
    """A re-run of the same record (refused). A new finding about the same commit, e.g. that a recurrence
    came from a process still running pre-fix code, says something new and is allowed."""
    keys = ("class_id", "status", "commit", "root_cause", "action")
    return all(getattr(a, k) == getattr(b, k) for k in keys)


def build_entry(
    args: argparse.Namespace, summaries: list[ClassSummary], entries: list[LedgerEntry], now: dt.datetime
) -> LedgerEntry:
    """The validated entry `record` would append; raises instead of writing anything doubtful."""
    fields = _class_fields(args.class_id, summaries, entries)
    commit = resolve_commit(args.repo, args.commit)
    supersedes = resolve_commit(args.repo, args.supersedes) if args.supersedes else None
    entry = ledger_mod.validate_entry(
        {
            **fields,
            "ts": now,
            "status": args.status,
            "commit": commit,
            "root_cause": args.root_cause,
            "action": args.action,
            "files_changed": args.files,
            "supersedes": supersedes,
        }
    )
    if any(_same_record(e, entry) for e in entries):
        raise UsageError(
            f"class {entry.class_id} is already recorded as {entry.status} at {commit[:12]} "
            "with this root cause and action"
        )
    return entry


def cmd_record(args: argparse.Namespace) -> int:
    """Append one entry; the ledger line is the only thing this helper ever writes."""
    summaries, _, entries, ledger_path = _load(args)
    entry = build_entry(args, summaries, entries, dt.datetime.now(dt.UTC))
    ledger_mod.append(ledger_path, entry)
    if args.json:
        _print_json(orjson.loads(entry.to_line()))
    else:
        sys.stdout.write(
            f"recorded {entry.status} for {entry.class_id} ({entry.error_class}) "
            f"at commit {entry.commit[:12]} in {ledger_path}\n"
        )
    return 0


COMMANDS = {"report": cmd_report, "status": cmd_status, "record": cmd_record}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except (UsageError, LedgerError) as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2
