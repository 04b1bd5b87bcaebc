"""A machine service's answers about its own sessions (pi_socket/machine/sessions.py) on real session files
(tests/fixtures/sessions): list, read, search with a role or dates, resume_target; what it refuses (bad params, paths
outside its session dirs, another machine's id, unknown methods)."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import orjson
import pytest

from pi_socket.errors import HypiError
from pi_socket.machine.sessions import MachineSessions, fit_page
from pi_socket.protocol import ErrorCode, ListSessionsResult, ReadSessionResult, SearchHit

FIXTURES = Path(__file__).parent / "fixtures" / "sessions"


@pytest.fixture
def home(tmp_path) -> Path:
    h = tmp_path / "home"
    d = h / ".pi" / "agent" / "sessions" / "--project--"
    d.mkdir(parents=True)
    for f in (FIXTURES / "1.6.0").glob("*.jsonl"):
        shutil.copy(f, d / f.name)
    (h / "project").mkdir()
    return h


def serve(home: Path, tmp_path: Path, method: str, params: dict) -> dict:
    async def go() -> dict:
        ms = MachineSessions({"HOME": str(home)}, str(home), tmp_path / "state", "alpha")
        try:
            return await ms.serve(method, params)
        finally:
            ms.close()

    return asyncio.run(go())


def test_list_read_and_search_with_a_role(home, tmp_path):
    listed = serve(home, tmp_path, "list_sessions", {"limit": 10})
    ListSessionsResult.model_validate(listed)
    assert listed["machine"] == "alpha" and len(listed["sessions"]) == 2
    assert (tmp_path / "state" / "sessions.sqlite3").exists()  # the machine's own index, in its state dir
    main = next(s for s in listed["sessions"] if s["name"] == "Fixture session")
    page = serve(home, tmp_path, "read_session", {"path": main["id"], "machine": "alpha"})
    ReadSessionResult.model_validate(page)
    assert page["branches"] and page["branches"][0]["at"] == 2
    found = serve(home, tmp_path, "search", {"query": "zebras", "role": "user"})
    assert found["hits"] and {h["role"] for h in found["hits"]} == {"user"}
    for h in found["hits"]:
        SearchHit.model_validate(h)
        assert h["machine"] == "alpha"
    assert serve(home, tmp_path, "search", {"query": "zebras", "role": "tool"})["hits"] == []


def test_date_filters(home, tmp_path):
    """since/until reach this machine's index: a list by last activity, a search by each entry's time."""
    d = home / ".pi" / "agent" / "sessions" / "--project--"
    older = sorted(d.glob("*.jsonl"))[0]  # the other keeps pi's 2026-12-06 times; this one is moved to June 2025
    older.write_bytes(older.read_bytes().replace(b'"2026-12-06T18:03', b'"2025-06-01T10:03'))
    dec = 1_764_547_200.0  # 2025-12-01T00:00:00Z
    new = serve(home, tmp_path, "list_sessions", {"since": dec})["sessions"]
    old = serve(home, tmp_path, "list_sessions", {"until": dec})["sessions"]
    assert len(new) == 1 and len(old) == 1 and new[0]["path"] != old[0]["path"]
    assert old[0]["modified"] < dec <= new[0]["modified"]
    hits = serve(home, tmp_path, "search", {"query": "zebras", "until": dec})["hits"]
    assert hits and all(h["ts"] < dec and h["path"] == old[0]["path"] for h in hits)
    assert serve(home, tmp_path, "search", {"query": "zebras", "since": dec})["hits"] == []  # only said in 2025
    assert serve(home, tmp_path, "list_sessions", {"since": dec, "until": dec})["sessions"] == []


def test_refusals(home, tmp_path):
    outside = tmp_path / "outside.jsonl"
    outside.write_bytes(next((FIXTURES / "1.6.0").glob("*.jsonl")).read_bytes())
    for method, params, code in (
        ("read_session", {"path": str(outside)}, ErrorCode.NOT_FOUND),
        ("read_session", {"path": "/etc/passwd"}, ErrorCode.NOT_FOUND),
        ("read_session", {"path": "0" * 24}, ErrorCode.NOT_FOUND),  # an id this machine never issued
        ("read_session", {"path": "x", "limit": "many"}, ErrorCode.INVALID_PARAMS),
        ("list_sessions", {"before": "not-a-cursor"}, ErrorCode.INVALID_PARAMS),
        ("search", {"query": '"" * ('}, ErrorCode.INVALID_PARAMS),
        ("search", {"query": "x", "role": "root"}, ErrorCode.INVALID_PARAMS),
        ("list_sessions", {"since": 2_000_000_000, "until": 1_000_000_000}, ErrorCode.INVALID_PARAMS),
        ("list_sessions", {"since": "yesterday"}, ErrorCode.INVALID_PARAMS),
        ("search", {"query": "x", "since": 2, "until": 1}, ErrorCode.INVALID_PARAMS),
        ("search", {"query": "x", "until": -1}, ErrorCode.INVALID_PARAMS),
        ("resume_target", {"path": str(outside)}, ErrorCode.NOT_FOUND),
        ("resume_target", {}, ErrorCode.INVALID_PARAMS),
        ("drop_tables", {}, ErrorCode.METHOD_NOT_FOUND),
    ):
        with pytest.raises(HypiError) as e:
            serve(home, tmp_path, method, params)
        assert e.value.code == code, (method, params, e.value)


def test_resume_target_checks_the_folder_against_this_machine_home(home, tmp_path):
    listed = serve(home, tmp_path, "list_sessions", {})
    main = next(s for s in listed["sessions"] if s["name"] == "Fixture session")
    # the fixture was made in /home/user/project: not inside this machine's home, so it is not resumed here
    with pytest.raises(HypiError) as e:
        serve(home, tmp_path, "resume_target", {"path": main["id"]})
    assert e.value.code == ErrorCode.PATH_OUTSIDE_HOME
    # a session made in a folder of this home is: its file and folder
    data = Path(main["path"]).read_bytes().replace(b'"cwd":"/home/user/project"', f'"cwd":"{home}/project"'.encode(), 1)
    mine = Path(main["path"]).parent / "mine.jsonl"
    mine.write_bytes(data)
    target = serve(home, tmp_path, "resume_target", {"path": str(mine)})
    assert target == {"path": str(mine.resolve()), "cwd": str((home / "project").resolve())}


def test_a_page_is_made_to_fit_one_frame():
    """The hypivisor reads at most 1 MiB per frame: the tree gives way first, then the oldest messages."""
    msg = {"role": "user", "content": [{"type": "text", "text": "x" * 1000}]}
    page = {"messages": [msg] * 50, "entry_ids": [f"e{i}" for i in range(50)], "cursor": 10, "before": 10,
            "end": 60, "has_more": True, "tree": [{"id": f"n{i}", "preview": "y" * 200} for i in range(1000)]}  # fmt: skip
    assert fit_page(page, 10**7) is page
    small = fit_page(page, 60_000)
    assert len(orjson.dumps(small)) <= 60_000
    assert small["tree_truncated"] and len(small["tree"]) < 1000 and len(small["messages"]) == 50
    assert small["tree"][-1]["id"] == "n999"  # the newest nodes stay
    tiny = fit_page(page, 20_000)
    assert len(orjson.dumps(tiny)) <= 20_000
    kept = len(tiny["messages"])
    assert 1 <= kept < 50 and tiny["entry_ids"] == page["entry_ids"][50 - kept :]
    assert tiny["cursor"] == tiny["before"] == 10 + 50 - kept and tiny["has_more"] and tiny["end"] == 60
    assert len(fit_page(page, 10)["messages"]) == 1  # one message at least


def test_a_large_build_tells_the_hypivisor_its_progress(home, tmp_path, monkeypatch):
    """A first build of many files is told as machine_index_progress (then pushed to dashboards), ending in done;
    a routine look at a few files is silent."""
    monkeypatch.setattr("pi_socket.sessions.store.PROGRESS_EVERY", 0.01)
    monkeypatch.setattr("pi_socket.sessions.store.PAUSE", 0.5)
    src = next((FIXTURES / "1.6.0").glob("*.jsonl")).read_bytes()
    d = home / ".pi" / "agent" / "sessions" / "--many--"
    d.mkdir()
    for i in range(12):
        (d / f"s{i:02d}.jsonl").write_bytes(src)
    told: list[tuple[str, dict]] = []

    async def call(method: str, params: dict) -> dict:
        told.append((method, params))
        return {}

    async def go() -> None:
        ms = MachineSessions({"HOME": str(home)}, str(home), tmp_path / "state", "alpha", call)
        try:
            await ms.store.refresh()
            await asyncio.sleep(0.05)
            assert told and {m for m, _ in told} == {"machine_index_progress"}
            assert told[-1][1] == {"files_done": 14, "files_total": 14, "done": True}
            told.clear()
            await ms.store.refresh()  # nothing changed: silent
            await asyncio.sleep(0.05)
            assert told == []
        finally:
            ms.close()

    asyncio.run(go())


def test_a_list_right_after_start_waits_for_the_first_build_of_a_small_history(home, tmp_path, monkeypatch):
    """The background scanner's first build is running (slowed here) when a list arrives: with a handful of
    files the list waits for it (bounded) rather than answering an empty list with no progress to show."""
    from pi_socket.sessions.store import SessionStore

    original = SessionStore._scan_blocking

    def slow_scan(self):
        import time

        time.sleep(0.6)
        original(self)

    monkeypatch.setattr(SessionStore, "_scan_blocking", slow_scan)

    async def go() -> dict:
        ms = MachineSessions({"HOME": str(home)}, str(home), tmp_path / "state", "alpha")
        try:
            ms.start()
            await asyncio.sleep(0.1)  # the first build has begun
            return await ms.serve("list_sessions", {"limit": 10})
        finally:
            ms.close()

    listed = asyncio.run(go())
    assert len(listed["sessions"]) == 2
