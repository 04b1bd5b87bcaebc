"""Past sessions end to end (#22): sessions written by real ``pi -p`` runs (fake LLM) are listed, read and
searched through a real hypivisor's ``/ws``; ``resume_session`` starts ``pi --session <file>`` in tmux and that
pi continues the same file; resuming it again while it runs names the live agent, and ``fork: true`` starts
``pi --fork`` (a new file) instead of a second writer."""

from __future__ import annotations

import asyncio
import json
import os
import re
import time
from pathlib import Path

import pytest

from integration_tests.harness.hypivisor_proc import RegistryClient
from integration_tests.harness.pi_proc import pi_bin, pi_path_env

pytestmark = [pytest.mark.pi, pytest.mark.slow]


def run_print(start_pi, version: str, prompt: str, cwd: Path | None = None) -> None:
    pi = start_pi(version, mode="print", prompt=prompt, cwd=cwd)
    rc, out, err, _ = pi.wait(timeout=60)
    assert rc == 0, out + err


def session_files(agent: Path) -> list[Path]:
    return sorted((agent / "sessions").glob("*/*.jsonl"))


def hypivisor_for(hypivisor_factory, pi_home, version: str, tmp_path: Path, extra: dict | None = None):
    """A hypivisor whose HOME holds pi's folder and agent dir, with ``pi`` on its PATH being this version."""
    bindir = tmp_path / "bin"
    bindir.mkdir(exist_ok=True)
    if not (bindir / "pi").exists():
        (bindir / "pi").symlink_to(pi_bin(version))
    pi_env = {k: v for k, v in pi_home.env.items() if k.startswith("PI_")}
    path = pi_path_env(version, f"{bindir}:{os.environ['PATH']}")
    return hypivisor_factory(
        home=pi_home.root, env={**pi_env, "PATH": path, "HYPI_SPAWN_TIMEOUT": "40", **(extra or {})}
    )


async def search(c: RegistryClient, query: str, **params) -> list[dict]:
    answer = await c.call("search", {"query": query, **params})
    assert "result" in answer, answer
    frame = await c.event("search_results", timeout=20, query_id=answer["result"]["query_id"])
    assert frame["done"] and frame["error"] is None, frame
    return frame["hits"]


@pytest.mark.pi_smoke
async def test_list_read_and_search_sessions_of_real_pi_runs(hypivisor_factory, pi_home, start_pi, pi_version,
                                                             tmp_path):  # fmt: skip
    run_print(start_pi, pi_version, "tell me about the narwhal migration")
    other = pi_home.cwd / "other"
    other.mkdir()
    run_print(start_pi, pi_version, "and now the walrus colony", cwd=other)
    files = session_files(pi_home.agent)
    assert len(files) == 2
    hv = hypivisor_for(hypivisor_factory, pi_home, pi_version, tmp_path)
    async with await RegistryClient.connect(hv) as c:
        listed = (await c.call("list_sessions", {}))["result"]
        sessions = listed["sessions"]
        assert [s["first_prompt"] for s in sessions] == [
            "and now the walrus colony",
            "tell me about the narwhal migration",
        ]
        assert {s["path"] for s in sessions} == {str(f.resolve()) for f in files}
        assert all(s["message_count"] == 2 and s["model"] == "fake/fake-model" for s in sessions)
        by_folder = (await c.call("list_sessions", {"cwd": str(other)}))["result"]["sessions"]
        assert [s["first_prompt"] for s in by_folder] == ["and now the walrus colony"]

        page = (await c.call("read_session", {"machine": sessions[0]["machine"], "path": sessions[0]["id"]}))["result"]
        assert [m["role"] for m in page["messages"]] == ["user", "assistant"]
        assert "walrus colony" in page["messages"][1]["content"][0]["text"]

        async with await RegistryClient.connect(hv) as bystander:
            hits = await search(c, "narwhal")
            await bystander.call("list_nodes", {})  # a round trip: anything sent to it before has arrived
            assert not [e for e in bystander.events if e["event"] == "search_results"]  # only the asker gets them
        assert {h["path"] for h in hits} == {sessions[1]["path"]} and len(hits) == 2
        assert [h["role"] for h in await search(c, "narwhal", roles=["user"])] == ["user"]
        assert len(await search(c, '"walrus colony"')) == 2 and await search(c, '"colony walrus"') == []
        assert len(await search(c, "narwh*", roles=["user"])) == 1
        hit = (await search(c, "narwhal", roles=["user"]))[0]
        opened = (await c.call("read_session", {"path": hit["id"], "entry_id": hit["entry_id"]}))["result"]
        assert hit["entry_id"] in opened["entry_ids"]

        # pi appends: the next list and search see the new turn without a restart
        run_print(start_pi, pi_version, "a third run about the beluga", cwd=other)
        await asyncio.sleep(1.2)
        assert len((await c.call("list_sessions", {}))["result"]["sessions"]) == 3
        assert len(await search(c, "beluga")) == 2

        refused = await c.call("read_session", {"path": str(pi_home.root / "home" / "x.jsonl")})
        assert refused["error"]["code"] == 1006
        other_machine = await c.call("list_sessions", {"machine": "nowhere-box"})
        assert "is not known" in other_machine["error"]["message"]


async def test_resume_continues_the_same_file_and_a_live_session_offers_the_agent_or_a_fork(
    hypivisor_factory, pi_home, start_pi, pi_version, tmp_path, tmux_env, agent_client
):
    run_print(start_pi, pi_version, "the first run about otters")
    [original] = session_files(pi_home.agent)
    hv = hypivisor_for(hypivisor_factory, pi_home, pi_version, tmp_path, tmux_env)
    async with await RegistryClient.connect(hv) as c:
        [s] = (await c.call("list_sessions", {}))["result"]["sessions"]
        resumed = await c.call("resume_session", {"machine": s["machine"], "path": s["id"]}, timeout=60)
        assert "result" in resumed, resumed
        r = resumed["result"]
        assert not r["live"] and r["tmux_session"] and r["session_file"] == str(original.resolve())
        node = r["node"]
        # the resumed pi writes the same file
        agent = agent_client(f"ws://127.0.0.1:{node['port']}")
        agent.wait_for(lambda f: f["type"] == "init_state", timeout=30)
        agent.send({"type": "prompt", "id": "p1", "text": "continuing with the sea otters"})
        deadline = time.monotonic() + 40
        while "continuing with the sea otters" not in original.read_text() and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        assert "continuing with the sea otters" in original.read_text()
        assert len(session_files(pi_home.agent)) == 1
        # the roster knows which file it writes (heartbeat); resuming again names that agent, starts nothing
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            nodes = (await c.call("list_nodes", {}))["result"]["nodes"]
            if any(n.get("session_file") == str(original.resolve()) for n in nodes):
                break
            await asyncio.sleep(0.5)
        again = (await c.call("resume_session", {"path": s["id"]}, timeout=60))["result"]
        assert again["live"] and again["node_id"] == node["id"]
        listed = (await c.call("list_sessions", {}))["result"]["sessions"]
        assert listed[0]["live_node_id"] == node["id"]
        # a fork is a new pi on a new file; the original keeps one writer
        forked = await c.call("resume_session", {"path": s["id"], "fork": True}, timeout=60)
        assert "result" in forked, forked
        f = forked["result"]
        assert f["forked"] and f["node_id"] != node["id"]
        fork_agent = agent_client(f"ws://127.0.0.1:{f['node']['port']}")
        init = fork_agent.wait_for(lambda x: x["type"] == "init_state", timeout=30)
        assert init.get("session_file") and init["session_file"] != str(original.resolve())
        fork_agent.send({"type": "prompt", "id": "p2", "text": "only in the fork"})
        deadline = time.monotonic() + 40
        while len(session_files(pi_home.agent)) < 2 and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        await asyncio.sleep(1)
        assert "only in the fork" not in original.read_text()
        assert any("only in the fork" in p.read_text() for p in session_files(pi_home.agent) if p != original)


async def test_sessions_in_the_session_dir_env_and_setting_are_found(hypivisor_factory, pi_home, start_pi, pi_version,
                                                                    tmp_path):  # fmt: skip
    """pi writes where PI_CODING_AGENT_SESSION_DIR or the sessionDir setting says; those files are listed too."""
    run_print(start_pi, pi_version, "written to the default place")
    env_dir = pi_home.root / "env-sessions"
    pi = start_pi(pi_version, mode="print", prompt="written under the env dir",
                  env={"PI_CODING_AGENT_SESSION_DIR": str(env_dir)})  # fmt: skip
    assert pi.wait(timeout=60)[0] == 0
    setting_dir = pi_home.root / "setting-sessions"
    settings = json.loads((pi_home.agent / "settings.json").read_text())
    (pi_home.agent / "settings.json").write_text(json.dumps({**settings, "sessionDir": str(setting_dir)}))
    run_print(start_pi, pi_version, "written under the setting dir")
    assert list(env_dir.rglob("*.jsonl")) and list(setting_dir.rglob("*.jsonl"))
    hv = hypivisor_for(hypivisor_factory, pi_home, pi_version, tmp_path, {"PI_CODING_AGENT_SESSION_DIR": str(env_dir)})
    want = {"written to the default place", "written under the env dir", "written under the setting dir"}
    async with await RegistryClient.connect(hv) as c:
        deadline = time.monotonic() + 30  # the index is built in the background after start (slow on a busy machine)
        while True:
            prompts = {s["first_prompt"] for s in (await c.call("list_sessions", {}))["result"]["sessions"]}
            if prompts == want or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)
        assert prompts == want


def shift_times(path: Path, days: float) -> None:
    """Every ISO timestamp in a session file moved ``days`` back (pi reads them as written; it checks nothing)."""
    from datetime import datetime, timedelta

    def back(m: re.Match[str]) -> str:
        when = datetime.fromisoformat(m.group(1).replace("Z", "+00:00")) - timedelta(days=days)
        return '"timestamp":"' + when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z" + '"'

    path.write_text(re.sub(r'"timestamp":"([0-9T:.\-]+Z)"', back, path.read_text()))


async def test_date_filters_on_real_pi_sessions(hypivisor_factory, pi_home, start_pi, pi_version, tmp_path):
    """list_sessions filters on last activity and search on each entry's time ([since, until), unix seconds);
    since after until, or a time that is not a number, is -32602 and nothing is asked of the index."""
    run_print(start_pi, pi_version, "the otter of last month")
    old = session_files(pi_home.agent)[0]
    shift_times(old, 40)
    run_print(start_pi, pi_version, "the otter of today")
    new = next(p for p in session_files(pi_home.agent) if p != old)
    hv = hypivisor_for(hypivisor_factory, pi_home, pi_version, tmp_path)
    week = time.time() - 7 * 86400
    async with await RegistryClient.connect(hv) as c:
        everything = (await c.call("list_sessions", {}))["result"]["sessions"]
        assert len(everything) == 2
        recent = (await c.call("list_sessions", {"since": week}))["result"]["sessions"]
        assert [s["path"] for s in recent] == [str(new.resolve())]
        older = (await c.call("list_sessions", {"until": week, "limit": 1}))["result"]
        assert [s["path"] for s in older["sessions"]] == [str(old.resolve())] and older["sessions"][0][
            "modified"
        ] < week
        both = (await c.call("list_sessions", {"since": week - 60 * 86400, "until": time.time() + 60}))["result"]
        assert len(both["sessions"]) == 2

        assert {h["path"] for h in await search(c, "otter", since=week)} == {str(new.resolve())}
        old_hits = await search(c, "otter", until=week)
        assert {h["path"] for h in old_hits} == {str(old.resolve())} and all(h["ts"] < week for h in old_hits)
        assert await search(c, "otter", since=week + 3 * 86400, until=week + 4 * 86400) == []

        for method, params in (
            ("list_sessions", {"since": week, "until": week - 1}),
            ("list_sessions", {"since": "last week"}),
            ("search", {"query": "otter", "since": week, "until": week - 1}),
            ("search", {"query": "otter", "until": -5}),
        ):
            refused = await c.call(method, params)
            assert refused.get("error", {}).get("code") == -32602, (method, params, refused)
        assert "since is after until" in (await c.call("list_sessions", {"since": 2, "until": 1}))["error"]["message"]
