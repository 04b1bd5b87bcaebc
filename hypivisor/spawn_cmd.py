"""How ``spawn_agent`` starts pi: session names, the explicit environment, the argv. Pure.

pi is started in a detached tmux session the user can later ``tmux attach``
to, so it has a real terminal, survives the hypivisor, and is not in the
hypivisor's process group. Its environment is built explicitly rather than
inherited: the spawned pi must register with *this* hypivisor (port, token)
whatever the hypivisor's own environment says.

``HYPI_SPAWN_COMMAND`` replaces tmux with a shell template whose
``{path}``/``{session}`` placeholders are shell-quoted.
"""

from __future__ import annotations

import re
import shlex
import string
from collections.abc import Mapping

PASSTHROUGH = ("PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR")
PASSTHROUGH_PREFIXES = ("PI_",)
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")
TEMPLATE_FIELDS = frozenset({"path", "session"})


class TemplateError(ValueError):
    """``HYPI_SPAWN_COMMAND`` uses a placeholder we do not provide, or is malformed."""


def session_name(folder: str, short_id: str) -> str:
    """``pi-<folder>-<id>``: tmux forbids ``.`` and ``:`` in names; keep it short and shell-friendly."""
    base = _UNSAFE.sub("-", folder).strip("-")[:40] or "home"
    return f"pi-{base}-{short_id}"


def child_env(parent: Mapping[str, str], hypivisor_ws: str, token: str | None) -> dict[str, str]:
    """The spawned pi's environment: a short allow-list plus where and how to register."""
    env = {k: v for k, v in parent.items() if k in PASSTHROUGH or k.startswith(PASSTHROUGH_PREFIXES)}
    env["HYPIVISOR_WS"] = hypivisor_ws
    if token:
        env["HYPI_TOKEN"] = token
    else:
        env.pop("HYPI_TOKEN", None)
    return env


def tmux_argv(session: str, cwd: str, env: Mapping[str, str], command: list[str] | None = None) -> list[str]:
    """One tmux invocation: create the session, then keep a dead pane so its output can be captured.

    ``remain-on-exit`` is set in the same command queue as ``new-session`` so a
    pi that dies at once (no API key, missing extension) still leaves its
    error on screen for the timeout message.
    """
    argv = ["tmux", "new-session", "-d", "-s", session, "-c", cwd, "-x", "200", "-y", "50"]
    for key in sorted(env):
        argv += ["-e", f"{key}={env[key]}"]
    argv += command or ["pi"]
    argv += [";", "set-option", "-t", session, "remain-on-exit", "on"]
    return argv


def template_fields(template: str) -> set[str]:
    try:
        return {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
    except ValueError as exc:
        raise TemplateError(f"HYPI_SPAWN_COMMAND is malformed: {exc}") from exc


def template_argv(template: str, path: str, session: str) -> list[str]:
    """``sh -c`` with the template's placeholders filled in, each shell-quoted."""
    unknown = template_fields(template) - TEMPLATE_FIELDS
    if unknown:
        raise TemplateError(f"HYPI_SPAWN_COMMAND uses unknown placeholders: {', '.join(sorted(unknown))}")
    return ["sh", "-c", template.format(path=shlex.quote(path), session=shlex.quote(session))]
