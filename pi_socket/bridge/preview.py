"""A tool call rendered for the person who decides it (specs/approvals.md): the command, or a diff.

For ``edit`` and ``write`` the diff is against the file as it is on disk now, so the person sees what the call
would change, not what the model believes is there. Reads are bounded; a file that cannot be read, is too
large, is not text, or does not contain an edit's text gives a preview with ``error`` (the question is still
asked). Blocking file I/O: call from a thread.
"""

from __future__ import annotations

import difflib
import os
from typing import Any

from pi_socket.protocol import ApprovalPreview

MAX_FILE_BYTES = 1_000_000
MAX_DIFF_CHARS = 100_000
_SHELLS = ("bash", "powershell")
_UNICODE_SPACES = dict.fromkeys([0x00A0, *range(0x2000, 0x200B), 0x202F, 0x205F, 0x3000], " ")


def resolve_path(path: str, cwd: str, home: str) -> str:
    """A path as pi resolves it: unicode spaces normalised, leading ``@`` stripped, ``~`` expanded, from cwd."""
    p = path.translate(_UNICODE_SPACES)
    if p.startswith("@"):
        p = p[1:]
    if p == "~" or p.startswith("~/"):
        p = home + p[1:]
    return os.path.normpath(os.path.join(cwd, p))


def _read_text(path: str) -> tuple[str | None, str | None]:
    """(text, None), (None, None) when the file does not exist, or (None, error)."""
    try:
        with open(path, "rb") as fh:
            data = fh.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        return None, None
    except OSError as exc:
        return None, f"cannot read the file: {exc.strerror or type(exc).__name__}"
    if len(data) > MAX_FILE_BYTES:
        return None, f"the file is over {MAX_FILE_BYTES // 1_000_000} MB: no preview"
    try:
        return data.decode("utf-8"), None
    except UnicodeDecodeError:
        return None, "the file is not UTF-8 text: no preview"


def _edits(input_: dict[str, Any]) -> list[tuple[str, str]] | None:
    raw = input_.get("edits")
    if raw is None and "oldText" in input_:
        raw = [{"oldText": input_.get("oldText"), "newText": input_.get("newText")}]
    if not isinstance(raw, list):
        return None
    out = []
    for e in raw:
        if not isinstance(e, dict) or not isinstance(e.get("oldText"), str) or not isinstance(e.get("newText"), str):
            return None
        out.append((e["oldText"], e["newText"]))
    return out


def _diff(old: str, new: str, name: str) -> tuple[str, bool]:
    lines = difflib.unified_diff(
        old.splitlines(keepends=True), new.splitlines(keepends=True), f"a/{name}", f"b/{name}", n=3
    )
    text = "".join(line if line.endswith("\n") else line + "\n" for line in lines)
    if len(text) > MAX_DIFF_CHARS:
        return text[:MAX_DIFF_CHARS], True
    return text, False


def build_preview(tool_name: str, input_: Any, cwd: str, home: str | None = None) -> ApprovalPreview:
    if not isinstance(input_, dict):
        return ApprovalPreview(kind="none")
    if tool_name in _SHELLS:
        command = input_.get("command")
        return ApprovalPreview(kind="command", command=command if isinstance(command, str) else None)
    if tool_name not in ("write", "edit"):
        return ApprovalPreview(kind="none")
    path = input_.get("path")
    if not isinstance(path, str) or not path or "\0" in path:
        return ApprovalPreview(kind="diff", error="no valid path in the call")
    full = resolve_path(path, cwd, home or os.path.expanduser("~"))
    rel = os.path.relpath(full, cwd) if full.startswith(cwd.rstrip("/") + "/") else full
    old, err = _read_text(full)
    if err:
        return ApprovalPreview(kind="diff", path=full, error=err)
    if tool_name == "write":
        content = input_.get("content")
        if not isinstance(content, str):
            return ApprovalPreview(kind="diff", path=full, error="no content in the call")
        diff, truncated = _diff(old or "", content, rel)
        return ApprovalPreview(kind="diff", path=full, diff=diff, new_file=old is None, truncated=truncated)
    edits = _edits(input_)
    if edits is None:
        return ApprovalPreview(kind="diff", path=full, error="no edits in the call")
    if old is None:
        return ApprovalPreview(kind="diff", path=full, error="the file does not exist")
    new = old
    for old_text, new_text in edits:
        if not old_text or old_text not in new:
            return ApprovalPreview(kind="diff", path=full, error="an edit's text is not in the file as it is now")
        new = new.replace(old_text, new_text, 1)
    diff, truncated = _diff(old, new, rel)
    return ApprovalPreview(kind="diff", path=full, diff=diff, truncated=truncated)
