"""How ``spawn_agent`` starts pi: session names, the explicit environment, the argv. Pure.

pi is started in a detached tmux session the user can later ``tmux attach``
to, so it has a real terminal, survives the hypivisor, and is not in the
hypivisor's process group. Its environment is built explicitly rather than
inherited: the spawned pi must register with *this* hypivisor (port, token)
whatever the hypivisor's own environment says.

``HYPI_SPAWN_COMMAND`` replaces tmux with a shell template whose
``{path}``/``{session}`` placeholders are shell-quoted.

A folder name is data, whoever chose it (a client's ``new_folder``, or a folder
already on disk such as a cloned repository): it never reaches a tmux format, a
shell line, or a tmux argument that tmux reads specially (see ``tmux_argv``).
"""

from __future__ import annotations

import re
import shlex
import string
from collections.abc import Mapping

# The XDG folders locate the user's machine service (its agents socket and lock live in the runtime dir): a pi
# spawned without them would start a second service beside the one the user's other pis share.
PASSTHROUGH = (
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "SHELL",
    "LANG",
    "LC_ALL",
    "LC_CTYPE",
    "TZ",
    "TMPDIR",
    "XDG_RUNTIME_DIR",
    "XDG_STATE_HOME",
    "XDG_CONFIG_HOME",
)
PASSTHROUGH_PREFIXES = ("PI_",)
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")
_SAFE_SESSION = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]{0,63}")
TEMPLATE_FIELDS = frozenset({"path", "session"})


class TemplateError(ValueError):
    """``HYPI_SPAWN_COMMAND`` uses a placeholder we do not provide, or is malformed."""


def session_name(folder: str, short_id: str) -> str:
    """``pi-<folder>-<id>``: tmux forbids ``.`` and ``:`` in names; keep it short and shell-friendly."""
    base = _UNSAFE.sub("-", folder).strip("-")[:40] or "home"
    return f"pi-{base}-{short_id}"


_BIDI = "\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069"
_CONTROL = re.compile(f"[\x00-\x08\x0b-\x1f\x7f-\x9f{_BIDI}]")
_CONTROL_OR_LINE = re.compile(f"[\x00-\x1f\x7f-\x9f\u2028\u2029{_BIDI}]")


def printable(text: str, lines: bool = True) -> str:
    """``text`` with control and bidi-override characters shown as ``\\uXXXX`` escapes: what pi printed, or a
    hostile folder name, can neither drive a terminal nor reorder a log line. Newlines and tabs are kept when
    ``lines`` (pi's output), escaped too when not (a name inside a one-line message)."""
    pattern = _CONTROL if lines else _CONTROL_OR_LINE
    return pattern.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def child_env(parent: Mapping[str, str], hypivisor_ws: str, token: str | None) -> dict[str, str]:
    """The spawned pi's environment: a short allow-list plus where and how to register."""
    env = {k: v for k, v in parent.items() if k in PASSTHROUGH or k.startswith(PASSTHROUGH_PREFIXES)}
    env["HYPIVISOR_WS"] = hypivisor_ws
    if token:
        env["HYPI_TOKEN"] = token
    else:
        env.pop("HYPI_TOKEN", None)
    return env


# tmux expands formats (``#(cmd)`` runs cmd, ``#{...}`` substitutes) in ``new-session -c`` (and ``-s``), so a
# folder name must never reach those flags. The session starts in this fixed folder and a fixed shell line changes
# into the folder taken from the environment (``-e`` values and the command's arguments are not format-expanded);
# the folder is never part of a format, a shell line or a tmux option value.
TMUX_START_DIR = "/"
SPAWN_DIR_VAR = "HYPI_SPAWN_DIR"
SPAWN_ID_VAR = "PI_SOCKET_SPAWN_ID"
TMUX_SESSION_VAR = "PI_SOCKET_TMUX_SESSION"
_CD_AND_EXEC = 'cd -- "$HYPI_SPAWN_DIR" && exec "$@"'
# Resuming a session: the session file travels the same way as the folder, as an environment value the fixed
# shell line quotes; it never reaches a tmux format, a shell line or an argument tmux reads.
SESSION_FILE_VAR = "HYPI_SPAWN_SESSION_FILE"
_CD_AND_EXEC_SESSION = 'cd -- "$HYPI_SPAWN_DIR" && exec "$@" --session "$HYPI_SPAWN_SESSION_FILE"'
# Forking a session (``pi --fork <file>``: a new session copied from it, never a second writer on the file): the
# spawned environment carries ``HYPI_SPAWN_FORK=1`` beside the session file.
FORK_VAR = "HYPI_SPAWN_FORK"
_CD_AND_EXEC_FORK = 'cd -- "$HYPI_SPAWN_DIR" && exec "$@" --fork "$HYPI_SPAWN_SESSION_FILE"'


def tmux_literal(arg: str) -> str:
    """``arg`` spelled so that tmux's command line gives it back unchanged.

    tmux splits its command line into commands at every argument that *ends*
    in ``;`` (the ``;`` is dropped and the rest of the line becomes the next
    command), and reads a trailing ``\\;`` as ``;``. So ``/h/x;`` would end
    ``new-session`` early and ``/h/x\\;`` would arrive as ``/h/x;``, another
    folder. An argument ending in ``;`` is therefore sent with that ``;``
    written as ``\\;``; nothing else in an argument is special.
    """
    return arg[:-1] + "\\;" if arg.endswith(";") else arg


def tmux_argv(
    session: str, cwd: str, env: Mapping[str, str], command: list[str] | None = None, session_file: str | None = None
) -> list[str]:
    """One tmux invocation: create the session, then keep a dead pane so its output can be captured.

    ``remain-on-exit`` is set in the same command queue as ``new-session`` so a
    pi that dies at once (no API key, missing extension) still leaves its
    error on screen for the timeout message. ``cwd`` travels only as the value
    of ``HYPI_SPAWN_DIR`` (see ``TMUX_START_DIR``); every argument that carries
    data (environment values, the command) goes through :func:`tmux_literal`. ``session_file`` (a validated pi
    session to resume) travels likewise as ``HYPI_SPAWN_SESSION_FILE`` and reaches pi as ``--session <file>``, or
    as ``--fork <file>`` when ``env`` has ``HYPI_SPAWN_FORK=1``.
    """
    if not _SAFE_SESSION.fullmatch(session):
        raise ValueError(f"unsafe tmux session name {session!r}")
    full_env = {**env, SPAWN_DIR_VAR: cwd, TMUX_SESSION_VAR: session}  # the bridge reports the session (restarts)
    if session_file is not None:
        full_env[SESSION_FILE_VAR] = session_file
    argv = ["tmux", "new-session", "-d", "-s", session, "-c", TMUX_START_DIR, "-x", "200", "-y", "50"]
    for key in sorted(full_env):
        argv += ["-e", tmux_literal(f"{key}={full_env[key]}")]
    if session_file is None:
        line = _CD_AND_EXEC
    else:
        line = _CD_AND_EXEC_FORK if env.get(FORK_VAR) == "1" else _CD_AND_EXEC_SESSION
    argv += ["sh", "-c", line, "sh", *(tmux_literal(a) for a in (command or ["pi"]))]
    argv += [";", "set-option", "-t", session, "remain-on-exit", "on"]
    return argv


def template_resumes(template: str) -> bool:
    """A template can resume a session only if it hands ``$HYPI_SPAWN_SESSION_FILE`` to pi (``--session``)."""
    return SESSION_FILE_VAR in template


def template_forks(template: str) -> bool:
    """A template can fork a session only if it reads ``$HYPI_SPAWN_FORK`` (and then passes ``--fork``)."""
    return FORK_VAR in template


def template_fields(template: str) -> set[str]:
    try:
        return {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
    except ValueError as exc:
        raise TemplateError(f"HYPI_SPAWN_COMMAND is malformed: {exc}") from exc


def template_argv(template: str, path: str, session: str) -> list[str]:
    """``sh -c`` with the template's placeholders filled in, each shell-quoted.

    The template runs in the folder (its working directory) with the spawned pi's environment plus
    ``HYPI_SPAWN_DIR`` (the folder), so it needs no ``{path}`` at all. The pi it starts must inherit
    ``HYPIVISOR_WS``, ``HYPI_TOKEN`` and ``PI_SOCKET_SPAWN_ID``: only a registration carrying that secret
    ends the spawn.

    ``{path}`` is quoted for the shell only, and stays so: the hypivisor cannot know which program a template
    hands it to, and no one escape is right for every program. A template must never hand ``{path}`` to tmux:
    tmux reads ``new-session -c`` as a format (``#(cmd)`` runs cmd) and ends a command at an argument ending
    in ``;``. A tmux template leaves ``-c`` out (the pane then starts in the client's working directory, the
    folder, which tmux does not expand) and passes the environment with ``-e``, since a running tmux server
    gives new panes its own environment, not the client's::

        tmux new-session -d -s {session} -e HYPIVISOR_WS="$HYPIVISOR_WS" -e HYPI_TOKEN="$HYPI_TOKEN" \\
            -e PI_SOCKET_SPAWN_ID="$PI_SOCKET_SPAWN_ID" pi
    """
    unknown = template_fields(template) - TEMPLATE_FIELDS
    if unknown:
        raise TemplateError(f"HYPI_SPAWN_COMMAND uses unknown placeholders: {', '.join(sorted(unknown))}")
    return ["sh", "-c", template.format(path=shlex.quote(path), session=shlex.quote(session))]
