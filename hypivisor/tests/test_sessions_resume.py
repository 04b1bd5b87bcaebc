"""resume_session's rules without starting pi: a live writer is named (nothing spawned), a resume still starting
refuses a second one, fork reaches pi as --fork the same safe way as --session, templates must opt in; and the
index's progress events while a build runs."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path

import pytest

from hypivisor import spawn_cmd
from hypivisor.config import Config
from hypivisor.service import RpcFailure, Service
from pi_socket.protocol import ErrorCode, IndexProgressEvent, RegisterParams

FIXTURE = sorted((Path(__file__).resolve().parents[2] / "pi_socket/tests/fixtures/sessions/1.6.0").glob("*.jsonl"))[0]


@pytest.fixture
def home(tmp_path) -> Path:
    h = tmp_path / "home"
    (h / "project").mkdir(parents=True)
    d = h / ".pi" / "agent" / "sessions" / "--project--"
    d.mkdir(parents=True)
    text = FIXTURE.read_text().replace('"cwd":"/home/user/project"', json.dumps({"cwd": str(h / "project")})[1:-1])
    (d / FIXTURE.name).write_text(text)
    return h


def session_path(home: Path) -> str:
    return str(next((home / ".pi" / "agent" / "sessions").glob("*/*.jsonl")).resolve())


def make(home: Path, **config) -> Service:
    return Service(Config(host="127.0.0.1", **config), env={"HOME": str(home), "PATH": "/usr/bin:/bin"})


def test_a_live_writer_is_named_and_nothing_starts(home):
    svc = make(home)
    path = session_path(home)

    async def go():
        params = RegisterParams(id="n-live", machine="m", cwd=str(home / "project"), port=4000, session_file=path)
        svc.registry.register(params, "conn-1", "127.0.0.1", 0.0, "s" * 32)
        svc.spawner.admit = lambda: pytest.fail("a live session must not spawn")  # type: ignore[method-assign]
        return await svc.dispatch("resume_session", {"path": path}, "c1", "127.0.0.1")

    answer = asyncio.run(go())
    assert answer["live"] and answer["node_id"] == "n-live" and answer["tmux_session"] is None
    svc.sessions.close()


def test_a_resume_still_starting_refuses_a_second_one(home):
    svc = make(home)
    path = session_path(home)
    started = asyncio.Event

    async def go():
        gate = started()
        calls = []

        async def slow_spawn(target, session_file, fork=False):
            calls.append((target.path, session_file, fork))
            await gate.wait()
            return {"node_id": "n1", "tmux_session": "t", "path": target.path, "node": {}}

        svc._spawn_admitted = slow_spawn  # type: ignore[method-assign]
        first = asyncio.create_task(svc.dispatch("resume_session", {"path": path}, "c1", "127.0.0.1"))
        await asyncio.sleep(0.2)
        with pytest.raises(RpcFailure) as e:
            await svc.dispatch("resume_session", {"path": path}, "c2", "127.0.0.1")
        assert e.value.code == ErrorCode.CONFLICT
        forked = asyncio.create_task(svc.dispatch("resume_session", {"path": path, "fork": True}, "c2", "127.0.0.1"))
        await asyncio.sleep(0.2)
        gate.set()
        return await first, await forked, calls

    first, forked, calls = asyncio.run(go())
    assert not first["live"] and first["session_file"] == path and forked["forked"]
    assert calls == [(str(home / "project"), path, False), (str(home / "project"), path, True)]
    svc.sessions.close()


def test_fork_reaches_pi_as_an_environment_value_like_session():
    env = {"PATH": "/bin", spawn_cmd.FORK_VAR: "1"}
    argv = spawn_cmd.tmux_argv("pi-x-abc", "/h/p;", env, ["pi"], session_file="/h/s $(x);")
    line = argv[argv.index("-c", 12) + 1]
    assert line == 'cd -- "$HYPI_SPAWN_DIR" && exec "$@" --fork "$HYPI_SPAWN_SESSION_FILE"'
    assert f"{spawn_cmd.SESSION_FILE_VAR}=/h/s $(x)\\;" in argv
    plain = spawn_cmd.tmux_argv("pi-x-abc", "/h/p", {"PATH": "/bin"}, ["pi"], session_file="/h/s")
    assert '--session "$HYPI_SPAWN_SESSION_FILE"' in plain[plain.index("-c", 12) + 1]


def test_templates_must_opt_in_to_resume_and_fork(home):
    path = session_path(home)
    only_resume = make(home, spawn_command='pi --session "$HYPI_SPAWN_SESSION_FILE"')
    with pytest.raises(RpcFailure) as e:
        asyncio.run(only_resume.dispatch("resume_session", {"path": path, "fork": True}, "c1", "127.0.0.1"))
    assert e.value.code == ErrorCode.SPAWN_FAILED and "fork" in e.value.message
    neither = make(home, spawn_command="pi")
    with pytest.raises(RpcFailure) as e:
        asyncio.run(neither.dispatch("resume_session", {"path": path}, "c1", "127.0.0.1"))
    assert e.value.code == ErrorCode.SPAWN_FAILED
    for s in (only_resume, neither):
        s.sessions.close()


def test_a_session_whose_folder_is_outside_home_is_not_resumed(home, tmp_path):
    f = Path(session_path(home))
    f.write_text(f.read_text().replace(str(home / "project"), str(tmp_path / "elsewhere")))
    svc = make(home)
    with pytest.raises(RpcFailure) as e:
        asyncio.run(svc.dispatch("resume_session", {"path": str(f)}, "c1", "127.0.0.1"))
    assert e.value.code == ErrorCode.PATH_OUTSIDE_HOME
    svc.sessions.close()


def test_a_build_pushes_index_progress_to_dashboards(home, monkeypatch):
    d = next((home / ".pi" / "agent" / "sessions").glob("*"))
    for i in range(30):
        shutil.copy(next(d.glob("*.jsonl")), d / f"copy-{i}.jsonl")
    svc = make(home)
    seen: list = []
    svc.hub.taps.append(seen.extend)
    monkeypatch.setattr("pi_socket.sessions.store.PROGRESS_EVERY", 0.01)
    monkeypatch.setattr("pi_socket.sessions.store.PAUSE", 0.5)
    monkeypatch.setattr("pi_socket.sessions.index.time.sleep", lambda s: __import__("time").sleep(0.02))
    asyncio.run(svc.sessions.refresh())
    progress = [e for e in seen if isinstance(e, IndexProgressEvent)]
    assert progress and progress[-1].done and progress[-1].files_done == progress[-1].files_total == 31
    assert all(e.machine == svc.sessions.machine for e in progress)
    seen.clear()
    asyncio.run(svc.sessions.refresh())  # nothing changed: silent
    assert not [e for e in seen if isinstance(e, IndexProgressEvent)]
    svc.sessions.close()
