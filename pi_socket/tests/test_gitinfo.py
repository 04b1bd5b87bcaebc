"""The branch a roster card shows, read from .git/HEAD without running git."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from pi_socket.bridge import gitinfo


@pytest.mark.parametrize(
    "head,branch",
    [
        ("ref: refs/heads/main\n", "main"),
        ("ref: refs/heads/feature/login-fix", "feature/login-fix"),
        ("0123456789abcdef0123456789abcdef01234567\n", "0123456"),
        ("ref: refs/remotes/origin/x", None),
        ("", None),
        ("garbage", None),
    ],
)
def test_branch_from_head(head, branch):
    assert gitinfo.branch_from_head(head) == branch


def test_a_subfolder_finds_the_repository_above_it(tmp_path):
    (tmp_path / "repo" / ".git").mkdir(parents=True)
    (tmp_path / "repo" / ".git" / "HEAD").write_text("ref: refs/heads/dev\n")
    (tmp_path / "repo" / "src" / "deep").mkdir(parents=True)
    assert gitinfo.git_branch(str(tmp_path / "repo" / "src" / "deep")) == "dev"
    assert gitinfo.git_branch(str(tmp_path)) is None


def test_a_worktree_gitdir_file_is_followed(tmp_path):
    (tmp_path / "main.git" / "worktrees" / "wt").mkdir(parents=True)
    (tmp_path / "main.git" / "worktrees" / "wt" / "HEAD").write_text("ref: refs/heads/wt-branch\n")
    (tmp_path / "wt").mkdir()
    (tmp_path / "wt" / ".git").write_text("gitdir: ../main.git/worktrees/wt\n")
    assert gitinfo.git_branch(str(tmp_path / "wt")) == "wt-branch"


def test_broken_or_missing_repositories_give_none(tmp_path):
    (tmp_path / "a" / ".git").mkdir(parents=True)  # no HEAD
    assert gitinfo.git_branch(str(tmp_path / "a")) is None
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / ".git").write_text("not a gitdir line")
    assert gitinfo.git_branch(str(tmp_path / "b")) is None
    assert gitinfo.git_branch(str(tmp_path / "missing" / "x")) is None


@pytest.mark.skipif(shutil.which("git") is None, reason="git not installed")
def test_agrees_with_git_itself(tmp_path):
    run = lambda *a: subprocess.run(["git", *a], cwd=tmp_path, check=True, capture_output=True)  # noqa: E731
    run("init", "-q", "-b", "topic/one")
    assert gitinfo.git_branch(str(tmp_path)) == "topic/one"
    run("-c", "user.email=a@b", "-c", "user.name=a", "commit", "-q", "--allow-empty", "-m", "x")
    run("checkout", "-q", "--detach")
    sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=tmp_path, capture_output=True, text=True).stdout
    assert gitinfo.git_branch(str(tmp_path)) == sha[:7]
