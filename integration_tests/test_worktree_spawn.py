"""spawn_agent into a new git worktree (specs/machines.md, "Worktrees"), with a real git repository: on the
hypivisor's own machine and through a machine service, with a stub pi in tmux (fast) and with the pinned pi (its
bridge reports the worktree on the roster). A bad branch name creates nothing; a failed spawn removes the worktree
and its branch; ``remove_worktree`` refuses while an agent runs there and a dirty worktree unless ``force``."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path

from integration_tests.harness.hypivisor_proc import RegistryClient
from integration_tests.harness.machines import machines_fixture  # noqa: F401 - the `machines` fixture
from integration_tests.harness.pi_proc import pi_bin
from integration_tests.harness.spawn import NEEDS_TMUX, start, tmux

pytestmark = NEEDS_TMUX
REAL_PI = "0.73.1"  # the oldest pinned pi: the fastest to start


def git(cwd: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t"}  # fmt: skip
    return subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True, check=True).stdout


def make_repo(home: Path, name: str = "app") -> Path:
    app = home / name
    (app / "src").mkdir(parents=True)
    git(app, "init", "-q", "-b", "main")
    (app / "src" / "main.txt").write_text("hello")
    git(app, "add", ".")
    git(app, "commit", "-qm", "one")
    return app.resolve()


def branches(app: Path) -> list[str]:
    return git(app, "branch", "--format=%(refname:short)").split()


def tree(home: Path) -> list[str]:
    return sorted(str(p.relative_to(home)) for p in home.rglob("*") if ".git" not in p.parts)


def kill_stub(node_id: str) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(int(node_id.removeprefix("stub-")), signal.SIGKILL)


async def wait_inactive(dash: RegistryClient, node_id: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        nodes = (await dash.call("list_nodes"))["result"]["nodes"]
        if not any(n["id"] == node_id and n["status"] == "active" for n in nodes):
            return
        assert time.monotonic() < deadline, f"{node_id} still active"
        await asyncio.sleep(0.1)


async def test_spawn_into_a_new_worktree_on_the_hypivisors_machine(hypivisor_factory, env_dirs):
    home, _, tmuxdir = env_dirs
    app = make_repo(home)
    hv = start(hypivisor_factory, env_dirs, token="tok-wt", PI_STUB_MODE="register")
    async with await RegistryClient.connect(hv) as dash:
        await dash.event("init")
        listing = (await dash.call("list_directories", {}))["result"]
        assert [d.get("git") for d in listing["directories"]] == [True] and listing["git"] is False
        assert (await dash.call("list_directories", {"path": "app/src"}))["result"]["git"] is True

        before = tree(home)
        for bad, code in (("-x", 1005), ("a b", 1005), ("a..b", 1005), ("main", 1013)):
            err = (await dash.call("spawn_agent", {"path": "app", "worktree": {"branch": bad}}))["error"]
            assert err["code"] == code, (bad, err)
        err = await dash.call("spawn_agent", {"path": "app", "new_folder": "x", "worktree": {"branch": "ok"}})
        assert err["error"]["code"] == -32602
        assert tree(home) == before and branches(app) == ["main"]

        res = await dash.call("spawn_agent", {"path": "app/src", "worktree": {"branch": "feat/login"}}, timeout=40)
        assert "result" in res, res
        wt = home.resolve() / "app-worktrees" / "feat-login"
        assert res["result"]["path"] == str(wt / "src") and res["result"]["node"]["cwd"] == str(wt / "src")
        assert (wt / "src" / "main.txt").read_text() == "hello" and "feat/login" in branches(app)
        pane = tmux(tmuxdir, "display-message", "-p", "-t", res["result"]["tmux_session"], "#{pane_current_path}")
        assert pane.stdout.strip() == str(wt / "src")
        node_id = res["result"]["node_id"]

        busy = (await dash.call("remove_worktree", {"path": str(wt)}))["error"]
        assert busy["code"] == 1011 and wt.is_dir()
        kill_stub(node_id)
        await wait_inactive(dash, node_id)
        (wt / "notes.txt").write_text("unsaved")
        dirty = (await dash.call("remove_worktree", {"path": str(wt)}))["error"]
        assert dirty["code"] == 1013 and (wt / "notes.txt").exists()
        done = (await dash.call("remove_worktree", {"path": str(wt), "force": True}))["result"]
        assert done == {"path": str(wt), "repo": str(app), "branch": "feat/login", "branch_deleted": False}
        assert not wt.exists() and "feat/login" in branches(app)  # the branch stays unless asked
        assert not (home / "app-worktrees").exists()
        assert (await dash.call("remove_worktree", {"path": str(app)}))["error"]["code"] == 1005  # never the main


async def test_a_failed_spawn_removes_its_worktree_and_branch(hypivisor_factory, env_dirs):
    home, _, _ = env_dirs
    app = make_repo(home)
    hv = start(hypivisor_factory, env_dirs, PI_STUB_MODE="silent", HYPI_SPAWN_TIMEOUT="2")
    async with await RegistryClient.connect(hv) as dash:
        before = tree(home)
        err = (await dash.call("spawn_agent", {"path": "app", "worktree": {"branch": "doomed"}}, timeout=30))["error"]
        assert err["code"] == 1010
        assert tree(home) == before and branches(app) == ["main"]
        assert "doomed" not in git(app, "worktree", "list")


async def test_worktree_spawn_and_removal_through_a_machine_service(hypivisor_factory, machines):
    hv = hypivisor_factory(token="tok-m", env={"PI_SOCKET_MACHINE": "hub"})
    beta = machines(hv, "beta")
    app = make_repo(beta.home)
    beta.start()
    async with await RegistryClient.connect(hv) as dash:
        deadline = time.monotonic() + 20
        while not any(
            m["name"] == "beta" and m["online"] for m in (await dash.call("list_machines"))["result"]["machines"]
        ):
            assert time.monotonic() < deadline, beta.stderr()
            await asyncio.sleep(0.1)
        listing = (await dash.call("list_directories", {"machine": "beta"}))["result"]
        assert [(d["name"], d.get("git")) for d in listing["directories"]] == [("app", True)]
        before = tree(beta.home)
        err = await dash.call("spawn_agent", {"machine": "beta", "path": "app", "worktree": {"branch": "-bad"}})
        assert err["error"]["code"] == 1005 and tree(beta.home) == before

        res = await dash.call("spawn_agent", {"machine": "beta", "path": "app", "worktree": {"branch": "b/1"}},
                              timeout=40)  # fmt: skip
        assert "result" in res, (res, beta.stderr()[-2000:])
        wt = beta.home.resolve() / "app-worktrees" / "b-1"
        node = res["result"]["node"]
        assert node["machine"] == "beta" and node["cwd"] == str(wt) and "b/1" in branches(app)
        assert (await dash.call("remove_worktree", {"machine": "beta", "path": str(wt)}))["error"]["code"] == 1011
        kill_stub(node["id"])
        await wait_inactive(dash, node["id"])
        done = await dash.call("remove_worktree", {"machine": "beta", "path": str(wt), "delete_branch": True})
        assert done["result"]["branch_deleted"] is True, done
        assert not wt.exists() and branches(app) == ["main"]
        # another machine's paths are that machine's: the hub has no such worktree
        assert (await dash.call("remove_worktree", {"path": str(wt)}))["error"]["code"] in (1003, 1004)


def test_real_pi_in_a_worktree_is_listed_with_it(hypivisor_factory, pi_home, fake_llm, tmp_path):
    """The pinned pi (shim installed) spawned into a new worktree: its bridge reports ``worktree`` and
    ``worktree_of`` on the roster, which is how Pi-DE lists the worktree with the agent."""
    bindir, tmuxdir = tmp_path / "bin", tmp_path / "tmux"
    bindir.mkdir()
    tmuxdir.mkdir()
    (bindir / "pi").symlink_to(pi_bin(REAL_PI))
    app = make_repo(pi_home.home)
    pi_env = {k: v for k, v in pi_home.env.items() if k.startswith("PI_")}
    hv = hypivisor_factory(home=pi_home.home, env={**pi_env, "TMUX_TMPDIR": str(tmuxdir), "HYPI_SPAWN_TIMEOUT": "40",
                                                    "PATH": f"{bindir}:{os.environ['PATH']}"})  # fmt: skip

    async def run() -> None:
        async with await RegistryClient.connect(hv) as dash:
            res = await dash.call("spawn_agent", {"path": "app", "worktree": {"branch": "agent-1"}}, timeout=70)
            assert "result" in res, res
            node = res["result"]["node"]
            wt = str(pi_home.home.resolve() / "app-worktrees" / "agent-1")
            assert node["cwd"] == wt and node["git_branch"] == "agent-1"
            assert node["worktree"] == wt and node["worktree_of"] == str(app)
            assert (await dash.call("remove_worktree", {"path": wt}))["error"]["code"] == 1011
            tmux(tmuxdir, "kill-session", "-t", f"={res['result']['tmux_session']}")
            await wait_inactive(dash, node["id"], timeout=30)
            assert "result" in await dash.call("remove_worktree", {"path": wt})
            assert not Path(wt).exists()

    try:
        asyncio.run(run())
    finally:
        subprocess.run(["tmux", "kill-server"], env={**os.environ, "TMUX_TMPDIR": str(tmuxdir)}, capture_output=True)
