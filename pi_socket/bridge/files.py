"""The ``list_files`` policy: autocomplete paths for ``@file`` mentions, inside the agent's cwd only.

``prefix`` is split into a directory part and a basename part; the directory
is resolved (symlinks followed) and must stay inside the resolved cwd, checked
with ``Path.is_relative_to`` (the earlier implementation compared strings, so
``/a/b`` accepted ``/a/bc``). Entries whose own resolution leaves cwd
(symlinks pointing out) are dropped. Hidden entries are listed only when the
basename part starts with ``.``. At most ``MAX_ENTRIES`` are returned, sorted
directories first. Plain synchronous code: the server runs it in a thread.
"""

from __future__ import annotations

import os
from pathlib import Path

MAX_ENTRIES = 200
MAX_SCAN = 20_000  # entries read from one directory before giving up (huge folders)


def split_prefix(prefix: str) -> tuple[str, str]:
    """``"src/ma"`` → (``"src"``, ``"ma"``); ``"src/"`` → (``"src"``, ``""``)."""
    head, _, base = prefix.replace("\\", "/").rpartition("/")
    return head, base


def list_files(cwd: str | os.PathLike[str], prefix: str) -> list[dict[str, object]]:
    """Entries of the prefix's directory matching its basename, as ``{path, is_dir}`` relative to cwd.

    An absolute prefix, a ``..`` escape, a missing directory or a NUL byte all give an empty list:
    listing is a convenience, never an error path an attacker can probe."""
    if "\0" in prefix or prefix.startswith(("/", "\\")):
        return []
    try:
        root = Path(cwd).resolve(strict=True)
        head, base = split_prefix(prefix)
        directory = (root / head).resolve(strict=True) if head else root
    except (OSError, RuntimeError):
        return []
    if not directory.is_relative_to(root) or not directory.is_dir():
        return []
    return _scan(root, directory, head, base)


def _scan(root: Path, directory: Path, head: str, base: str) -> list[dict[str, object]]:
    """Matching entries of ``directory``, reported under the directory part the user typed."""
    show_hidden = base.startswith(".")
    found: list[tuple[bool, str]] = []
    try:
        with os.scandir(directory) as it:
            for n, entry in enumerate(it):
                if n >= MAX_SCAN:
                    break
                if not entry.name.startswith(base) or (entry.name.startswith(".") and not show_hidden):
                    continue
                kept = _inside(root, directory / entry.name)
                if kept is not None:
                    found.append((kept, entry.name))
    except OSError:
        return []
    found.sort(key=lambda item: (not item[0], item[1].lower()))
    prefix = head.rstrip("/") + "/" if head else ""
    return [{"path": prefix + name, "is_dir": is_dir} for is_dir, name in found[:MAX_ENTRIES]]


def _inside(root: Path, path: Path) -> bool | None:
    """None if ``path`` resolves outside root (or is broken); else whether it is a directory."""
    try:
        target = path.resolve(strict=True)
    except (OSError, RuntimeError):
        return None
    if not target.is_relative_to(root):
        return None
    return target.is_dir()
