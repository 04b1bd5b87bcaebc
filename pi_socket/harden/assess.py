"""Compare what the logs say with what the ledger remembers. Pure, no I/O.

A class is *unprocessed* (the system is not healthy) when:

* it has never been recorded in the ledger                      → ``new``;
* its latest ledger entry is ``attempted`` or ``reverted``      → ``open``
  (someone tried, the work is not finished);
* its latest ledger entry is ``recurring``                      → ``recurring``;
* its latest ledger entry is ``fixed`` but it occurred again
  after that entry's timestamp                                  → ``recurring``
  (the fix did not make the class impossible; read its commit).

A ``fixed`` class with no later occurrence is *resolved*: its old log lines
stay in the log (they are never deleted) but need nothing more.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

from .classify import ClassSummary
from .ledger import LedgerEntry

Kind = Literal["new", "open", "recurring", "resolved"]


@dataclass(frozen=True)
class Finding:
    """One error class seen in the logs, with its verdict and its ledger history."""

    summary: ClassSummary
    kind: Kind
    history: tuple[LedgerEntry, ...] = ()  # this class's ledger entries, oldest first
    since_fix: int = 0  # occurrences after the latest fixed entry (recurring only)

    @property
    def unprocessed(self) -> bool:
        return self.kind != "resolved"

    @property
    def latest_entry(self) -> LedgerEntry | None:
        return self.history[-1] if self.history else None

    @property
    def prior_commits(self) -> tuple[str, ...]:
        """Commits to read with ``git show`` before trying again, newest first, without repeats."""
        seen: dict[str, None] = {}
        for entry in reversed(self.history):
            seen.setdefault(entry.commit, None)
        return tuple(seen)


@dataclass(frozen=True)
class Assessment:
    findings: tuple[Finding, ...]
    ledger_only: tuple[str, ...] = field(default=())  # class ids in the ledger but absent from the logs read

    @property
    def unprocessed(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.unprocessed)

    @property
    def resolved(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if not f.unprocessed)

    @property
    def healthy(self) -> bool:
        return not self.unprocessed

    def count(self, kind: Kind) -> int:
        return sum(1 for f in self.findings if f.kind == kind)


def history_by_class(entries: Iterable[LedgerEntry]) -> dict[str, tuple[LedgerEntry, ...]]:
    """Ledger entries per class id, oldest first (ties keep file order)."""
    grouped: dict[str, list[LedgerEntry]] = {}
    for entry in entries:
        grouped.setdefault(entry.class_id, []).append(entry)
    return {k: tuple(sorted(v, key=lambda e: e.ts)) for k, v in grouped.items()}


def verdict(summary: ClassSummary, history: tuple[LedgerEntry, ...]) -> Finding:
    """Decide what one class needs, given its ledger history."""
    if not history:
        return Finding(summary, "new")
    latest = history[-1]
    if latest.status == "fixed":
        after = summary.count_after(latest.ts)
        return Finding(summary, "recurring" if after else "resolved", history, since_fix=after)
    if latest.status == "recurring":
        return Finding(summary, "recurring", history, since_fix=summary.count_after(_last_fix_ts(history)))
    return Finding(summary, "open", history)


def _last_fix_ts(history: tuple[LedgerEntry, ...]) -> dt.datetime:
    fixes = [e.ts for e in history if e.status == "fixed"]
    return fixes[-1] if fixes else history[-1].ts


def assess(summaries: Iterable[ClassSummary], entries: Iterable[LedgerEntry]) -> Assessment:
    """Verdicts for every class in the logs; unprocessed first (new, recurring, open), then resolved."""
    histories = history_by_class(entries)
    order = {"new": 0, "recurring": 1, "open": 2, "resolved": 3}
    findings = [verdict(s, histories.get(s.error_class.id, ())) for s in summaries]
    findings.sort(key=lambda f: order[f.kind])  # stable: keeps frequency order inside a kind
    seen = {s.summary.error_class.id for s in findings}
    return Assessment(tuple(findings), tuple(sorted(k for k in histories if k not in seen)))
