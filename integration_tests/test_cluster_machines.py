"""Cluster mode: every machine visible and usable from every hypivisor (specs/cluster.md §12, specs/machines.md).

Real ``python -m hypivisor --nats …`` processes on the 3-node NATS fixture, real machine services
(``python -m pi_socket serve`` with their own ``PI_SOCKET_MACHINE``, ``HOME``, runtime dir, tmux server, session
dir) connected to hypivisor A, and a dashboard on hypivisor B:

* B lists the machine connected to A (``hv`` = A) and A's own machine, and gets ``machine_joined``;
* through B: ``list_directories`` (the machine's home; its refusal 1003 passes through; an unknown machine 1012),
  ``list_sessions`` / ``read_session`` of the machine's session file, a ``search`` whose frames arrive for B's own
  machine, A's own machine and the machine on A (the hit in that one), a spawn in a new worktree (a stub pi in the
  machine's tmux) that registers on A and is on B's roster when the answer comes, ``remove_worktree`` (1011 while
  its agent runs, then removed), ``resume_session`` of the session; a machine's index progress told to A;
* a service that is not the machine (no secret) cannot take its name on B;
* SIGKILL of A: the machine and A's own machine leave B's list with A's lease; a machine whose ``HYPIVISOR_WS`` is
  ``A,B`` is B's own within 2 s instead;
* three hypivisors: a machine known only from an agent registered on B is listed by A and C too (``machine_joined``
  on A) and leaves with it; a machine whose service is on B, with agents on A and B, counts both everywhere.

Every wait is bounded; everything listens on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from integration_tests.harness.hypivisor_proc import HypivisorProc, RegistryClient, free_port, node_params
from integration_tests.harness.machines import (
    Machine,
    machines_fixture,  # noqa: F401 - the `machines` fixture
)
from integration_tests.harness.spawn import NEEDS_TMUX

TOKEN = "cluster-test-token"
LEASE_TTL = 2.0
SESSION = (Path(__file__).parents[1] / "pi_socket/tests/fixtures/sessions/0.73.1/"
           "2026-12-06T18-02-08-194Z_01a24c85-35c2-7612-bc10-79c8f94530c4.jsonl")  # fmt: skip
_sites = itertools.count(1)


def start_pair(nats_cluster: Any, hypivisor_factory: Callable[..., HypivisorProc],
               names: tuple[str, ...] = ("hub-a", "hub-b")) -> tuple[HypivisorProc, ...]:  # fmt: skip
    site = f"hm{next(_sites)}x{int(time.time()) % 100000}"  # a fresh roster per test (the NATS cluster is shared)
    urls = nats_cluster.urls
    made = []
    for i, name in enumerate(names):
        own_first = urls[i % len(urls) :] + urls[: i % len(urls)]
        made.append(hypivisor_factory(token=TOKEN, args=["--nats", ",".join(own_first)],
                                      env={"HYPI_NATS_SITE": site, "HYPI_NATS_LEASE_TTL": str(LEASE_TTL),
                                           "PI_SOCKET_MACHINE": name}))  # fmt: skip
    return tuple(made)


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=30, check=True,
                          env={**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.invalid",
                               "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.invalid"}).stdout  # fmt: skip


def make_repo(app: Path) -> Path:
    app.mkdir()
    git(app, "init", "-q", "-b", "main")
    (app / "main.txt").write_text("hello")
    git(app, "add", ".")
    git(app, "commit", "-qm", "one")
    return app.resolve()


async def machines_on(dash: RegistryClient, check: Callable[[dict[str, dict]], bool], timeout: float, what: str,
                      step: float = 0.05) -> tuple[dict[str, dict], float]:  # fmt: skip
    """Poll ``list_machines`` until ``check`` holds (bounded); the machines by name and the time it took."""
    t0 = time.monotonic()
    while True:
        found = {m["name"]: m for m in (await dash.call("list_machines"))["result"]["machines"]}
        if check(found):
            return found, time.monotonic() - t0
        assert time.monotonic() - t0 < timeout, f"timed out waiting for {what}: {found}"
        await asyncio.sleep(step)


async def search_frames(dash: RegistryClient, query: str, timeout: float = 30.0) -> dict[str, dict]:
    answer = await dash.call("search", {"query": query})
    assert "result" in answer, answer
    qid, machines = answer["result"]["query_id"], answer["result"]["machines"]
    frames: dict[str, dict] = {}
    while len(frames) < len(machines):
        ev = await dash.event("search_results", timeout=timeout, query_id=qid)
        frames[ev["machine"]] = ev
    return frames


@NEEDS_TMUX
async def test_a_machine_on_one_hypivisor_is_listed_and_used_through_another(
    nats_cluster: Any, hypivisor_factory: Callable[..., HypivisorProc], machines: Callable[..., Machine]
) -> None:
    a, b = start_pair(nats_cluster, hypivisor_factory)
    alpha = machines(a, "alpha")
    alpha.env["PI_CODING_AGENT_SESSION_DIR"] = str(alpha.home / "sessions")
    (alpha.home / "sessions").mkdir()
    (alpha.home / "work").mkdir()
    work = str((alpha.home / "work").resolve())  # the session was made there (it is resumed there)
    text = SESSION.read_text().replace('"cwd":"/home/user/project"', '"cwd":' + json.dumps(work), 1)
    (alpha.home / "sessions" / SESSION.name).write_text(text)
    (alpha.home / "only-on-alpha").mkdir()
    repo = make_repo(alpha.home / "app")
    async with await RegistryClient.connect(b) as dash, await RegistryClient.connect(a) as dash_a:
        await dash.event("init")
        alpha.start()
        joined = await dash.event("machine_joined", timeout=20)
        while joined["machine"]["name"] != "alpha":
            joined = await dash.event("machine_joined", timeout=20)
        hv_a = joined["machine"]["hv"]
        assert joined["machine"]["online"] and joined["machine"]["service"] and hv_a
        found, _ = await machines_on(dash, lambda f: "alpha" in f and "hub-a" in f, 10, "alpha and hub-a on B")
        assert found["hub-b"]["own"] and "hv" not in found["hub-b"]
        assert found["hub-a"]["hv"] == hv_a and not found["hub-a"]["own"] and found["hub-a"]["online"]
        assert found["alpha"]["home"] == str(alpha.home.resolve()) and found["alpha"]["tmux"] is True
        mine = {m["name"]: m for m in (await dash_a.call("list_machines"))["result"]["machines"]}
        assert "hv" not in mine["alpha"] and "hv" in mine["hub-b"]  # A's own view: alpha is its own

        # browsing through B: the machine's home, its refusals, an unknown machine
        listing = (await dash.call("list_directories", {"machine": "alpha"}))["result"]
        assert listing["home"] == str(alpha.home.resolve())
        assert "only-on-alpha" in [d["name"] for d in listing["directories"]]
        err = (await dash.call("list_directories", {"machine": "alpha", "path": "/etc"}))["error"]
        assert err["code"] == 1003, err
        err = (await dash.call("list_directories", {"machine": "nowhere"}))["error"]
        assert err["code"] == 1012, err
        hub_a = (await dash.call("list_directories", {"machine": "hub-a"}))["result"]
        assert hub_a["home"] == str(a.home.resolve())  # A's own machine, answered by A

        # past sessions of the machine on A, through B
        deadline = time.monotonic() + 20
        while not (
            sessions := (await dash.call("list_sessions", {"machine": "alpha"}, timeout=20))["result"]["sessions"]
        ):
            assert time.monotonic() < deadline, "alpha's session never listed through B"
            await asyncio.sleep(0.2)
        assert sessions[0]["machine"] == "alpha"
        read = await dash.call("read_session", {"machine": "alpha", "path": sessions[0]["path"]}, timeout=20)
        assert "result" in read, read
        assert "hello world from the fixture" in str(read["result"])
        frames = await search_frames(dash, "fixture")
        assert set(frames) >= {"hub-b", "hub-a", "alpha"}, frames
        assert frames["alpha"]["hits"] and not frames["alpha"]["unavailable"], frames["alpha"]
        assert frames["hub-a"]["error"] is None and frames["hub-b"]["error"] is None

        # a spawn through B on the machine on A, in a new worktree: the agent registers on A, and is on B's roster
        # when B answers
        res = await dash.call("spawn_agent", {"machine": "alpha", "path": "app", "worktree": {"branch": "b/1"}},
                              timeout=60)  # fmt: skip
        assert "result" in res, (res, alpha.stderr())
        node_id = res["result"]["node_id"]
        wt = str(alpha.home.resolve() / "app-worktrees" / "b-1")
        assert res["result"]["node"]["machine"] == "alpha" and res["result"]["tmux_session"]
        assert res["result"]["path"] == wt and "b/1" in git(repo, "branch")
        assert (
            res["result"]["node"]["hv"] == hv_a
            and res["result"]["node"]["tmux_session"] == res["result"]["tmux_session"]
        )
        nodes = {n["id"]: n for n in (await dash.call("list_nodes"))["result"]["nodes"]}
        assert node_id in nodes and nodes[node_id]["hv"] == hv_a, nodes
        assert alpha.tmux("has-session", "-t", res["result"]["tmux_session"]).returncode == 0
        found, _ = await machines_on(dash, lambda f: f["alpha"]["agents"] == 1, 10, "alpha's agent counted on B")
        # the worktree through B: refused while its agent runs (A's roster), removed once it is gone
        err = (await dash.call("remove_worktree", {"machine": "alpha", "path": wt}))["error"]
        assert err["code"] == 1011, err
        os.kill(res["result"]["node"]["pid"], signal.SIGKILL)
        deadline = time.monotonic() + 10
        while (done := await dash.call("remove_worktree", {"machine": "alpha", "path": wt, "delete_branch": True},
                                       timeout=20)).get("error", {}).get("code") == 1011:  # fmt: skip
            assert time.monotonic() < deadline, "the stopped agent never left A's roster"
            await asyncio.sleep(0.1)
        assert done["result"]["branch_deleted"] is True, done
        assert not Path(wt).exists() and "b/1" not in git(repo, "branch")

        # a past session of the machine on A resumed through B: pi starts there, in the session's folder
        resumed = await dash.call("resume_session", {"machine": "alpha", "path": sessions[0]["path"]}, timeout=60)
        assert "result" in resumed, (resumed, alpha.stderr())
        assert resumed["result"]["live"] is False and resumed["result"]["node"]["cwd"] == work
        assert resumed["result"]["node"]["hv"] == hv_a

        # a machine's index progress, told to A, reaches B's dashboards
        async with await RegistryClient.connect(a) as gamma:
            assert "result" in await gamma.call("register_machine", {"name": "gamma"})
            await machines_on(dash, lambda f: "gamma" in f, 10, "gamma on B")
            progress = {"files_done": 3, "files_total": 7, "done": False}
            assert "result" in await gamma.call("machine_index_progress", progress)
            ev = await dash.event("index_progress", timeout=10, machine="gamma")
            assert (ev["files_done"], ev["files_total"], ev["done"]) == (3, 7, False) and "hv" not in ev
        # its service gone, the machine is offline on B too, and a request for it is 1012
        left = await dash.event("machine_left", timeout=10)
        while left["name"] != "gamma":
            left = await dash.event("machine_left", timeout=10)
        assert left["machine"]["online"] is False and left["machine"]["hv"] == hv_a
        err = (await dash.call("list_directories", {"machine": "gamma"}))["error"]
        assert err["code"] == 1012 and "offline" in err["message"], err

        # a second service without alpha's secret cannot take the name on B
        async with await RegistryClient.connect(b) as rogue:
            err = (await rogue.call("register_machine", {"name": "alpha"}))["error"]
            assert err["code"] == 1002, err

        # A dies: its machines leave B's list with its lease
        pid = resumed["result"]["node"]["pid"]
        a.kill()
        _, took = await machines_on(dash, lambda f: "alpha" not in f and "hub-a" not in f, LEASE_TTL + 10,
                                    "A's machines gone from B")  # fmt: skip
        err = (await dash.call("list_directories", {"machine": "alpha"}))["error"]
        assert err["code"] == 1012
        os.kill(pid, signal.SIGKILL)
    print(f"\nSIGKILL of A -> its machines left B's list after {took:.2f} s (lease TTL {LEASE_TTL} s)")


async def test_a_machine_fails_over_and_is_the_other_hypivisors_own(
    nats_cluster: Any, hypivisor_factory: Callable[..., HypivisorProc], tmp_path: Path
) -> None:
    a, b = start_pair(nats_cluster, hypivisor_factory)
    beta = Machine(tmp_path, "beta", f"{a.ws_url},{b.ws_url}", token=TOKEN)
    try:
        async with await RegistryClient.connect(b) as dash:
            beta.start()
            found, _ = await machines_on(dash, lambda f: bool(f.get("beta", {}).get("hv")), 20, "beta on A, seen on B")
            assert found["beta"]["online"]
            a.kill()
            found, took = await machines_on(dash, lambda f: "beta" in f and "hv" not in f["beta"] and f["beta"]["online"],
                                            2.0, "beta on B itself")  # fmt: skip
            listing = (await dash.call("list_directories", {"machine": "beta"}))["result"]
            assert listing["home"] == str(beta.home.resolve())
            await asyncio.sleep(LEASE_TTL + 0.5)  # A's lease lapsed: beta (B's own now) stays
            found, _ = await machines_on(dash, lambda f: "beta" in f and f["beta"]["online"], 1, "beta still on B")
            assert "hub-a" not in found
    finally:
        beta.kill()
    print(f"\nSIGKILL of A -> beta was B's own machine {took:.2f} s later")


async def test_a_machine_that_moves_while_its_old_hypivisor_lives_is_answered_by_its_new_one(
    nats_cluster: Any, hypivisor_factory: Callable[..., HypivisorProc], tmp_path: Path
) -> None:
    a, b = start_pair(nats_cluster, hypivisor_factory)
    delta = Machine(tmp_path, "delta", a.ws_url, token=TOKEN)
    try:
        async with await RegistryClient.connect(a) as dash_a, await RegistryClient.connect(b) as dash_b:
            delta.start()
            await machines_on(dash_b, lambda f: bool(f.get("delta", {}).get("hv")), 20, "delta on A, seen on B")
            delta.kill()
            delta.env["HYPIVISOR_WS"] = b.ws_url  # the same machine (its secret) now on B; A lives on
            delta.start()
            found, _ = await machines_on(
                dash_a, lambda f: f.get("delta", {}).get("online") and bool(f["delta"].get("hv")), 20, "delta on B"
            )
            # every request through A goes to B (A no longer answers for it: never an "offline" from A)
            for _ in range(12):
                res = await dash_a.call("list_directories", {"machine": "delta"})
                assert res.get("result", {}).get("home") == str(delta.home.resolve()), res
            mine = await machines_on(dash_b, lambda f: "hv" not in f.get("delta", {"hv": 1}), 5, "delta B's own")
            assert mine[0]["delta"]["online"]
    finally:
        delta.kill()


async def machine_event(dash: RegistryClient, kind: str, name: str, timeout: float = 10.0) -> dict:
    """The next ``kind`` machine event about ``name`` (others skipped)."""
    deadline = time.monotonic() + timeout
    while True:
        ev = await dash.event(kind, timeout=max(0.01, deadline - time.monotonic()))
        if ev.get("name", (ev.get("machine") or {}).get("name")) == name:
            return ev


async def test_every_hypivisor_lists_every_machine_with_the_whole_rosters_agent_count(
    nats_cluster: Any, hypivisor_factory: Callable[..., HypivisorProc]
) -> None:
    a, b, c = start_pair(nats_cluster, hypivisor_factory, ("hub-a", "hub-b", "hub-c"))
    async with (
        await RegistryClient.connect(a) as dash_a,
        await RegistryClient.connect(b) as dash_b,
        await RegistryClient.connect(c) as dash_c,
        await RegistryClient.connect(b) as bridge_b,
        await RegistryClient.connect(a) as bridge_a,
    ):
        dashes = {"A": dash_a, "B": dash_b, "C": dash_c}
        await dash_a.event("init")
        # a pi bridge on B for a machine no service holds: every hypivisor lists it, with its one agent
        assert "result" in await bridge_b.call("register", node_params("x-1", free_port(), machine="m-x"))
        joined = await machine_event(dash_a, "machine_joined", "m-x")
        assert joined["machine"]["agents"] == 1 and not joined["machine"]["service"], joined
        for name, dash in dashes.items():
            found, _ = await machines_on(dash, lambda f: f.get("m-x", {}).get("agents") == 1, 10, f"m-x on {name}")
            assert found["m-x"]["online"] and "hv" not in found["m-x"]
        assert "result" in await bridge_b.call("deregister", {"id": "x-1"})
        left = await machine_event(dash_a, "machine_left", "m-x")
        assert left["machine"] is None, left
        for name, dash in dashes.items():
            await machines_on(dash, lambda f: "m-x" not in f, 10, f"m-x gone from {name}")

        # a machine whose service is on B, one agent's bridge on A and one on B: both counted on every hypivisor
        async with await RegistryClient.connect(b) as service_two:
            assert "result" in await service_two.call("register_machine", {"name": "two"})
            assert "result" in await bridge_a.call("register", node_params("two-a", free_port(), machine="two"))
            assert "result" in await bridge_b.call("register", node_params("two-b", free_port(), machine="two"))
            for name, dash in dashes.items():
                found, _ = await machines_on(dash, lambda f: f.get("two", {}).get("agents") == 2, 10,
                                             f"two with both agents on {name}")  # fmt: skip
                assert found["two"]["service"] and found["two"]["online"]
                assert ("hv" in found["two"]) == (name != "B"), (name, found["two"])
            # the agent on A leaves: the count follows on every hypivisor (and C's dashboard hears it)
            assert "result" in await bridge_a.call("deregister", {"id": "two-a"})
            updated = await machine_event(dash_c, "machine_updated", "two")
            while updated["machine"]["agents"] != 1:
                updated = await machine_event(dash_c, "machine_updated", "two")
            for name, dash in dashes.items():
                await machines_on(dash, lambda f: f.get("two", {}).get("agents") == 1, 10, f"two with 1 on {name}")
