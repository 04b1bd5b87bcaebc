"""The full-text index of this machine's pi sessions: SQLite FTS5 (Python's sqlite3), updated incrementally.

Tables:

* ``files``: one row per session file: where indexing stopped (``offset``, the end of the last complete line),
  what the file was (``inode``, ``size``, ``mtime``, ``header_hash``) and the session's metadata for lists.
* ``docs``: one row per indexed entry: file, entry id, role, time, and where its line is in the file.
* ``fts_0``, ``fts_1``, …: *contentless* FTS5 tables (shards) over each entry's text (``unicode61
  remove_diacritics 2``). The index stores no text: a snippet is cut from the entry's line, read from the session
  file when a hit is shown, so a snippet never holds anything that is not in a session file and the index stays
  far smaller than the input. New entries go to the newest shard; a shard is closed after ``SHARD_TEXT_BYTES`` of
  text. bm25 reads a term's whole doclist for its IDF (~10 ms for a common word over 1 GB of sessions), so a
  query ranks shard by shard, newest first, and stops once it has its candidates: a common word touches one
  shard, a rare one all of them (each a cheap lookup).

Incremental: a file that grew is read from ``offset`` (an unterminated last line is left for the next pass);
one that shrank, changed inode, or whose first line changed (pi's v1/v2 migration rewrites the whole file) is
reindexed from the start; a file that is gone leaves the index. A doc's rowid is ``fid << 24 | seq`` and is
never reused, so a file's docs are one rowid range. SQLite 3.40's contentless tables cannot delete rows, so a
removed doc's row in ``docs`` is deleted (which hides it from every query) and its postings stay until
:meth:`Index.rebuild_if_needed` rebuilds the FTS table, once removed docs outnumber half the live ones.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import orjson

from pi_socket.sessions import parse, query
from pi_socket.sessions.dirs import Found

SCHEMA_VERSION = "2"
SHARD_TEXT_BYTES = 32 * 1024 * 1024
SEQ_BITS = 24
SEQ_LIMIT = 1 << SEQ_BITS
READ_CHUNK = 16 * 1024 * 1024
HEADER_READ = 64 * 1024
CANDIDATES = 100  # matches a query ranks at most: the newest ones (rowid order), then bm25 within them
MAX_RESULTS = 200
SHARDS_PER_STATEMENT = 100

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(k TEXT PRIMARY KEY, v TEXT);
CREATE TABLE IF NOT EXISTS files(
  fid INTEGER PRIMARY KEY AUTOINCREMENT, path TEXT UNIQUE NOT NULL, sid TEXT UNIQUE NOT NULL,
  inode INTEGER, size INTEGER, mtime REAL, offset INTEGER NOT NULL DEFAULT 0, header_hash TEXT,
  seq INTEGER NOT NULL DEFAULT 0, nentries INTEGER NOT NULL DEFAULT 0, version INTEGER,
  session_id TEXT, cwd TEXT, parent_session TEXT, name TEXT, first_prompt TEXT,
  message_count INTEGER NOT NULL DEFAULT 0, model TEXT, cost REAL NOT NULL DEFAULT 0,
  created REAL, modified REAL, sort REAL, base TEXT, parent_base TEXT);
CREATE INDEX IF NOT EXISTS files_sort ON files(sort DESC, fid DESC);
CREATE INDEX IF NOT EXISTS files_cwd ON files(cwd, sort DESC);
CREATE INDEX IF NOT EXISTS files_parent ON files(parent_base);
CREATE INDEX IF NOT EXISTS files_base ON files(base);
CREATE TABLE IF NOT EXISTS docs(
  rowid INTEGER PRIMARY KEY, fid INTEGER NOT NULL, entry_id TEXT NOT NULL, role TEXT NOT NULL,
  ts REAL, off INTEGER NOT NULL, len INTEGER NOT NULL);
"""
FTS_TABLE = (
    "CREATE VIRTUAL TABLE IF NOT EXISTS fts_{n} USING fts5(text, content='', tokenize='unicode61 remove_diacritics 2')"
)

FILE_FIELDS = ("sid", "path", "session_id", "cwd", "parent_session", "name", "first_prompt", "message_count",
               "model", "cost", "created", "modified", "size")  # fmt: skip


def session_sid(path: str) -> str:
    """The id a client names a session by: a stable hash of its resolved path (never the path itself)."""
    return hashlib.sha256(path.encode("utf-8", "surrogatepass")).hexdigest()[:24]


@dataclass
class Progress:
    files_done: int = 0
    files_total: int = 0
    bytes_done: int = 0


class Index:
    """One SQLite database; all methods are blocking (call them from a worker thread). Writes and reads each use
    their own connection, guarded by a lock, so a search runs while the scanner writes (WAL)."""

    def __init__(self, db_path: str):
        self.db_path = db_path
        os.makedirs(os.path.dirname(db_path) or ".", exist_ok=True)
        self._w = self._connect()
        self._w.executescript(SCHEMA)
        row = self._w.execute("SELECT v FROM meta WHERE k='schema'").fetchone()
        if row is not None and row[0] != SCHEMA_VERSION:  # an older layout: the index is a cache, start afresh
            self._w.close()
            for suffix in ("", "-wal", "-shm"):
                if os.path.exists(db_path + suffix):
                    os.remove(db_path + suffix)
            self._w = self._connect()
            self._w.executescript(SCHEMA)
            row = None
        if row is None:
            self._w.execute("INSERT INTO meta(k, v) VALUES('schema', ?)", (SCHEMA_VERSION,))
        self.shard = int(self._meta("shard", "0"))
        self.shard_bytes = int(self._meta("shard_bytes", "0"))
        self._w.execute(FTS_TABLE.format(n=self.shard))
        self._r = self._connect()
        self._wlock = threading.Lock()
        self._rlock = threading.Lock()

    def _meta(self, key: str, default: str) -> str:
        row = self._w.execute("SELECT v FROM meta WHERE k=?", (key,)).fetchone()
        return str(row[0]) if row else default

    def _set_meta(self, key: str, value: object) -> None:
        self._w.execute("INSERT INTO meta(k, v) VALUES(?, ?) ON CONFLICT(k) DO UPDATE SET v = excluded.v",
                        (key, str(value)))  # fmt: skip

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.db_path, check_same_thread=False, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA busy_timeout=5000")
        return conn

    def close(self) -> None:
        self._w.close()
        self._r.close()

    # -- writing ---------------------------------------------------------------------------------------------

    def known(self) -> dict[str, tuple[int, int, float, int]]:
        """path → (inode, size, mtime, offset) of every indexed file."""
        with self._rlock:
            rows = self._r.execute("SELECT path, inode, size, mtime, offset FROM files").fetchall()
        return {r[0]: (r[1], r[2], r[3], r[4]) for r in rows}

    def changed(self, found: Found, known: tuple[int, int, float, int] | None) -> bool:
        return known is None or (known[0], known[1], known[2]) != (found.inode, found.size, found.mtime)

    def remove_missing(self, present: set[str]) -> int:
        """Drop every file not in ``present`` (deleted or moved away); returns how many."""
        with self._wlock:
            rows = self._w.execute("SELECT fid, path FROM files").fetchall()
            gone = [fid for fid, path in rows if path not in present]
            if gone:
                self._w.execute("BEGIN")
                for fid in gone:
                    self._drop_docs(fid)
                    self._w.execute("DELETE FROM files WHERE fid=?", (fid,))
                self._w.execute("COMMIT")
        return len(gone)

    def _drop_docs(self, fid: int) -> None:
        cur = self._w.execute(
            "DELETE FROM docs WHERE rowid BETWEEN ? AND ?", (fid << SEQ_BITS, ((fid + 1) << SEQ_BITS) - 1)
        )
        if cur.rowcount:
            self._w.execute(
                "INSERT INTO meta(k, v) VALUES('dead', ?) ON CONFLICT(k) DO UPDATE SET v = CAST(v AS INTEGER) + ?",
                (cur.rowcount, cur.rowcount),
            )

    def update_file(self, found: Found, max_bytes: int = READ_CHUNK) -> tuple[int, bool]:
        """Index what is new in one file (at most ``max_bytes`` of it); returns (bytes consumed, whether the file
        has more to read now)."""
        with self._wlock:
            try:
                with open(found.path, "rb") as f:
                    st = os.fstat(f.fileno())
                    first = f.read(HEADER_READ).split(b"\n", 1)[0]
                    return self._update(f, st, first, found, max_bytes)
            except FileNotFoundError:
                self._w.execute("BEGIN")
                row = self._w.execute("SELECT fid FROM files WHERE path=?", (found.path,)).fetchone()
                if row:
                    self._drop_docs(row[0])
                    self._w.execute("DELETE FROM files WHERE fid=?", (row[0],))
                self._w.execute("COMMIT")
                return 0, False

    def _update(self, f: Any, st: os.stat_result, first: bytes, found: Found, max_bytes: int) -> tuple[int, bool]:
        w = self._w
        hh = parse.header_hash(first)
        row = w.execute(
            "SELECT fid, inode, offset, header_hash, seq, nentries, version, name, first_prompt, message_count, "
            "model, cost, modified FROM files WHERE path=?",
            (found.path,),
        ).fetchone()
        w.execute("BEGIN")
        try:
            if row is not None and (row[1] != st.st_ino or st.st_size < row[2] or (row[2] > 0 and row[3] != hh)):
                self._drop_docs(row[0])  # rewritten (migration), truncated or replaced: start again
                w.execute("DELETE FROM files WHERE fid=?", (row[0],))
                row = None
            if row is None:
                header = parse.header_of(parse.load_line(first))
                if header is None:
                    w.execute("COMMIT")  # not (yet) a session: pi writes the header first; look again next pass
                    return 0, False
                cur = w.execute(
                    "INSERT INTO files(path, sid, inode, size, mtime, offset, header_hash, version, session_id, cwd, "
                    "parent_session, created, sort, base, parent_base) VALUES(?,?,?,?,?,0,?,?,?,?,?,?,?,?,?)",
                    (found.path, session_sid(found.path), st.st_ino, 0, 0, hh, header.version, header.id,
                     header.cwd, header.parent_session, parse.iso_seconds(header.timestamp), st.st_mtime,
                     os.path.basename(found.path), _base(header.parent_session)),
                )  # fmt: skip
                row = (cur.lastrowid, st.st_ino, 0, hh, 0, 0, header.version, None, None, 0, None, 0.0, None)
            fid, _, offset, _, seq, nentries, version = row[:7]
            builder = parse.MetaBuilder(name=row[7], first_prompt=row[8], message_count=row[9], model=row[10],
                                        cost=row[11] or 0.0, modified=row[12])  # fmt: skip
            f.seek(offset)
            data = f.read(min(max_bytes, max(0, st.st_size - offset)))
            consumed = parse.complete_length(data)
            if consumed == 0 and len(data) >= max_bytes:  # one line longer than a chunk: skip it
                consumed = self._skip_line(f, offset + len(data)) - offset
            if seq + data.count(b"\n") >= SEQ_LIMIT:  # never in practice: start the file again under a new fid
                self._drop_docs(fid)
                w.execute("DELETE FROM files WHERE fid=?", (fid,))
                w.execute("COMMIT")
                return 0, True
            docs: list[tuple] = []
            texts: list[tuple] = []
            for off, line in parse.lines(data[:consumed], offset):
                if off == 0:
                    continue  # the header
                entry = parse.load_line(line)
                if entry is None or entry.get("type") == "session" or not isinstance(entry.get("type"), str):
                    continue
                if version is not None and version < 2:
                    entry["id"] = f"v1{nentries:06x}"  # parse.migrate's ids for v1 files
                elif not isinstance(entry.get("id"), str) or not entry["id"]:
                    entry["id"] = f"x{nentries:07x}"  # parse.index_ids' ids
                nentries += 1
                builder.add(entry)
                found_text = parse.entry_text(entry)
                if found_text is None:
                    continue
                rowid = (fid << SEQ_BITS) | seq
                seq += 1
                docs.append((rowid, fid, entry["id"], found_text[0], parse.iso_seconds(entry.get("timestamp")),
                             off, len(line)))  # fmt: skip
                texts.append((rowid, found_text[1]))
            w.executemany("INSERT INTO docs(rowid, fid, entry_id, role, ts, off, len) VALUES(?,?,?,?,?,?,?)", docs)
            if self.shard_bytes >= SHARD_TEXT_BYTES:  # close the shard: new entries go to a new one
                self.shard, self.shard_bytes = self.shard + 1, 0
                w.execute(FTS_TABLE.format(n=self.shard))
            w.executemany(f"INSERT INTO fts_{self.shard}(rowid, text) VALUES(?,?)", texts)
            self.shard_bytes += sum(len(t) for _, t in texts)
            self._set_meta("shard", self.shard)
            self._set_meta("shard_bytes", self.shard_bytes)
            new_offset = offset + consumed
            done = new_offset >= st.st_size or consumed == 0
            w.execute(
                "UPDATE files SET inode=?, size=?, mtime=?, offset=?, seq=?, nentries=?, name=?, first_prompt=?, "
                "message_count=?, model=?, cost=?, modified=?, sort=? WHERE fid=?",
                (st.st_ino, st.st_size if done else new_offset, st.st_mtime if done else 0, new_offset, seq,
                 nentries, builder.name, builder.first_prompt, builder.message_count, builder.model,
                 round(builder.cost, 6), builder.modified, builder.modified or st.st_mtime, fid),
            )  # fmt: skip
            w.execute("COMMIT")
        except BaseException:
            w.execute("ROLLBACK")
            self.shard = int(self._meta("shard", "0"))
            self.shard_bytes = int(self._meta("shard_bytes", "0"))
            raise
        return consumed, not done and consumed > 0

    def _skip_line(self, f: Any, pos: int) -> int:
        f.seek(pos)
        for _ in range(1 << 16):
            chunk = f.read(1 << 20)
            if not chunk:
                return pos
            nl = chunk.find(b"\n")
            if nl >= 0:
                return pos + nl + 1
            pos += len(chunk)
        return pos

    def rebuild_if_needed(self, min_dead: int = 100_000) -> bool:
        """When removed docs' postings outnumber half the live docs: empty the FTS table and mark every file for
        reindexing (the scanner then reads them again). Returns True when it did."""
        with self._wlock:
            dead = int((self._w.execute("SELECT v FROM meta WHERE k='dead'").fetchone() or ["0"])[0])
            live = self._w.execute("SELECT count(*) FROM docs").fetchone()[0]
            if dead < min_dead or dead * 2 < live:
                return False
            self._w.execute("BEGIN")
            for n in range(self.shard + 1):
                self._w.execute(f"DROP TABLE IF EXISTS fts_{n}")
            self.shard, self.shard_bytes = 0, 0
            self._w.execute(FTS_TABLE.format(n=0))
            self._set_meta("shard", 0)
            self._set_meta("shard_bytes", 0)
            self._w.execute("DELETE FROM docs")
            self._w.execute("DELETE FROM files")
            self._w.execute("DELETE FROM meta WHERE k='dead'")
            self._w.execute("COMMIT")
            return True

    def shards(self) -> int:
        with self._rlock:
            row = self._r.execute("SELECT v FROM meta WHERE k='shard'").fetchone()
        return int(row[0]) + 1 if row else 1

    # -- reading ---------------------------------------------------------------------------------------------

    def file_by_sid(self, sid: str) -> str | None:
        with self._rlock:
            row = self._r.execute("SELECT path FROM files WHERE sid=?", (sid,)).fetchone()
        return row[0] if row else None

    def list_sessions(self, cwd: str | None = None, before: tuple[float, int] | None = None, limit: int = 50,
                      since: float | None = None, until: float | None = None) -> list[dict[str, Any]]:  # fmt: skip
        """Sessions newest first (by last activity); ``before`` is the (sort, fid) cursor of the previous page."""
        where: list[str] = []
        args: list[Any] = []
        if cwd is not None:
            where.append("cwd = ?")
            args.append(cwd)
        if before is not None:
            where.append("(sort < ? OR (sort = ? AND fid < ?))")
            args += [before[0], before[0], before[1]]
        if since is not None:
            where.append("sort >= ?")
            args.append(since)
        if until is not None:
            where.append("sort < ?")
            args.append(until)
        sql = (f"SELECT fid, sort, {', '.join(FILE_FIELDS)} FROM files "
               f"{'WHERE ' + ' AND '.join(where) if where else ''} ORDER BY sort DESC, fid DESC LIMIT ?")  # fmt: skip
        with self._rlock:
            rows = self._r.execute(sql, (*args, limit)).fetchall()
        return [{"_cursor": (r[1], r[0]), **dict(zip(FILE_FIELDS, r[2:], strict=True))} for r in rows]

    def session_row(self, path: str) -> dict[str, Any] | None:
        with self._rlock:
            r = self._r.execute(f"SELECT {', '.join(FILE_FIELDS)} FROM files WHERE path=?", (path,)).fetchone()
        return dict(zip(FILE_FIELDS, r, strict=True)) if r else None

    def forks_of(self, path: str, limit: int = 100) -> list[dict[str, Any]]:
        """Sessions whose header names ``path`` as their ``parentSession`` (forks and clones), newest first.
        Matched by file name (pi's names are unique: timestamp and session id), so a session directory that
        moved since the fork still links up."""
        with self._rlock:
            rows = self._r.execute("SELECT sid, path, name, created FROM files WHERE parent_base=? "
                                   "ORDER BY sort DESC LIMIT ?", (os.path.basename(path), limit)).fetchall()  # fmt: skip
        return [{"id": r[0], "path": r[1], "name": r[2], "created": r[3]} for r in rows]

    def file_by_name(self, parent_session: str) -> tuple[str, str] | None:
        """(sid, path) of the indexed file with the same file name as ``parent_session``."""
        with self._rlock:
            row = self._r.execute("SELECT sid, path FROM files WHERE base=? LIMIT 1",
                                  (_base(parent_session),)).fetchone()  # fmt: skip
        return (row[0], row[1]) if row else None

    def counts(self) -> dict[str, int]:
        with self._rlock:
            files = self._r.execute("SELECT count(*) FROM files").fetchone()[0]
            docs = self._r.execute("SELECT count(*) FROM docs").fetchone()[0]
        return {"files": files, "docs": docs}

    def search(self, text: str, limit: int = 50, cwd: str | None = None, roles: Iterable[str] | None = None,
               since: float | None = None, until: float | None = None,
               candidates: int = CANDIDATES) -> list[dict[str, Any]]:  # fmt: skip
        """Hits for ``text`` ranked by bm25 (lower is better; ``score`` is its negation, higher is better) among
        the newest ``candidates`` matching entries, each with a snippet cut from the session file.
        QueryError for a query that cannot be searched."""
        groups = query.parse_query(text)
        expr = query.match_expression(groups)
        where: list[str] = ["{fts} MATCH ?"]
        args: list[Any] = [expr]
        if cwd is not None:
            where.append("f.cwd = ?")
            args.append(cwd)
        role_list = [r for r in (roles or []) if r in parse.ROLES]
        if role_list:
            where.append(f"d.role IN ({','.join('?' * len(role_list))})")
            args += role_list
        if since is not None:
            where.append("d.ts >= ?")
            args.append(since)
        if until is not None:
            where.append("d.ts < ?")
            args.append(until)
        cols = "d.entry_id, d.role, d.ts, d.off, d.len, f.path, f.sid, f.cwd, f.name"
        if len(where) == 1:  # no filter: rank the FTS table's own rows, look up only the hits shown
            arm = (f"SELECT * FROM (SELECT c.rowid, c.s, {cols} FROM (SELECT rowid, bm25({{fts}}) AS s FROM {{fts}} "
                   "WHERE {fts} MATCH ? ORDER BY rowid DESC LIMIT ?) c JOIN docs d ON d.rowid = c.rowid "
                   "JOIN files f ON f.fid = d.fid)")  # fmt: skip
        else:
            arm = (f"SELECT * FROM (SELECT {{fts}}.rowid, bm25({{fts}}) AS s, {cols} FROM {{fts}} "
                   "JOIN docs d ON d.rowid = {fts}.rowid JOIN files f ON f.fid = d.fid "
                   f"WHERE {' AND '.join(where)} ORDER BY {{fts}}.rowid DESC LIMIT ?)")  # fmt: skip
        try:
            with self._rlock:
                row = self._r.execute("SELECT v FROM meta WHERE k='shard'").fetchone()
                shards = list(range(int(row[0]) if row else 0, -1, -1))  # newest shard first
                rows: list[Any] = []
                # UNION ALL runs its arms in order and stops at the LIMIT, so a shard past the candidates is never
                # read (nor its bm25 IDF computed); groups of shards stay below SQLite's 500 compound terms
                for i in range(0, len(shards), SHARDS_PER_STATEMENT):
                    group = shards[i : i + SHARDS_PER_STATEMENT]
                    want = candidates - len(rows)
                    sql = " UNION ALL ".join(arm.format(fts=f"fts_{n}") for n in group) + " LIMIT ?"
                    rows += self._r.execute(sql, [*(a for _ in group for a in (*args, want)), want]).fetchall()
                    if len(rows) >= candidates:
                        break
        except sqlite3.OperationalError as exc:  # never expected: the expression is built from tokens only
            raise query.QueryError(f"the query cannot be searched: {exc}") from None
        rows.sort(key=lambda r: r[1])
        del rows[min(limit, MAX_RESULTS) :]
        hits = []
        for _rowid, score, entry_id, role, ts, off, length, path, sid, cwd_, name in rows:
            text_of = _entry_text_at(path, off, length, entry_id)
            if text_of is None:
                continue  # the file changed since it was indexed; the next pass reindexes it
            snip, ranges = query.snippet(text_of, groups)
            hits.append({"path": path, "session_id": sid, "entry_id": entry_id, "role": role, "ts": ts, "cwd": cwd_,
                         "name": name, "snippet": snip, "highlights": [list(r) for r in ranges],
                         "score": round(-score, 6)})  # fmt: skip
        return hits


def _base(path: str | None) -> str | None:
    return os.path.basename(path.replace("\\", "/")) if path else None


def _entry_text_at(path: str, off: int, length: int, entry_id: str) -> str | None:
    try:
        with open(path, "rb") as f:
            f.seek(off)
            line = f.read(length)
    except OSError:
        return None
    entry = parse.load_line(line)
    if entry is None:
        return None
    if isinstance(entry.get("id"), str) and entry["id"] != entry_id:
        return None
    found = parse.entry_text(entry)
    return found[1] if found else None


def index_all(index: Index, found: list[Found], progress: Progress | None = None, pause: float = 0.0,
              chunk_seconds: float = 0.2, should_stop=lambda: False) -> Progress:  # fmt: skip
    """Bring the index up to date with ``found`` (the files on disk now), oldest first; files no longer on disk
    leave it. ``pause``: after every ``chunk_seconds`` of work, sleep ``pause`` times as long (low priority)."""
    progress = progress or Progress()
    known = index.known()
    index.remove_missing({f.path for f in found})
    # oldest first: a file's docs get higher rowids than every older file's, so a query's candidate window (the
    # highest rowids) holds the most recent sessions
    todo = sorted((f for f in found if index.changed(f, known.get(f.path))), key=lambda f: f.mtime)
    progress.files_total = len(todo)
    progress.files_done = 0
    worked_since = time.monotonic()
    for f in todo:
        for _ in range(1 << 20):  # bounded: each pass consumes a chunk or stops
            n, more = index.update_file(f)
            progress.bytes_done += n
            if not more:
                break
            if should_stop():
                return progress
        progress.files_done += 1
        if pause > 0 and time.monotonic() - worked_since > chunk_seconds:
            time.sleep((time.monotonic() - worked_since) * pause)
            worked_since = time.monotonic()
        if should_stop():
            break
    return progress


def dumps(obj: Any) -> bytes:
    return orjson.dumps(obj)
