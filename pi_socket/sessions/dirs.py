"""Where pi keeps this machine's sessions, and which paths count as one of them.

pi writes sessions to ``--session-dir``, else ``PI_CODING_AGENT_SESSION_DIR``, else the ``sessionDir`` setting,
else ``<agent dir>/sessions/--<cwd>--/`` (agent dir: ``PI_CODING_AGENT_DIR`` or ``~/.pi/agent``). A pi started
with another setting earlier left its files there, so every one of these roots is scanned: a root's own
``*.jsonl`` files and those one folder down. A relative ``sessionDir`` (a project-local folder) names no
single place and is not scanned.

A client never names a file the service has not verified: :func:`verify` resolves symlinks and accepts only a
regular ``.jsonl`` file inside one of the roots (containment by ``os.path.commonpath`` on resolved paths).
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

SETTINGS_MAX_BYTES = 1024 * 1024
MAX_FILES = 200_000  # files one scan lists at most (newest first would need them all: the cap is a safety net)


class SessionPathError(ValueError):
    """A path that is not a session file under pi's session directories."""


def _expand(raw: str, home: str) -> str:
    return home + raw[1:] if raw == "~" or raw.startswith("~/") else raw


def agent_dir(env: Mapping[str, str], home: str) -> str:
    raw = env.get("PI_CODING_AGENT_DIR") or ""
    return _expand(raw, home) if raw else os.path.join(home, ".pi", "agent")


def _setting_dir(agent: str, home: str) -> str | None:
    try:
        with open(os.path.join(agent, "settings.json"), "rb") as f:
            settings = json.loads(f.read(SETTINGS_MAX_BYTES))
    except (OSError, ValueError):
        return None
    value = settings.get("sessionDir") if isinstance(settings, dict) else None
    if not isinstance(value, str) or not value.strip():
        return None
    value = _expand(value.strip(), home)
    return value if os.path.isabs(value) else None


def session_roots(env: Mapping[str, str], home: str) -> list[str]:
    """pi's session directories on this machine, resolved, existing, without duplicates or nesting."""
    agent = agent_dir(env, home)
    candidates = [os.path.join(agent, "sessions")]
    raw = env.get("PI_CODING_AGENT_SESSION_DIR") or ""
    if raw:
        candidates.append(_expand(raw, home))
    setting = _setting_dir(agent, home)
    if setting:
        candidates.append(setting)
    roots: list[str] = []
    for c in candidates:
        if "\x00" in c or not os.path.isabs(c):
            continue
        r = os.path.realpath(c)
        if os.path.isdir(r) and r not in roots:
            roots.append(r)
    return [r for r in roots if not any(o != r and _inside(r, o) for o in roots)]


def _inside(path: str, root: str) -> bool:
    try:
        return os.path.commonpath([path, root]) == root
    except ValueError:
        return False


@dataclass(frozen=True)
class Found:
    path: str  # resolved
    inode: int
    size: int
    mtime: float


def scan(roots: list[str], limit: int = MAX_FILES) -> Iterator[Found]:
    """Every session file under ``roots`` (``root/*.jsonl`` and ``root/*/*.jsonl``), each once."""
    seen: set[str] = set()
    count = 0
    for root in roots:
        for folder in [root, *_subdirs(root)]:
            try:
                with os.scandir(folder) as it:
                    names = [e for e in it if e.name.endswith(".jsonl")]
            except OSError:
                continue
            for e in names:
                try:
                    real = os.path.realpath(e.path)
                    st = os.stat(real)
                except OSError:
                    continue
                if not stat.S_ISREG(st.st_mode) or real in seen or not _inside(real, root):
                    continue
                seen.add(real)
                yield Found(real, st.st_ino, st.st_size, st.st_mtime)
                count += 1
                if count >= limit:
                    return


def _subdirs(root: str) -> list[str]:
    try:
        with os.scandir(root) as it:
            return sorted(e.path for e in it if e.is_dir(follow_symlinks=False))
    except OSError:
        return []


def verify(raw: str, roots: list[str]) -> str:
    """``raw`` resolved, when it is a regular ``.jsonl`` file inside a session root; SessionPathError else.

    The message never says whether a path outside the roots exists."""
    if not isinstance(raw, str) or not raw or "\x00" in raw or len(raw) > 4096:
        raise SessionPathError("not a session path")
    if not os.path.isabs(raw):
        raise SessionPathError("a session path is absolute")
    real = os.path.realpath(raw)
    if not any(_inside(real, r) for r in roots):
        raise SessionPathError("not under pi's session directories on this machine")
    if not real.endswith(".jsonl"):
        raise SessionPathError("not a session file (.jsonl)")
    try:
        st = os.stat(real)
    except OSError:
        raise SessionPathError("no such session file") from None
    if not stat.S_ISREG(st.st_mode):
        raise SessionPathError("not a session file")
    return real
