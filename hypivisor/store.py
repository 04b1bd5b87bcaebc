"""The hypivisor's kept state in SQLite (Python's ``sqlite3``, WAL): inbox items, read markers, run keys, the
Web Push devices (subscriptions and switches), and spend, budgets and overrides.

One file, ``<state dir>/hypivisor.sqlite3``, written through on every change (a few small statements; WAL with
``synchronous=NORMAL`` keeps that well under a millisecond) and read once at start-up. A database that cannot
be opened or is corrupt is moved aside and a fresh one started, loudly: the inbox is worth keeping, never worth
refusing to start for.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from pathlib import Path

import structlog

from hypivisor.budget import Amount
from pi_socket.protocol import AttentionItem

log = structlog.get_logger(part="store")
SCHEMA = """
CREATE TABLE IF NOT EXISTS attention (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT UNIQUE NOT NULL,
    node_id TEXT NOT NULL,
    cause_key TEXT,
    item TEXT NOT NULL,
    created_at REAL NOT NULL,
    resolved_at REAL,
    resolved_by TEXT
);
CREATE INDEX IF NOT EXISTS attention_open ON attention (resolved_at);
CREATE TABLE IF NOT EXISTS unread (node_id TEXT PRIMARY KEY, count INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS last_run (node_id TEXT PRIMARY KEY, run_key TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS kv (k TEXT PRIMARY KEY, v TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS push_device (device_id TEXT PRIMARY KEY, device TEXT NOT NULL, updated_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS spend (
    day TEXT NOT NULL, machine TEXT NOT NULL, cwd TEXT NOT NULL, node_id TEXT NOT NULL, label TEXT,
    cost REAL NOT NULL, tokens INTEGER NOT NULL, PRIMARY KEY (day, machine, cwd, node_id)
);
CREATE TABLE IF NOT EXISTS spend_seen (
    node_id TEXT NOT NULL, boot TEXT NOT NULL, cost REAL NOT NULL, tokens INTEGER NOT NULL, at REAL NOT NULL,
    PRIMARY KEY (node_id, boot)
);
CREATE TABLE IF NOT EXISTS budget (scope TEXT NOT NULL, key TEXT NOT NULL, cost REAL, tokens INTEGER,
                                   PRIMARY KEY (scope, key));
CREATE TABLE IF NOT EXISTS budget_override (node_id TEXT PRIMARY KEY, day TEXT NOT NULL, crossings TEXT NOT NULL);
"""
KEEP_RESOLVED_S = 30 * 86400  # resolved items are kept a month (history), then pruned at start-up


class Store:
    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.chmod(path.parent, 0o700)
        except OSError:
            pass
        try:
            self.db = self._open()
        except sqlite3.DatabaseError as exc:
            aside = path.with_name(f"{path.name}.broken-{int(time.time())}")
            log.error("state database unreadable; moved aside and starting fresh", path=str(path),
                      moved_to=str(aside), error=str(exc)[:200])  # fmt: skip
            for suffix in ("", "-wal", "-shm"):
                src = Path(str(path) + suffix)
                if src.exists():
                    src.rename(Path(str(aside) + suffix))
            self.db = self._open()

    def _open(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.executescript(SCHEMA)
        db.execute("PRAGMA quick_check").fetchone()
        try:
            os.chmod(self.path, 0o600)
        except OSError:
            pass
        return db

    def close(self) -> None:
        self.db.close()

    # ------------------------------------------------------------------ the book's sink
    def item_added(self, item: AttentionItem, cause_key: str | None) -> None:
        self.db.execute(
            "INSERT OR REPLACE INTO attention (id, node_id, cause_key, item, created_at) VALUES (?, ?, ?, ?, ?)",
            (item.id, item.node_id, cause_key, item.model_dump_json(), item.created_at),
        )

    def item_resolved(self, item_id: str, by: str, at: float) -> None:
        self.db.execute("UPDATE attention SET resolved_at = ?, resolved_by = ? WHERE id = ?", (at, by, item_id))

    def unread_set(self, node_id: str, unread: int) -> None:
        if unread:
            self.db.execute("INSERT OR REPLACE INTO unread (node_id, count) VALUES (?, ?)", (node_id, unread))
        else:
            self.db.execute("DELETE FROM unread WHERE node_id = ?", (node_id,))

    def last_run_set(self, node_id: str, key: str) -> None:
        self.db.execute("INSERT OR REPLACE INTO last_run (node_id, run_key) VALUES (?, ?)", (node_id, key))

    # ------------------------------------------------------------------ Web Push devices (hypivisor.push)
    def push_device_put(self, device_id: str, device_json: str, at: float) -> None:
        self.db.execute("INSERT OR REPLACE INTO push_device (device_id, device, updated_at) VALUES (?, ?, ?)",
                        (device_id, device_json, at))  # fmt: skip

    def push_device_delete(self, device_id: str) -> None:
        self.db.execute("DELETE FROM push_device WHERE device_id = ?", (device_id,))

    def push_devices(self) -> list[str]:
        return [row[0] for row in self.db.execute("SELECT device FROM push_device ORDER BY updated_at")]

    # ------------------------------------------------------------------ spend and budgets (hypivisor.budget)
    def spend_recorded(
        self, day: str, machine: str, cwd: str, node_id: str, label: str | None, row: Amount,
        boot: str, seen_cost: float, seen_tokens: int, at: float,
    ) -> None:  # fmt: skip
        """The day's row and the counter it was counted up to, in one transaction: a crash between the two
        would count the growth again after a restart."""
        with self.db:
            self.db.execute("BEGIN")
            self.db.execute("INSERT OR REPLACE INTO spend (day, machine, cwd, node_id, label, cost, tokens) "
                            "VALUES (?, ?, ?, ?, ?, ?, ?)", (day, machine, cwd, node_id, label, row.cost, row.tokens))  # fmt: skip
            self.db.execute("INSERT OR REPLACE INTO spend_seen (node_id, boot, cost, tokens, at) VALUES (?, ?, ?, ?, ?)",
                            (node_id, boot, seen_cost, seen_tokens, at))  # fmt: skip

    def budget_put(self, scope: str, key: str, cost: float | None, tokens: int | None) -> None:
        if cost is None and tokens is None:
            self.db.execute("DELETE FROM budget WHERE scope = ? AND key = ?", (scope, key))
        else:
            self.db.execute("INSERT OR REPLACE INTO budget (scope, key, cost, tokens) VALUES (?, ?, ?, ?)",
                            (scope, key, cost, tokens))  # fmt: skip

    def override_put(self, node_id: str, day: str, crossings: list[str]) -> None:
        self.db.execute("INSERT OR REPLACE INTO budget_override (node_id, day, crossings) VALUES (?, ?, ?)",
                        (node_id, day, json.dumps(crossings)))  # fmt: skip

    def load_spend(self, now: float) -> tuple[list[tuple], list[tuple], list[tuple], list[tuple]]:
        """(spend rows, last counters, budgets, overrides); counters unseen for a month are pruned (their
        bridges are long gone)."""
        self.db.execute("DELETE FROM spend_seen WHERE at < ?", (now - KEEP_RESOLVED_S,))
        rows = list(self.db.execute("SELECT day, machine, cwd, node_id, label, cost, tokens FROM spend"))
        seen = list(self.db.execute("SELECT node_id, boot, cost, tokens FROM spend_seen ORDER BY at"))
        budgets = list(self.db.execute("SELECT scope, key, cost, tokens FROM budget"))
        overrides = []
        for node_id, day, raw in self.db.execute("SELECT node_id, day, crossings FROM budget_override"):
            try:
                crossings = json.loads(raw)
            except ValueError:
                continue
            if isinstance(crossings, list):
                overrides.append((node_id, day, [str(c) for c in crossings]))
        return rows, seen, budgets, overrides

    # ------------------------------------------------------------------ start-up
    def load(self, now: float) -> tuple[list[tuple[AttentionItem, str | None]], dict[str, int], dict[str, str], int]:
        """(open items with cause keys, unread, last run keys, next item number); prunes old resolved items.
        A row that no longer validates is dropped (logged), never fatal."""
        self.db.execute("DELETE FROM attention WHERE resolved_at IS NOT NULL AND resolved_at < ?",
                        (now - KEEP_RESOLVED_S,))  # fmt: skip
        items: list[tuple[AttentionItem, str | None]] = []
        for raw, cause in self.db.execute(
            "SELECT item, cause_key FROM attention WHERE resolved_at IS NULL ORDER BY seq"
        ):
            try:
                items.append((AttentionItem.model_validate_json(raw), cause))
            except ValueError as exc:
                log.warning("inbox item unreadable; dropped", error=str(exc)[:200])
        unread = dict(self.db.execute("SELECT node_id, count FROM unread"))
        last_run = dict(self.db.execute("SELECT node_id, run_key FROM last_run"))
        # AUTOINCREMENT never reuses a number, even after pruning: item ids stay unique for good
        row = self.db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'attention'").fetchone()
        return items, unread, last_run, (row[0] if row else 0) + 1
