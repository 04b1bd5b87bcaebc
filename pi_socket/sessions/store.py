"""One machine's past pi sessions, served: list, read a page, search, and what resuming needs (specs/sessions.md).

The same code serves the hypivisor's own machine (hypivisor/sessions.py) and every machine service
(pi_socket/machine/sessions.py): each keeps the index of *its* session files in its own state dir and answers for
its machine only. It knows nothing about agents: which agent writes a file is the hypivisor's knowledge (its
roster), added to answers there (``live_node_id``).

A background scanner (a worker thread, in chunks, sleeping between them: :data:`PAUSE`) keeps the index current;
``announce(done)`` is told about a large build's progress so the owner can push ``index_progress``.
"""

from __future__ import annotations

import asyncio
import collections
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from hypivisor import paths
from pi_socket import oplog
from pi_socket.errors import HypiError
from pi_socket.protocol import (
    INIT_HISTORY_BUDGET_BYTES,
    ErrorCode,
    ListSessionsParams,
    ReadSessionParams,
    SearchParams,
)
from pi_socket.sessions import dirs, parse, query
from pi_socket.sessions.index import Index, Progress, index_all

SCAN_INTERVAL = 5.0  # seconds between looks at the session directories
FRESH_FOR = 1.0  # a list, read or search looks again first when the last look is older than this
PAUSE = 1.0  # the scanner sleeps this many times as long as it worked (≤ 50 % of one core)
PROGRESS_EVERY = 1.0
PROGRESS_MIN_FILES = 10  # scans of fewer changed files push no progress
FIRST_SCAN_WAIT = 5.0  # a request waits this long at most for the first build of a small history
CACHE_SESSIONS = 4  # parsed sessions kept (a person pages through one at a time)
TREE_NODES = 5000
SID_LEN = 24
MAX_SESSION_BYTES = 512 * 1024 * 1024  # a session file larger than this is not opened whole (pi never wrote one)
SEARCH_SLOTS = 4  # searches running at once on this machine; more wait their turn (a flood queues, never piles up)


class SessionError(HypiError):
    """A sessions request refused (the message says why)."""


def search_roles(params: SearchParams) -> list[str] | None:
    """The role filter: ``roles`` and the single ``role``, together (None: every role)."""
    roles: list[str] = list(params.roles or [])
    if params.role is not None and params.role not in roles:
        roles.append(params.role)
    return roles or None


class SessionStore:
    def __init__(self, env: dict[str, str], home: str, state_dir: Path | None, machine: str,
                 announce: Callable[[Progress, bool], None] | None = None):  # fmt: skip
        self.env = env
        self.home = home
        self.state_dir = state_dir
        self.machine = machine
        self.announce = announce
        self._tmp: str | None = None
        self._index: Index | None = None
        self.progress = Progress()
        self.building = False
        self._scan_lock = asyncio.Lock()
        self._last_scan = -1e9
        self._scanned_once = False  # the first build finished (requests wait briefly for a small one)
        self._stop = threading.Event()
        self._cache: collections.OrderedDict[tuple[str, int, float], parse.Session] = collections.OrderedDict()
        self._cache_lock = threading.Lock()
        self._tasks: set[asyncio.Task[None]] = set()
        self._search_slots = asyncio.Semaphore(SEARCH_SLOTS)

    # -- the index and its scanner ---------------------------------------------------------------------------

    def index(self) -> Index:
        if self._index is None:
            if self.state_dir is None:  # no kept state (unit tests): an index that lives as long as this store
                self._tmp = tempfile.mkdtemp(prefix="hypi-sessions-")
                self._index = Index(os.path.join(self._tmp, "sessions.sqlite3"))
            else:
                self.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
                self._index = Index(str(self.state_dir / "sessions.sqlite3"))
        return self._index

    def roots(self) -> list[str]:
        return dirs.session_roots(self.env, self.home)

    def start(self) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(self._loop())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def close(self) -> None:
        self._stop.set()
        for task in list(self._tasks):
            task.cancel()
        if self._index is not None:
            self._index.close()
            self._index = None
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)

    async def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                await self.refresh()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - the scanner must keep running
                oplog.log_boundary_error("sessions.scan", exc)
            await asyncio.sleep(SCAN_INTERVAL)

    async def refresh(self, max_age: float = 0.0) -> None:
        """Bring the index up to date, unless the last look is younger than ``max_age``. A request never waits
        for a scan already running on a large history (its first build): it answers from what is indexed, with
        the progress. The first build of a small one (fewer files than progress is shown for) is waited for, up
        to :data:`FIRST_SCAN_WAIT`, so a list right after start is not empty without saying why."""
        if max_age > 0 and self._scan_lock.locked() and not self._scanned_once:
            deadline = time.monotonic() + FIRST_SCAN_WAIT
            while (self._scan_lock.locked() and not self._scanned_once and time.monotonic() < deadline
                   and self.progress.files_total < PROGRESS_MIN_FILES):  # fmt: skip
                await asyncio.sleep(0.05)
            return
        if time.monotonic() - self._last_scan < max_age or (max_age > 0 and self._scan_lock.locked()):
            return
        async with self._scan_lock:
            if time.monotonic() - self._last_scan < max_age:
                return
            scan = asyncio.get_running_loop().run_in_executor(None, self._scan_blocking)
            announced = False
            while True:
                done, _ = await asyncio.wait({scan}, timeout=PROGRESS_EVERY)
                if done:
                    break
                if self.progress.files_total >= PROGRESS_MIN_FILES:
                    announced = True
                    self._announce(False)
            scan.result()
            self._last_scan = time.monotonic()
            self._scanned_once = True
            if announced or (self.building and self.progress.files_total >= PROGRESS_MIN_FILES):
                self._announce(True)
            self.building = False

    def _scan_blocking(self) -> None:
        idx = self.index()
        found = list(dirs.scan(self.roots()))
        self.building = True
        self.progress = Progress()
        index_all(idx, found, self.progress, pause=PAUSE, should_stop=self._stop.is_set)
        if idx.rebuild_if_needed():
            index_all(idx, found, self.progress, pause=PAUSE, should_stop=self._stop.is_set)

    def _announce(self, done: bool) -> None:
        if self.announce is not None:
            try:
                self.announce(self.progress, done)
            except Exception as exc:  # noqa: BLE001 - progress is a courtesy; the scan goes on
                oplog.log_boundary_error("sessions.progress", exc)

    def indexing(self) -> dict[str, int] | None:
        p = self.progress
        if not self.building or p.files_total < PROGRESS_MIN_FILES:  # a routine look at a few changed files
            return None
        return {"files_done": p.files_done, "files_total": p.files_total}

    # -- naming and reading files ----------------------------------------------------------------------------

    async def resolve(self, raw: str) -> str:
        """A session named by the id this machine issued, or by a path it verifies under its session dirs."""
        roots = await asyncio.to_thread(self.roots)
        path = raw
        if len(raw) == SID_LEN and all(c in "0123456789abcdef" for c in raw):
            found = await asyncio.to_thread(self.index().file_by_sid, raw)
            if found is None:
                raise SessionError(ErrorCode.NOT_FOUND, "no session with this id on this machine")
            path = found
        try:
            return await asyncio.to_thread(dirs.verify, path, roots)
        except dirs.SessionPathError as exc:
            raise SessionError(ErrorCode.NOT_FOUND, f"not a session of this machine: {exc}") from None

    def parsed(self, path: str) -> parse.Session:
        """The parsed file, cached while its size and mtime stay the same. Blocking."""
        with open(path, "rb") as f:
            st = os.fstat(f.fileno())
            key = (path, st.st_size, st.st_mtime)
            with self._cache_lock:
                hit = self._cache.get(key)
                if hit is not None:
                    self._cache.move_to_end(key)
                    return hit
            if st.st_size > MAX_SESSION_BYTES:
                raise SessionError(
                    ErrorCode.TOO_LARGE, f"the session file is larger than {MAX_SESSION_BYTES >> 20} MiB"
                )
            data = f.read()
        session = parse.parse(data)
        with self._cache_lock:
            self._cache[key] = session
            while len(self._cache) > CACHE_SESSIONS:
                self._cache.popitem(last=False)
        return session

    async def _session(self, path: str) -> parse.Session:
        try:
            return await asyncio.to_thread(self.parsed, path)
        except (OSError, parse.SessionFormatError) as exc:
            raise SessionError(ErrorCode.NOT_FOUND, f"cannot read this session: {exc}") from None

    def info(self, row: dict[str, Any]) -> dict[str, Any]:
        return {"machine": self.machine, "id": row["sid"], "path": row["path"], "session_id": row["session_id"],
                "cwd": row["cwd"], "name": row["name"], "first_prompt": row["first_prompt"],
                "message_count": row["message_count"], "model": row["model"], "cost": row["cost"],
                "created": row["created"], "modified": row["modified"], "size": row["size"],
                "parent_session": row["parent_session"], "live_node_id": None}  # fmt: skip

    # -- methods (answers without live_node_id: the caller knows the agents) ----------------------------------

    async def list_sessions(self, params: ListSessionsParams) -> dict[str, Any]:
        await self.refresh(FRESH_FOR)
        before = _cursor(params.before)
        rows = await asyncio.to_thread(self.index().list_sessions, params.cwd, before, params.limit, params.since,
                                       params.until)  # fmt: skip
        cursor = f"{rows[-1]['_cursor'][0]!r}:{rows[-1]['_cursor'][1]}" if len(rows) == params.limit else None
        return {"sessions": [self.info(r) for r in rows], "cursor": cursor, "machine": self.machine,
                "indexing": self.indexing()}  # fmt: skip

    async def read_session(self, params: ReadSessionParams) -> dict[str, Any]:
        path = await self.resolve(params.path)
        session = await self._session(path)
        leaf = params.leaf_id
        if leaf is not None and leaf not in session.by_id:
            raise SessionError(ErrorCode.NOT_FOUND, "no entry with this leaf_id in the session")
        if params.entry_id is not None:
            through = parse.leaf_through(session, params.entry_id)
            if through is None:
                raise SessionError(ErrorCode.NOT_FOUND, "no entry with this entry_id in the session")
            leaf = leaf or through
        return await asyncio.to_thread(self._page, session, path, leaf, params)

    def _page(self, session: parse.Session, path: str, leaf: str | None, params: ReadSessionParams) -> dict[str, Any]:
        messages, ids = parse.branch_messages(session, leaf)
        total, limit = len(messages), params.limit
        focus = ids.index(params.entry_id) if params.entry_id in ids else None
        if params.before is not None:
            end = min(params.before, total)
            start = max(0, end - limit)
        elif params.after is not None:
            start = min(params.after, total)
            end = min(total, start + limit)
        elif focus is not None and focus < total - limit:
            start = max(0, focus - limit // 4)
            end = min(total, start + limit)
        else:
            end = total
            start = max(0, end - limit)
        start, end = _within_budget(messages, start, end, keep_end=params.after is None and focus is None)
        first_page = params.before is None and params.after is None
        idx = self.index()
        row = idx.session_row(path)
        meta = parse.meta_of(session)
        parent = None
        if session.header.parent_session:  # by file name: the sessions directory may have moved since the fork
            found = idx.file_by_name(session.header.parent_session)
            parent = {"id": found[0], "path": found[1]} if found else {"id": None, "path": None}
        return {
            "machine": self.machine, "id": row["sid"] if row else None, "path": path, "session_id": session.header.id,
            "cwd": session.header.cwd, "name": meta.name, "created": meta.created, "modified": meta.modified,
            "parent": parent, "forks": idx.forks_of(path) if first_page else None,
            "messages": messages[start:end], "entry_ids": ids[start:end], "cursor": start, "before": start,
            "end": end, "has_more": start > 0, "has_newer": end < total, "total_messages": total,
            "leaf_id": leaf or session.leaf_id, "active_leaf_id": session.leaf_id,
            "focus_entry_id": params.entry_id if focus is not None else None,
            "tree": parse.tree_nodes(session, TREE_NODES) if first_page else None,
            "tree_truncated": first_page and len(session.entries) > TREE_NODES,
            "branches": parse.branch_points(session, leaf or session.leaf_id, ids) if first_page else None,
            "live_node_id": None,
        }  # fmt: skip

    async def search(self, params: SearchParams) -> dict[str, Any]:
        """``{hits, indexing}`` of this machine; QueryError for a query that cannot be searched."""
        await self.refresh(FRESH_FOR)
        async with self._search_slots:
            found = await asyncio.to_thread(self.index().search, params.query, params.limit, params.cwd,
                                            search_roles(params), params.since, params.until)  # fmt: skip
        hits = [{"machine": self.machine, "id": h.pop("session_id"), **h} for h in found]
        return {"hits": hits, "indexing": self.indexing()}

    async def resume_target(self, raw: str) -> dict[str, str]:
        """The session file to resume (resolved, under this machine's session dirs) and its folder, checked
        against this machine's spawn policy (inside ``$HOME``): ``{path, cwd}``."""
        path = await self.resolve(raw)
        session = await self._session(path)
        cwd = session.header.cwd
        if not cwd:
            raise SessionError(ErrorCode.INVALID_PATH, "the session's header names no folder")
        try:
            target = await asyncio.to_thread(paths.spawn_target, cwd, None, self.home)
        except paths.PathError as exc:
            raise SessionError(exc.code, f"cannot resume here: {exc.message}") from None
        return {"path": path, "cwd": target.path}


def check_query(text: str) -> None:
    try:
        query.parse_query(text)
    except query.QueryError as exc:
        raise SessionError(ErrorCode.INVALID_PARAMS, str(exc)) from None


def _cursor(raw: str | None) -> tuple[float, int] | None:
    if raw is None:
        return None
    try:
        sort, fid = raw.rsplit(":", 1)
        return float(sort), int(fid)
    except ValueError:
        raise SessionError(ErrorCode.INVALID_PARAMS, "before: not a cursor this service issued") from None


def _within_budget(messages: list[dict[str, Any]], start: int, end: int, keep_end: bool) -> tuple[int, int]:
    """Shrink [start, end) from the side away from what the reader looks at until it fits the live history's
    byte budget (``INIT_HISTORY_BUDGET_BYTES``); at least one message stays."""
    sizes = [len(orjson.dumps(m)) for m in messages[start:end]]
    total = sum(sizes)
    while total > INIT_HISTORY_BUDGET_BYTES and end - start > 1:
        if keep_end:
            total -= sizes.pop(0)
            start += 1
        else:
            total -= sizes.pop()
            end -= 1
    return start, end
