"""The sessions methods through ``Service.dispatch`` on real session files (written by real pi, see
pi_socket/tests/fixtures/sessions): list, read (pages, branches, a search hit's entry, forks), search (streamed
to the asking connection only), the machine rule, and which paths are refused."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import orjson
import pytest

from hypivisor.config import Config
from hypivisor.service import RpcFailure, Service
from hypivisor.sessions import own_machine
from pi_socket.protocol import (
    ErrorCode,
    ListSessionsResult,
    MachineFacts,
    ReadSessionResult,
    SearchResultsEvent,
)

FIXTURES = Path(__file__).resolve().parents[2] / "pi_socket" / "tests" / "fixtures" / "sessions"


@pytest.fixture
def home(tmp_path) -> Path:
    h = tmp_path / "home"
    for v in ("0.73.1", "1.6.0"):
        d = h / ".pi" / "agent" / "sessions" / f"--v{v}--"
        d.mkdir(parents=True)
        for f in (FIXTURES / v).glob("*.jsonl"):
            shutil.copy(f, d / f.name)
    (tmp_path / "outside.jsonl").write_bytes((FIXTURES / "1.6.0").glob("*.jsonl").__next__().read_bytes())
    return h


@pytest.fixture
def service(home, tmp_path):
    svc = Service(Config(host="127.0.0.1", state_dir=tmp_path / "state"), env={"HOME": str(home)})
    yield svc
    svc.sessions.close()


def call(svc: Service, method: str, params: dict, conn: str = "c1"):
    return asyncio.run(svc.dispatch(method, params, conn, "127.0.0.1"))


def test_list_newest_first_paged_and_by_folder(service):
    first = call(service, "list_sessions", {"limit": 3})
    ListSessionsResult.model_validate(first)
    assert len(first["sessions"]) == 3 and first["cursor"]
    rest = call(service, "list_sessions", {"limit": 3, "before": first["cursor"]})
    everything = first["sessions"] + rest["sessions"]
    assert len(everything) == 4 and len({s["id"] for s in everything}) == 4
    assert [s["modified"] for s in everything] == sorted((s["modified"] for s in everything), reverse=True)
    main = next(s for s in everything if s["name"] == "Fixture session")
    assert main["first_prompt"] == "hello world from the fixture" and main["cost"] > 0
    assert main["model"] == "fake/fake-vision" and main["machine"] == own_machine({})
    assert call(service, "list_sessions", {"cwd": "/nowhere"})["sessions"] == []
    assert len(call(service, "list_sessions", {"cwd": "/home/user/project"})["sessions"]) == 4
    assert call(service, "list_sessions", {"since": 4e9})["sessions"] == []


def test_read_pages_branches_and_entry(service):
    listed = call(service, "list_sessions", {})["sessions"]
    main = next(s for s in listed if s["name"] == "Fixture session" and "1.6.0" in s["path"])
    page = call(service, "read_session", {"path": main["id"], "limit": 3})
    ReadSessionResult.model_validate(page)
    assert page["has_more"] and page["cursor"] == page["total_messages"] - 3 and len(page["messages"]) == 3
    assert page["tree"] and page["forks"] and page["forks"][0]["path"].endswith(".jsonl")
    older = call(service, "read_session", {"path": main["path"], "before": page["cursor"], "limit": 500})
    assert older["cursor"] == 0 and not older["has_more"] and older["tree"] is None
    assert len(older["messages"]) + len(page["messages"]) == page["total_messages"]
    # open at a search hit on the other branch: that branch is shown, from around the entry
    hits = _search(service, "elephants", roles=["user"])
    hit = next(h for h in hits if h["path"] == main["path"])
    at = call(service, "read_session", {"path": hit["id"], "entry_id": hit["entry_id"]})
    assert hit["entry_id"] in at["entry_ids"] and at["focus_entry_id"] == hit["entry_id"]
    assert at["leaf_id"] != at["active_leaf_id"]
    # the fork names its parent
    fork = call(service, "read_session", {"path": page["forks"][0]["id"]})
    assert fork["parent"]["path"] == main["path"] and fork["parent"]["id"] == main["id"]


def _search(svc: Service, q: str, **params) -> list[dict]:
    frames: list[dict] = []

    async def go():
        svc.senders["c1"] = lambda data: frames.append(orjson.loads(data)) or True
        svc.senders["c2"] = lambda data: pytest.fail("another connection got search results")
        answer = await svc.dispatch("search", {"query": q, **params}, "c1", "127.0.0.1")
        for _ in range(200):
            if frames:
                break
            await asyncio.sleep(0.02)
        return answer

    answer = asyncio.run(go())
    assert len(frames) == 1
    frame = SearchResultsEvent.model_validate(frames[0])
    assert frame.query_id == answer["query_id"] and frame.done and frame.error is None
    return frames[0]["hits"]


def test_search_streams_hits_with_snippets(service):
    hits = _search(service, '"quick brown fox"')
    assert sorted(h["role"] for h in hits) == ["assistant", "assistant", "user", "user"]  # the fake LLM echoes
    for h in hits:
        assert h["machine"] and h["path"] and h["entry_id"] and h["score"] is not None
        a, b = h["highlights"][0]
        assert h["snippet"][a:b].lower() in ("quick", "brown", "fox")
    assert _search(service, "zzzz-nothing") == []


@pytest.mark.parametrize("method", ["list_sessions", "read_session", "resume_session"])
def test_an_unknown_machine_is_refused_clearly(service, method):
    params = {"machine": "other-box", "path": "x", "query": "x"}
    with pytest.raises(RpcFailure) as e:
        call(service, method, params)
    assert e.value.code == ErrorCode.AGENT_UNAVAILABLE and "machine 'other-box' is not known" in e.value.message


def test_search_on_an_unknown_machine_is_its_frame(service):
    """A machine that cannot be asked answers at once: a done frame, no hits, ``unavailable`` and the reason."""
    frames: list[dict] = []

    async def go():
        service.senders["c1"] = lambda data: frames.append(orjson.loads(data)) or True
        answer = await service.dispatch("search", {"query": "fox", "machine": "other-box"}, "c1", "127.0.0.1")
        for _ in range(200):
            if frames:
                break
            await asyncio.sleep(0.02)
        return answer

    answer = asyncio.run(go())
    assert answer["machines"] == ["other-box"]
    (frame,) = frames
    assert frame["machine"] == "other-box" and frame["done"] and frame["hits"] == [] and frame["unavailable"]
    assert "not known" in frame["error"]


def test_search_asks_every_machine_a_service_registered(service):
    """Without ``machine``: the own machine and every registered machine, online or not (one frame each)."""
    book = service.machines.book
    book.register("alpha", MachineFacts(), None, "conn-a", 1.0, "secret-a")
    book.register("beta", MachineFacts(), None, "conn-b", 1.0, "secret-b")
    book.connection_closed("conn-b", 2.0)  # beta is offline now, still listed
    assert service.sessions.search_machines(None) == [own_machine({}), "alpha", "beta"]


def test_paths_outside_the_session_dirs_are_refused(service, tmp_path, home):
    call(service, "list_sessions", {})
    for raw in (str(tmp_path / "outside.jsonl"), "/etc/passwd", "relative.jsonl", "0" * 24,
                str(home / ".pi" / "agent" / "sessions" / ".." / ".." / ".." / ".." / "outside.jsonl")):  # fmt: skip
        with pytest.raises(RpcFailure) as e:
            call(service, "read_session", {"path": raw})
        assert e.value.code == ErrorCode.NOT_FOUND


def test_bad_queries_are_clear_errors(service):
    for q in ("   ", "*", '"'):
        with pytest.raises(RpcFailure) as e:
            call(service, "search", {"query": q})
        assert e.value.code == ErrorCode.INVALID_PARAMS and "query" in e.value.message


def test_a_deleted_file_leaves_the_list_and_the_results(service, home):
    listed = call(service, "list_sessions", {})["sessions"]
    gone = next(s for s in listed if s["name"] == "Fixture session" and "0.73.1" in s["path"])
    assert any(h["path"] == gone["path"] for h in _search(service, "zebras"))
    Path(gone["path"]).unlink()
    service.sessions.store._last_scan = -1e9  # look again now
    assert gone["id"] not in {s["id"] for s in call(service, "list_sessions", {})["sessions"]}
    assert not any(h["path"] == gone["path"] for h in _search(service, "zebras"))


def test_a_session_file_over_the_size_limit_is_refused(service, monkeypatch):
    [s, *_] = call(service, "list_sessions", {})["sessions"]
    monkeypatch.setattr("pi_socket.sessions.store.MAX_SESSION_BYTES", 100)
    with pytest.raises(RpcFailure) as e:
        call(service, "read_session", {"path": s["id"]})
    assert e.value.code == ErrorCode.TOO_LARGE


def test_a_machine_tells_its_index_progress_only_for_itself(service):
    """machine_index_progress is pushed as index_progress under the machine the connection registered; any
    other connection is refused."""
    with pytest.raises(RpcFailure) as e:
        call(service, "machine_index_progress", {"files_done": 1, "files_total": 20}, conn="dashboard")
    assert e.value.code == ErrorCode.FORBIDDEN
    service.machines.book.register("alpha", MachineFacts(), None, "conn-a", 1.0, "secret-a")
    pushed: list = []
    service.hub.publish = pushed.extend  # type: ignore[method-assign]
    assert call(service, "machine_index_progress", {"files_done": 3, "files_total": 20}, conn="conn-a") == {
        "status": "ok"
    }
    [event] = pushed
    assert (event.event, event.machine, event.files_done, event.files_total, event.done) == (
        "index_progress", "alpha", 3, 20, False,
    )  # fmt: skip
