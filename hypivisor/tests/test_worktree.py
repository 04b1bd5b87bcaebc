"""hypivisor/worktree.py: branch names, where a worktree goes, and (with a real git) make, discard and remove."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from hypivisor import worktree
from pi_socket.bridge import gitinfo
from pi_socket.errors import HypiError
from pi_socket.protocol import NodeInfo

GOOD = ["feat", "feat/login", "fix-1.2", "a_b+c", "user/x/y", "v2"]
BAD = [
    "", "-rm", "--force", "a b", "a..b", "a/", "/a", "a//b", ".hidden", "a/.b", "a.lock", "a/b.lock", "a.",
    "HEAD", "@", "a@{1}", "a~1", "a^", "a:b", "a?", "a*", "a[", "a\\b", "ä", "a\x00b", "a\nb", "x" * 101,
]  # fmt: skip


@pytest.mark.parametrize("name", GOOD)
def test_good_branch_names_pass(name):
    assert worktree.check_branch(name) == name


@pytest.mark.parametrize("name", BAD)
def test_bad_branch_names_are_refused_with_1005(name):
    with pytest.raises(worktree.WorktreeError) as err:
        worktree.check_branch(name)
    assert err.value.code == 1005 and err.value.message


def test_bad_names_are_refused_by_git_too_where_git_has_a_rule():
    """Every name accepted here is one git accepts (``git check-ref-format --branch``)."""
    for name in GOOD:
        assert subprocess.run(["git", "check-ref-format", "--branch", name], capture_output=True).returncode == 0


def test_worktree_dir_is_beside_the_repository():
    assert worktree.worktree_dir("/h/src/app", "feat/login") == "/h/src/app-worktrees/feat-login"
    assert worktree.worktree_dir("/h/src/app/", "x") == "/h/src/app-worktrees/x"


def test_start_folder_keeps_the_chosen_sub_folder():
    assert worktree.start_folder("/h/app", "/h/app", "/h/app-worktrees/x") == "/h/app-worktrees/x"
    assert worktree.start_folder("/h/app/pkg/a", "/h/app", "/h/w") == "/h/w/pkg/a"


def test_linked_info_names_the_main_tree_only_for_worktrees():
    assert gitinfo.linked_info("gitdir: /h/app/.git/worktrees/x\n", "/h/w", "../..\n") == "/h/app"
    assert gitinfo.linked_info("gitdir: ../.git/modules/sub", "/h/app/sub", None) is None  # a submodule
    assert gitinfo.linked_info("gitdir: /h/bare.git/worktrees/x", "/h/w", "../..") is None  # a bare repository


def test_agents_in_counts_active_agents_of_that_machine_at_or_below_the_path():
    def node(i, machine, cwd, status="active"):
        return NodeInfo(id=i, machine=machine, cwd=cwd, port=1, status=status)

    nodes = [node("a", "m", "/h/w/sub"), node("b", "other", "/h/w"), node("c", "m", "/h/w2"),
             node("d", "m", "/h/w", status="offline")]  # fmt: skip
    assert [n.id for n in worktree.agents_in(nodes, "m", "/h/w")] == ["a"]


# ------------------------------------------------------------------ with a real git
def git(cwd: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t"}  # fmt: skip
    return subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True, check=True).stdout


@pytest.fixture
def repo(tmp_path) -> tuple[Path, Path]:
    home = tmp_path / "home"
    app = home / "src" / "app"
    (app / "pkg").mkdir(parents=True)
    git(app, "init", "-q", "-b", "main")
    (app / "pkg" / "f.txt").write_text("x")
    git(app, "add", ".")
    git(app, "commit", "-qm", "one")
    return home.resolve(), app.resolve()


def branches(app: Path) -> list[str]:
    return git(app, "branch", "--format=%(refname:short)").split()


async def test_plan_create_and_discard_leave_nothing(repo):
    home, app = repo
    p = await worktree.plan(str(app / "pkg"), "feat/x", str(home))
    assert p.path == str(home / "src" / "app-worktrees" / "feat-x") and p.cwd == p.path + "/pkg"
    assert p.repo == str(app)
    async with worktree.prepared(p) as made:
        assert Path(made.cwd, "f.txt").read_text() == "x"
        assert gitinfo.linked_worktree(made.cwd) == (made.path, str(app))
        assert "feat/x" in branches(app)
    assert "feat/x" in branches(app)  # kept when the body succeeds
    with pytest.raises(RuntimeError):
        async with worktree.prepared(await worktree.plan(str(app), "other", str(home))):
            raise RuntimeError("pi did not start")
    assert "other" not in branches(app) and not (home / "src" / "app-worktrees" / "other").exists()
    assert "other" not in git(app, "worktree", "list")


@pytest.mark.parametrize(
    ("folder", "branch", "code"),
    [("app", "-x", 1005), ("app", "main", 1013), ("plain", "x", 1005), ("app", "a b", 1005)],
)
async def test_plan_refusals_create_nothing(repo, folder, branch, code):
    home, app = repo
    (home / "plain").mkdir()
    before = sorted(str(p) for p in home.rglob("*"))
    where = app if folder == "app" else home / folder
    with pytest.raises(worktree.WorktreeError) as err:
        await worktree.plan(str(where), branch, str(home))
    assert err.value.code == code
    assert sorted(str(p) for p in home.rglob("*")) == before


async def test_plan_refuses_an_existing_folder_and_a_repo_without_commit(repo):
    home, app = repo
    (home / "src" / "app-worktrees" / "taken").mkdir(parents=True)
    with pytest.raises(worktree.WorktreeError) as err:
        await worktree.plan(str(app), "taken", str(home))
    assert err.value.code == 1013
    empty = home / "empty"
    empty.mkdir()
    git(empty, "init", "-q")
    with pytest.raises(worktree.WorktreeError) as err:
        await worktree.plan(str(empty), "x", str(home))
    assert err.value.code == 1005 and "no commit" in err.value.message


async def test_a_repository_at_home_has_its_worktrees_outside_home_refused(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    git(home, "init", "-q")
    git(home, "commit", "-q", "--allow-empty", "-m", "x")
    with pytest.raises(worktree.WorktreeError) as err:
        await worktree.plan(str(home), "x", str(home))
    assert err.value.code == 1003


async def test_remove_refuses_dirty_unless_forced_and_keeps_the_branch_unless_asked(repo):
    home, app = repo
    async with worktree.prepared(await worktree.plan(str(app), "w1", str(home))) as made:
        pass
    Path(made.path, "new.txt").write_text("work")
    with pytest.raises(worktree.WorktreeError) as err:
        await worktree.remove(made.path, str(home))
    assert err.value.code == 1013 and Path(made.path, "new.txt").exists()
    done = await worktree.remove(made.path, str(home), force=True)
    assert done == {"path": made.path, "repo": str(app), "branch": "w1", "branch_deleted": False}
    assert not Path(made.path).exists() and "w1" in branches(app)
    assert not (home / "src" / "app-worktrees").exists()  # the empty parent goes too
    async with worktree.prepared(await worktree.plan(str(app), "w2", str(home))) as made:
        pass
    assert (await worktree.remove(made.path, str(home), delete_branch=True))["branch_deleted"] is True
    assert "w2" not in branches(app)


async def test_remove_refuses_what_is_not_a_linked_worktree(repo, tmp_path):
    home, app = repo
    for raw, code in ((str(app), 1005), (str(app / "pkg"), 1005), (str(tmp_path), 1003), ("nope", 1004)):
        with pytest.raises(HypiError) as err:
            await worktree.remove(raw, str(home), force=True)
        assert err.value.code == code, raw
    assert (app / ".git").is_dir()


def test_annotate_marks_repositories(repo):
    home, app = repo
    listing = {"path": str(home / "src"), "directories": [{"name": "app", "path": str(app)}]}
    (home / "src" / "plain").mkdir()
    listing["directories"].append({"name": "plain", "path": str(home / "src" / "plain")})
    out = worktree.annotate(listing)
    assert out["git"] is False and out["directories"][0]["git"] is True and "git" not in out["directories"][1]
    assert worktree.annotate({"path": str(app / "pkg"), "directories": []})["git"] is True
