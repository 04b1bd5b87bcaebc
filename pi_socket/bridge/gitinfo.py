"""The git branch checked out in the agent's folder, read from ``.git/HEAD`` (no git subprocess).

The roster shows it on each agent's card. Finding the repository walks up from the folder to the
first ``.git`` (a directory, or a file ``gitdir: <path>`` in worktrees and submodules), at most
``MAX_DEPTH`` levels; ``HEAD`` is read up to ``MAX_HEAD_BYTES``. Anything unexpected means no branch.
"""

from __future__ import annotations

import os
import re

MAX_DEPTH = 64
MAX_HEAD_BYTES = 1024
_REF = re.compile(r"ref:\s*refs/heads/(\S+)")
_SHA = re.compile(r"[0-9a-f]{40}(?:[0-9a-f]{24})?")


def branch_from_head(text: str) -> str | None:
    """``ref: refs/heads/<name>`` → name; a detached commit id → its first 7 characters; else None."""
    text = text.strip()
    m = _REF.fullmatch(text)
    if m:
        return m.group(1)
    return text[:7] if _SHA.fullmatch(text) else None


def _read(path: str) -> str | None:
    try:
        with open(path, "rb") as f:
            return f.read(MAX_HEAD_BYTES).decode("utf-8", "replace")
    except OSError:
        return None


def git_dir(cwd: str) -> str | None:
    """The git directory of the repository holding ``cwd``, or None."""
    here = os.path.abspath(cwd)
    for _ in range(MAX_DEPTH):
        dot = os.path.join(here, ".git")
        if os.path.isdir(dot):
            return dot
        if os.path.isfile(dot):
            text = _read(dot) or ""
            if text.startswith("gitdir:"):
                return os.path.normpath(os.path.join(here, text[len("gitdir:") :].strip()))
            return None
        parent = os.path.dirname(here)
        if parent == here:
            return None
        here = parent
    return None


def git_branch(cwd: str) -> str | None:
    """The branch checked out in ``cwd``'s repository (short commit id when detached), or None."""
    where = git_dir(cwd)
    text = _read(os.path.join(where, "HEAD")) if where else None
    return branch_from_head(text) if text else None


def linked_info(dot_git_text: str, where: str, commondir_text: str | None) -> str | None:
    """The main working tree of a linked worktree at ``where``, from its ``.git`` file's text and its git dir's
    ``commondir`` file (None when absent: a submodule, not a worktree); else None. Pure."""
    if not dot_git_text.startswith("gitdir:") or commondir_text is None:
        return None
    gitdir = os.path.normpath(os.path.join(where, dot_git_text[len("gitdir:") :].strip()))
    common = os.path.normpath(os.path.join(gitdir, commondir_text.strip()))
    if os.path.basename(common) != ".git":
        return None  # a bare repository's worktree: no main working tree to name
    return os.path.dirname(common)


def linked_worktree(cwd: str) -> tuple[str, str] | None:
    """(worktree top, main working tree) when ``cwd`` is inside a linked git worktree, else None. A few reads."""
    here = os.path.abspath(cwd)
    for _ in range(MAX_DEPTH):
        dot = os.path.join(here, ".git")
        if os.path.isdir(dot):
            return None
        if os.path.isfile(dot):
            text = _read(dot) or ""
            if not text.startswith("gitdir:"):
                return None
            gitdir = os.path.normpath(os.path.join(here, text[len("gitdir:") :].strip()))
            repo = linked_info(text, here, _read(os.path.join(gitdir, "commondir")))
            return (here, repo) if repo else None
        parent = os.path.dirname(here)
        if parent == here:
            return None
        here = parent
    return None


def worktree_fields(cwd: str, max_len: int) -> dict[str, str]:
    """``{worktree, worktree_of}`` for a register when ``cwd`` is in a linked worktree (paths that fit), else {}."""
    found = linked_worktree(cwd)
    if found is None or max(len(found[0]), len(found[1])) > max_len:
        return {}
    return {"worktree": found[0], "worktree_of": found[1]}
