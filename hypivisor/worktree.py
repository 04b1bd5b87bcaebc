"""Spawning into a new git worktree on a new branch, and removing such a worktree on request.

Used by both places that start pi: the hypivisor for its own machine and a machine service for its machine, so a
worktree is made, placed and cleaned up the same way everywhere (specs/machines.md, "Worktrees").

* **Branch names** are checked here, before git runs (:func:`check_branch`): git's ``check-ref-format --branch``
  rules, a plain ASCII alphabet (letters, digits, ``. _ - / +``), no leading ``-`` (never an option to git),
  at most ``MAX_BRANCH_CHARS``. A bad name is a clear 1005 and creates nothing.
* **Where**: beside the main repository, ``<repo>-worktrees/<branch>`` with ``/`` in the branch written ``-``
  (:func:`worktree_dir`), e.g. ``~/src/app`` on ``feat/login`` → ``~/src/app-worktrees/feat-login``. It must be
  inside ``$HOME`` (1003) and must not exist yet (1013). pi starts in the same sub-folder of the new worktree as
  the folder that was chosen in the repository (its root when that sub-folder is not in the checkout).
* **A failed spawn leaves nothing**: :func:`prepared` removes the worktree and deletes the branch it created.
* **Removal** (:func:`remove`) only of a linked worktree (never a main working tree), inside ``$HOME``; a dirty one
  (``git status --porcelain`` not empty) is refused with 1013 unless ``force``; the branch stays unless
  ``delete_branch`` (``git branch -d``, ``-D`` with ``force``). Whether an agent still runs there is the caller's
  check (the hypivisor's roster).

Pure parts: :func:`check_branch`, :func:`dir_name`, :func:`worktree_dir`, :func:`start_folder` (and the bridge's
``gitinfo.linked_info``, which tells a linked worktree's main repository).
The rest runs ``git`` (argument lists, never a shell, bounded in time, output in a temporary file).
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from typing import Any

from hypivisor import paths, spawner
from pi_socket.bridge.gitinfo import git_dir, linked_worktree
from pi_socket.errors import HypiError
from pi_socket.protocol import ErrorCode, NodeInfo

MAX_BRANCH_CHARS = 100
GIT_TIMEOUT_S = 30.0
MAX_GIT_OUTPUT = 4000
_ALLOWED = re.compile(r"[A-Za-z0-9._/+-]+")
SUFFIX = "-worktrees"


class WorktreeError(HypiError):
    """A worktree request refused or failed; ``code`` says why (1003, 1004, 1005, 1009, 1011, 1013)."""


# ------------------------------------------------------------------ pure
def check_branch(name: object) -> str:
    """``name`` when it is a branch name this module accepts, else WorktreeError 1005 saying which rule. Pure."""
    if not isinstance(name, str) or not name:
        raise WorktreeError(ErrorCode.INVALID_PATH, "the worktree's branch name is empty")
    if len(name) > MAX_BRANCH_CHARS:
        raise WorktreeError(ErrorCode.INVALID_PATH, f"the branch name is longer than {MAX_BRANCH_CHARS} characters")
    if not _ALLOWED.fullmatch(name):
        raise WorktreeError(
            ErrorCode.INVALID_PATH, "a branch name may hold only letters, digits and . _ - / + (no spaces)"
        )
    if name.startswith("-"):
        raise WorktreeError(ErrorCode.INVALID_PATH, "a branch name must not start with '-'")
    if name == "HEAD" or name == "@":
        raise WorktreeError(ErrorCode.INVALID_PATH, f"{name!r} is not a branch name git allows")
    if name.startswith("/") or name.endswith("/") or "//" in name:
        raise WorktreeError(ErrorCode.INVALID_PATH, "a branch name must not start or end with '/' or hold '//'")
    if ".." in name or name.endswith("."):
        raise WorktreeError(ErrorCode.INVALID_PATH, "a branch name must not hold '..' or end with '.'")
    for part in name.split("/"):
        if part.startswith("."):
            raise WorktreeError(ErrorCode.INVALID_PATH, "no part of a branch name may start with '.'")
        if part.endswith(".lock"):
            raise WorktreeError(ErrorCode.INVALID_PATH, "no part of a branch name may end with '.lock'")
    return name


def dir_name(branch: str) -> str:
    """The worktree folder's name for ``branch`` (already checked): ``/`` written ``-``. Pure."""
    return branch.replace("/", "-")


def worktree_dir(repo: str, branch: str) -> str:
    """``<repo>-worktrees/<dir_name(branch)>`` beside the main working tree ``repo``. Pure."""
    repo = repo.rstrip("/") or "/"
    return os.path.join(os.path.dirname(repo), os.path.basename(repo) + SUFFIX, dir_name(branch))


def start_folder(chosen: str, top: str, new_tree: str) -> str:
    """Where pi starts in ``new_tree``: the chosen folder's place relative to its work tree's top ``top``. Pure."""
    rel = os.path.relpath(chosen, top)
    return new_tree if rel == "." or rel.startswith("..") else os.path.join(new_tree, rel)


def agents_in(nodes: Iterable[NodeInfo], machine: str, path: str) -> list[NodeInfo]:
    """The active agents of ``machine`` whose folder is ``path`` or below it (a worktree still in use). Pure."""
    top = os.path.normpath(path)
    return [n for n in nodes if n.status == "active" and n.machine == machine
            and (paths.is_inside(os.path.normpath(n.cwd), top) or n.worktree == top)]  # fmt: skip


# ------------------------------------------------------------------ small reads (no subprocess)
MAX_MARKED = 2000  # entries of one listing checked for a .git (a stat each); a larger folder marks none


def annotate(listing: dict[str, Any]) -> dict[str, Any]:
    """A ``list_directories`` answer with ``git``: true on the listed folder when it is in a repository (a
    worktree can be made from it), and on each entry that is a repository's top. A few stats; blocking."""
    listing["git"] = git_dir(str(listing.get("path") or "")) is not None
    entries = listing.get("directories") or []
    if len(entries) <= MAX_MARKED:
        for entry in entries:
            if not isinstance(entry, dict):
                continue
            if os.path.lexists(os.path.join(str(entry.get("path")), ".git")):
                entry["git"] = True
            else:
                entry.pop("git", None)  # absent unless true: a listing is not a byte bigger for plain folders
    return listing


# ------------------------------------------------------------------ git glue
async def _git(args: list[str], cwd: str, timeout: float = GIT_TIMEOUT_S) -> tuple[int, str]:
    """``git <args>`` in ``cwd``: (exit code, stdout+stderr). Never prompts, never reads a pager."""
    git = shutil.which("git")
    if git is None:
        raise WorktreeError(ErrorCode.SPAWN_FAILED, "git is not installed (or not in PATH) on this machine")
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "GIT_PAGER": "cat", "LC_ALL": "C"}
    rc, out = await spawner._run([git, *args], timeout, cwd=cwd, env=env)
    return rc, out.strip()[-MAX_GIT_OUTPUT:]


@dataclass(frozen=True)
class Plan:
    branch: str
    repo: str  # the main working tree
    path: str  # the new worktree
    cwd: str  # where pi starts in it


async def plan(folder: str, branch: object, home: str) -> Plan:
    """Check everything before anything is made: the name, ``folder`` in a repository with a commit, the new
    branch and folder free, the folder inside ``$HOME``. ``folder`` is already resolved and inside home."""
    name = check_branch(branch)
    home = paths.canonical_home(home)
    rc, out = await _git(["rev-parse", "--show-toplevel", "--git-common-dir"], folder)
    lines = out.splitlines()
    if rc != 0 or len(lines) != 2:
        raise WorktreeError(ErrorCode.INVALID_PATH, f"not in a git repository: {paths.shown(folder)}")
    top = os.path.realpath(lines[0])
    common = os.path.realpath(os.path.join(folder, lines[1]))
    if os.path.basename(common) != ".git":
        raise WorktreeError(ErrorCode.INVALID_PATH, "the repository has no main working tree (a bare repository)")
    repo = os.path.dirname(common)
    target = worktree_dir(repo, name)
    if not paths.is_inside(os.path.realpath(os.path.dirname(target)), home) or not paths.is_inside(
        os.path.realpath(target), home
    ):
        raise WorktreeError(ErrorCode.PATH_OUTSIDE_HOME, f"the worktree would be outside the home directory: "
                            f"{paths.shown(target)}")  # fmt: skip
    if os.path.lexists(target):
        raise WorktreeError(ErrorCode.CONFLICT, f"{paths.shown(target)} exists already; choose another branch name")
    rc, _ = await _git(["rev-parse", "--verify", "--quiet", "HEAD^{commit}"], repo)
    if rc != 0:
        raise WorktreeError(ErrorCode.INVALID_PATH, "the repository has no commit yet; commit once first")
    rc, _ = await _git(["show-ref", "--verify", "--quiet", f"refs/heads/{name}"], repo)
    if rc == 0:
        raise WorktreeError(ErrorCode.CONFLICT, f"a branch named {name!r} exists already; choose another name")
    return Plan(branch=name, repo=repo, path=target, cwd=start_folder(folder, top, target))


async def create(p: Plan) -> None:
    """``git worktree add -b <branch> -- <path>`` from the main working tree (its ``HEAD``)."""
    made_parent = not os.path.exists(os.path.dirname(p.path))
    rc, out = await _git(["worktree", "add", "-b", p.branch, "--", p.path], p.repo)
    if rc != 0:
        await discard(p, made_parent)
        raise WorktreeError(ErrorCode.SPAWN_FAILED, f"git worktree add failed: {paths.shown(out[-500:])}")


async def discard(p: Plan, remove_parent: bool = True) -> None:
    """Remove what :func:`create` made: the worktree, its branch, and ``<repo>-worktrees`` when it is empty."""
    if os.path.lexists(p.path):
        await _git(["worktree", "remove", "--force", "--", p.path], p.repo)
        if os.path.isdir(p.path):
            shutil.rmtree(p.path, ignore_errors=True)
    await _git(["worktree", "prune"], p.repo)
    await _git(["branch", "-D", "--", p.branch], p.repo)
    if remove_parent:
        try:
            os.rmdir(os.path.dirname(p.path))
        except OSError:
            pass


@asynccontextmanager
async def prepared(p: Plan) -> AsyncIterator[Plan]:
    """The planned worktree made for a spawn; if the body fails (or is cancelled) it is removed with its branch."""
    had_parent = os.path.exists(os.path.dirname(p.path))
    await create(p)
    if not os.path.isdir(p.cwd):  # the chosen sub-folder is not in the checkout (untracked): start at the top
        p = replace(p, cwd=p.path)
    try:
        yield p
    except BaseException:
        await asyncio.shield(discard(p, remove_parent=not had_parent))
        raise


async def remove(raw: str, home: str, force: bool = False, delete_branch: bool = False) -> dict[str, object]:
    """Remove the linked worktree at ``raw`` (inside ``home``); returns ``{path, repo, branch, branch_deleted}``."""
    path = paths.resolve_dir(raw, home)
    found = linked_worktree(path)
    if found is None or found[0] != path:
        raise WorktreeError(ErrorCode.INVALID_PATH, f"not the top of a linked git worktree: {paths.shown(path)}")
    repo = found[1]
    rc, branch = await _git(["symbolic-ref", "--quiet", "--short", "HEAD"], path)
    branch = branch if rc == 0 else ""
    if not force:
        rc, out = await _git(["status", "--porcelain", "--untracked-files=normal"], path)
        if rc != 0:
            raise WorktreeError(ErrorCode.SPAWN_FAILED, f"git status failed: {paths.shown(out[-300:])}")
        if out:
            raise WorktreeError(ErrorCode.CONFLICT, "the worktree has uncommitted changes; commit them, or remove "
                                "with force to lose them")  # fmt: skip
    args = ["worktree", "remove", *(["--force"] if force else []), "--", path]
    rc, out = await _git(args, repo)
    if rc != 0:
        raise WorktreeError(ErrorCode.SPAWN_FAILED, f"git worktree remove failed: {paths.shown(out[-500:])}")
    deleted = False
    if delete_branch and branch:
        rc, out = await _git(["branch", "-D" if force else "-d", "--", branch], repo)
        if rc != 0:
            raise WorktreeError(ErrorCode.CONFLICT, f"the worktree is removed; its branch {branch!r} stays: "
                                f"{paths.shown(out[-300:])}")  # fmt: skip
        deleted = True
    try:
        os.rmdir(os.path.dirname(path))  # <repo>-worktrees once it is empty
    except OSError:
        pass
    return {"path": path, "repo": repo, "branch": branch or None, "branch_deleted": deleted}


async def plan_request(params: dict[str, Any], folder: str, home: str) -> Plan | None:
    """The plan for a machine request's ``worktree: {branch}`` (None when absent), checked like the hypivisor's."""
    spec = params.get("worktree")
    if spec is None:
        return None
    if not isinstance(spec, dict):
        raise WorktreeError(ErrorCode.INVALID_PARAMS, "worktree must be {branch}")
    if params.get("new_folder") is not None or params.get("session_file") is not None:
        raise WorktreeError(ErrorCode.INVALID_PARAMS, "worktree is not combined with new_folder or session_file")
    return await plan(folder, spec.get("branch"), home)


async def remove_request(params: dict[str, Any], home: str) -> dict[str, object]:
    """A machine request's ``remove_worktree {path, force?, delete_branch?}``."""
    raw = params.get("path")
    if not isinstance(raw, str) or not raw:
        raise WorktreeError(ErrorCode.INVALID_PARAMS, "remove_worktree needs path")
    return await remove(raw, home, params.get("force") is True, params.get("delete_branch") is True)
