"""Path policy for ``list_directories`` and ``spawn_agent``: everything stays inside ``$HOME``.

Only reads the file system (``realpath``, ``scandir``); it never creates
anything, so ``spawn_agent`` can validate the final folder completely before
the caller makes a directory (an earlier implementation created
``/tmp/x`` first and rejected it afterwards).

Containment is checked on resolved paths with ``os.path.commonpath``, never
with a string prefix (``/home/a`` must not accept ``/home/ab``).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

from hypivisor.spawn_cmd import printable
from pi_socket.errors import HypiError
from pi_socket.protocol import MAX_NAME_LEN, MAX_PATH_LEN, ErrorCode

SHOWN_CHARS = 200  # how much of a path an error message repeats


class PathError(HypiError):
    """A path the policy refuses; ``code`` says why (1003 outside, 1004 missing, 1005 invalid)."""


@dataclass(frozen=True)
class Listing:
    path: str
    parent: str | None
    home: str
    directories: list[tuple[str, str]]  # (name, path), sorted by name


def shown(raw: str) -> str:
    """A path as an error message repeats it: control and bidi characters escaped, at most ``SHOWN_CHARS``."""
    text = printable(raw, lines=False)
    return text if len(text) <= SHOWN_CHARS else text[: SHOWN_CHARS - 1] + "…"


def canonical_home(home: str) -> str:
    return os.path.realpath(home)


def is_inside(path: str, home: str) -> bool:
    """True when ``path`` is ``home`` or below it (both already resolved)."""
    try:
        return os.path.commonpath([path, home]) == home
    except ValueError:
        return False


def _check_text(raw: str, what: str) -> None:
    if "\x00" in raw:
        raise PathError(ErrorCode.INVALID_PATH, f"{what} contains a NUL byte")
    if len(raw) > MAX_PATH_LEN:
        raise PathError(ErrorCode.INVALID_PATH, f"{what} is longer than {MAX_PATH_LEN} characters")


def resolve_dir(raw: str | None, home: str) -> str:
    """Resolve a user-supplied folder (absolute, ``~``-relative or relative to home) to an existing dir in home.

    Containment is checked before existence so the answer never reveals what
    exists outside ``$HOME``.
    """
    home = canonical_home(home)
    if raw is None or raw == "":
        return home
    _check_text(raw, "path")
    expanded = home + raw[1:] if raw == "~" or raw.startswith("~/") else raw
    joined = os.path.join(home, expanded)  # absolute paths replace home
    resolved = os.path.realpath(joined)
    if not is_inside(resolved, home):
        raise PathError(ErrorCode.PATH_OUTSIDE_HOME, f"path resolves outside the home directory: {shown(raw)}")
    if not os.path.exists(resolved):
        raise PathError(ErrorCode.PATH_NOT_FOUND, f"path does not exist: {shown(raw)}")
    if not os.path.isdir(resolved):
        raise PathError(ErrorCode.INVALID_PATH, f"not a directory: {shown(raw)}")
    return resolved


def validate_folder_name(name: str) -> str:
    """A new folder is exactly one visible path segment."""
    if name is None or name == "":
        raise PathError(ErrorCode.INVALID_PATH, "new_folder is empty")
    if "\x00" in name:
        raise PathError(ErrorCode.INVALID_PATH, "new_folder contains a NUL byte")
    if len(name) > MAX_NAME_LEN:
        raise PathError(ErrorCode.INVALID_PATH, f"new_folder is longer than {MAX_NAME_LEN} characters")
    if "/" in name or "\\" in name:
        raise PathError(ErrorCode.INVALID_PATH, "new_folder must be a single folder name, without separators")
    if name in (".", "..") or name.startswith("."):
        raise PathError(ErrorCode.INVALID_PATH, "new_folder must not be hidden or a relative reference")
    if name.strip() != name:
        raise PathError(ErrorCode.INVALID_PATH, "new_folder must not start or end with whitespace")
    return name


@dataclass(frozen=True)
class SpawnTarget:
    path: str  # the folder pi will run in (resolved)
    create: bool  # True when the caller must mkdir it


def spawn_target(raw: str, new_folder: str | None, home: str) -> SpawnTarget:
    """Decide where to spawn, fully validated, creating nothing."""
    home = canonical_home(home)
    base = resolve_dir(raw, home)
    if new_folder is None:
        return SpawnTarget(base, create=False)
    name = validate_folder_name(new_folder)
    candidate = os.path.join(base, name)
    resolved = os.path.realpath(candidate)
    if not is_inside(resolved, home):
        raise PathError(ErrorCode.PATH_OUTSIDE_HOME, f"new_folder resolves outside the home directory: {shown(name)}")
    if os.path.lexists(candidate):
        if not os.path.isdir(resolved):
            raise PathError(ErrorCode.INVALID_PATH, f"{shown(name)} exists and is not a directory")
        return SpawnTarget(resolved, create=False)
    return SpawnTarget(candidate, create=True)


SESSION_HEADER_MAX_BYTES = 64 * 1024  # a pi session header is one short JSON line


def session_file(raw: str, spawn_path: str, home: str) -> str:
    """Validate a pi session file to resume in ``spawn_path`` (resolved); returns its resolved path.

    It must resolve inside home (checked before existence, as for folders), be an existing regular ``.jsonl``
    file, and start with a pi session header (``{"type": "session", "cwd": ...}``) whose ``cwd`` is the spawn
    folder: a session is resumed where it was made, so a client cannot point pi at an unrelated file. Reads at
    most ``SESSION_HEADER_MAX_BYTES``. Blocking: run it in a thread."""
    home = canonical_home(home)
    _check_text(raw, "session_file")
    expanded = home + raw[1:] if raw.startswith("~/") else raw
    resolved = os.path.realpath(os.path.join(home, expanded))
    if not is_inside(resolved, home):
        raise PathError(ErrorCode.PATH_OUTSIDE_HOME, f"session_file resolves outside the home directory: {shown(raw)}")
    if not os.path.exists(resolved):
        raise PathError(ErrorCode.PATH_NOT_FOUND, f"session_file does not exist: {shown(raw)}")
    if not os.path.isfile(resolved) or not resolved.endswith(".jsonl"):
        raise PathError(ErrorCode.INVALID_PATH, f"session_file is not a .jsonl file: {shown(raw)}")
    try:
        with open(resolved, "rb") as f:
            first = f.read(SESSION_HEADER_MAX_BYTES).split(b"\n", 1)[0]
    except OSError as exc:
        raise PathError(ErrorCode.PATH_NOT_FOUND, f"cannot read session_file: {exc.strerror}") from None
    try:
        header = json.loads(first)
    except ValueError:
        header = None
    if not isinstance(header, dict) or header.get("type") != "session" or not isinstance(header.get("cwd"), str):
        raise PathError(ErrorCode.INVALID_PATH, f"session_file is not a pi session (no session header): {shown(raw)}")
    cwd = header["cwd"]
    if "\x00" in cwd or os.path.realpath(cwd) != os.path.realpath(spawn_path):
        raise PathError(
            ErrorCode.INVALID_PATH, f"session_file belongs to another folder ({shown(cwd)}), not {shown(spawn_path)}"
        )
    return resolved


def _listable(entry: os.DirEntry[str], home: str) -> str | None:
    """Path to show for an entry, or None to skip it (hidden, not a dir, unreadable, escaping symlink)."""
    if entry.name.startswith("."):
        return None
    try:
        if entry.is_symlink():
            target = os.path.realpath(entry.path)
            return entry.path if is_inside(target, home) and os.path.isdir(target) else None
        return entry.path if entry.is_dir(follow_symlinks=False) else None
    except OSError:
        return None


def list_directories(raw: str | None, home: str) -> Listing:
    """Visible subdirectories of a folder inside home, sorted by name. Blocking: run it in a thread."""
    home = canonical_home(home)
    path = resolve_dir(raw, home)
    try:
        with os.scandir(path) as it:
            found = [(e.name, p) for e in it if (p := _listable(e, home)) is not None]
    except PermissionError as exc:
        raise PathError(ErrorCode.PATH_NOT_FOUND, f"cannot read directory: {exc.strerror}") from exc
    found.sort(key=lambda item: (item[0].lower(), item[0]))
    parent = None if path == home else os.path.dirname(path)
    return Listing(path=path, parent=parent, home=home, directories=found)
