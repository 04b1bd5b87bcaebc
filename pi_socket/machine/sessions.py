"""This machine's past pi sessions, answered to the hypivisor (specs/sessions.md, "Every machine").

The machine service keeps the index of *its* session files (``sessions.sqlite3`` in its state dir,
``~/.local/state/hyper-pi``) with the same code the hypivisor uses for its own machine
(:class:`~pi_socket.sessions.store.SessionStore`), and answers the hypivisor's ``machine_request``s
``list_sessions``, ``read_session``, ``search`` and ``resume_target``. Every session is named by an id this
machine issued or a path it verifies under its own session directories; nothing the hypivisor sends is trusted
as a path. Resuming spawns through the service's own ``spawn_agent`` (the session file is validated there again).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import orjson
from pydantic import BaseModel, ValidationError

from pi_socket.errors import HypiError
from pi_socket.protocol import ErrorCode, ListSessionsParams, ReadSessionParams, SearchParams
from pi_socket.sessions import query
from pi_socket.sessions.index import Progress
from pi_socket.sessions.store import SessionError, SessionStore, check_query

M = TypeVar("M", bound=BaseModel)
METHODS = frozenset({"list_sessions", "read_session", "search", "resume_target"})
# The hypivisor reads at most 1 MiB per frame from a connection (hypivisor/rpc.py); a reply is a machine_reply
# frame around the answer, so an answer stays below this.
MAX_ANSWER_BYTES = 900 * 1024


class MachineSessions:
    def __init__(self, env: Mapping[str, str], home: str, state_dir: Path | None, machine: str,
                 call: Callable[[str, dict[str, Any]], Awaitable[Any]] | None = None):  # fmt: skip
        """``call``: a registry call to the hypivisor (the index's progress is told with it)."""
        self.store = SessionStore(dict(env), home, state_dir, machine, self._progress)
        self._call = call
        self._tasks: set[asyncio.Task[None]] = set()

    def _progress(self, p: Progress, done: bool) -> None:
        """A large build's progress, told to the hypivisor (pushed to dashboards); not told when not connected."""
        if self._call is None:
            return
        task = asyncio.get_running_loop().create_task(
            self._tell({"files_done": p.files_done, "files_total": p.files_total, "done": done})
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _tell(self, params: dict[str, Any]) -> None:
        try:
            await self._call("machine_index_progress", params)  # type: ignore[misc]
        except Exception:  # noqa: BLE001, S110 - progress is a courtesy: the hypivisor may be gone or older
            pass

    def start(self) -> None:
        self.store.start()

    def close(self) -> None:
        self.store.close()

    async def serve(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        """One request's answer; HypiError (its code) when refused."""
        if method == "list_sessions":
            return await self.store.list_sessions(_params(ListSessionsParams, params))
        if method == "read_session":
            return fit_page(await self.store.read_session(_params(ReadSessionParams, params)), MAX_ANSWER_BYTES)
        if method == "search":
            p = _params(SearchParams, params)
            check_query(p.query)
            try:
                return await self.store.search(p)
            except query.QueryError as exc:
                raise SessionError(ErrorCode.INVALID_PARAMS, str(exc)) from None
        if method == "resume_target":
            raw = params.get("path")
            if not isinstance(raw, str) or not raw or len(raw) > 4096:
                raise HypiError(ErrorCode.INVALID_PARAMS, "resume_target needs path (a session id or file)")
            return await self.store.resume_target(raw)
        raise HypiError(ErrorCode.METHOD_NOT_FOUND, f"this machine does not know {method[:64]!r}")


def _params(model: type[M], params: dict[str, Any]) -> M:
    try:
        return model.model_validate({k: v for k, v in params.items() if k != "machine"})
    except ValidationError as exc:
        errors = exc.errors()
        where = ".".join(str(x) for x in errors[0]["loc"]) if errors else ""
        msg = errors[0]["msg"] if errors else "invalid"
        raise HypiError(ErrorCode.INVALID_PARAMS, f"invalid params: {where}: {msg}") from None


def fit_page(page: dict[str, Any], budget: int) -> dict[str, Any]:
    """A read_session page made to fit ``budget`` bytes of JSON: the tree loses its oldest nodes first (halved
    each time, ``tree_truncated``), then the page its oldest messages (``cursor``/``before`` move on,
    ``has_more``), one message at least. Pure."""
    size = len(orjson.dumps(page))
    tree = page.get("tree")
    while size > budget and isinstance(tree, list) and tree:
        tree = tree[len(tree) // 2 :] if len(tree) > 1 else []
        page = {**page, "tree": tree, "tree_truncated": True}
        size = len(orjson.dumps(page))
    messages, ids = list(page.get("messages") or []), list(page.get("entry_ids") or [])
    if size <= budget or len(messages) <= 1:
        return page
    sizes = [len(orjson.dumps(m)) + 1 for m in messages]
    drop = 0
    while size > budget and drop < len(messages) - 1:
        size -= sizes[drop] + len(orjson.dumps(ids[drop])) + 1 if drop < len(ids) else sizes[drop]
        drop += 1
    start = int(page.get("cursor") or 0) + drop
    return {**page, "messages": messages[drop:], "entry_ids": ids[drop:], "cursor": start, "before": start,
            "has_more": start > 0}  # fmt: skip
