"""``spawn_agent`` with ``session_file``: which files may be resumed, and how the file reaches pi."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest

from hypivisor import paths, spawn_cmd
from hypivisor.config import Config
from hypivisor.paths import PathError
from hypivisor.service import RpcFailure, Service
from pi_socket.protocol import ErrorCode


def header(cwd: str) -> str:
    return json.dumps({"type": "session", "version": 3, "id": "abc", "timestamp": "2026-01-01T00:00:00Z", "cwd": cwd})


@pytest.fixture
def home(tmp_path):
    h = tmp_path / "home"
    (h / "proj").mkdir(parents=True)
    (h / "other").mkdir()
    sessions = h / ".pi" / "agent" / "sessions"
    sessions.mkdir(parents=True)
    (sessions / "ok.jsonl").write_text(header(str(h / "proj")) + "\n" + json.dumps({"type": "message"}) + "\n")
    (sessions / "elsewhere.jsonl").write_text(header(str(h / "other")) + "\n")
    (sessions / "notes.txt").write_text(header(str(h / "proj")) + "\n")
    (sessions / "not-a-session.jsonl").write_text(json.dumps({"type": "message", "cwd": str(h / "proj")}) + "\n")
    (sessions / "garbage.jsonl").write_bytes(b"\xff\xfe not json\n")
    (sessions / "empty.jsonl").write_text("")
    (sessions / "huge-line.jsonl").write_text("x" * (paths.SESSION_HEADER_MAX_BYTES * 2))
    (sessions / "dir.jsonl").mkdir()
    (tmp_path / "outside.jsonl").write_text(header(str(h / "proj")) + "\n")
    (sessions / "link-out.jsonl").symlink_to(tmp_path / "outside.jsonl")
    (sessions / "link-in.jsonl").symlink_to(sessions / "ok.jsonl")
    return h


def code_of(raw: str, spawn_path, home) -> int:
    with pytest.raises(PathError) as e:
        paths.session_file(raw, str(spawn_path), str(home))
    return e.value.code


def test_a_session_of_this_folder_is_accepted_by_absolute_tilde_or_symlink_path(home):
    ok = str(home / ".pi" / "agent" / "sessions" / "ok.jsonl")
    proj = home / "proj"
    assert paths.session_file(ok, str(proj), str(home)) == ok
    assert paths.session_file("~/.pi/agent/sessions/ok.jsonl", str(proj), str(home)) == ok
    assert paths.session_file(".pi/agent/sessions/link-in.jsonl", str(proj), str(home)) == ok


@pytest.mark.parametrize(
    "name,code",
    [
        ("elsewhere.jsonl", ErrorCode.INVALID_PATH),  # another folder's session
        ("notes.txt", ErrorCode.INVALID_PATH),  # not .jsonl
        ("not-a-session.jsonl", ErrorCode.INVALID_PATH),  # no session header
        ("garbage.jsonl", ErrorCode.INVALID_PATH),
        ("empty.jsonl", ErrorCode.INVALID_PATH),
        ("huge-line.jsonl", ErrorCode.INVALID_PATH),  # read bounded, then refused
        ("dir.jsonl", ErrorCode.INVALID_PATH),  # not a regular file
        ("missing.jsonl", ErrorCode.PATH_NOT_FOUND),
        ("link-out.jsonl", ErrorCode.PATH_OUTSIDE_HOME),  # resolves outside $HOME
    ],
)
def test_anything_else_is_refused_with_its_own_code(home, name, code):
    assert code_of(str(home / ".pi" / "agent" / "sessions" / name), home / "proj", home) == code


@pytest.mark.parametrize("raw", ["/etc/passwd", "../outside.jsonl", "/nonexistent/x.jsonl", "a\x00b.jsonl", "x" * 5000])
def test_outside_home_nul_and_overlong_are_refused_before_reading(home, raw):
    assert code_of(raw, home / "proj", home) in (ErrorCode.PATH_OUTSIDE_HOME, ErrorCode.INVALID_PATH)


def test_a_fifo_is_refused_without_blocking(home):
    fifo = home / "proj" / "pipe.jsonl"
    os.mkfifo(fifo)
    assert code_of(str(fifo), home / "proj", home) == ErrorCode.INVALID_PATH


HOSTILE = ["/h/s;.jsonl", "/h/#(id>out).jsonl", "/h/#{pane_id}.jsonl", "/h/-x.jsonl", "/h/a\nb.jsonl", "/h/$(id).jsonl"]


@pytest.mark.parametrize("file", HOSTILE)
def test_the_session_file_reaches_tmux_only_as_an_environment_value(file):
    argv = spawn_cmd.tmux_argv("pi-x-1", "/h", {"PATH": "/bin"}, session_file=file)
    carriers = [a for a in argv if file.rstrip(";") in a]
    assert carriers == [spawn_cmd.tmux_literal(f"HYPI_SPAWN_SESSION_FILE={file}")]
    assert argv[argv.index(carriers[0]) - 1] == "-e"
    i = argv.index("sh")
    assert argv[i : i + 5] == [
        "sh", "-c", 'cd -- "$HYPI_SPAWN_DIR" && exec "$@" --session "$HYPI_SPAWN_SESSION_FILE"', "sh", "pi",
    ]  # fmt: skip


def test_without_a_session_file_the_command_is_unchanged():
    argv = spawn_cmd.tmux_argv("pi-x-1", "/h", {})
    assert 'cd -- "$HYPI_SPAWN_DIR" && exec "$@"' in argv and not any("SESSION_FILE" in a for a in argv)


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux not installed")
@pytest.mark.parametrize("file", HOSTILE)
def test_real_tmux_hands_pi_exactly_the_session_file(tmp_path, file):
    """A real tmux server runs the argv with ``printf`` standing in for pi: it prints its arguments as given."""
    out = tmp_path / "args"
    env = {**os.environ, "TMUX_TMPDIR": str(tmp_path)}
    cmd = ["sh", "-c", 'printf "%s\\n" "$@" > "$0"', str(out)]  # "$0" = where, "$@" = what pi would get
    argv = spawn_cmd.tmux_argv("pi-r-1", str(tmp_path), {"PATH": os.environ["PATH"]}, command=cmd, session_file=file)
    try:
        subprocess.run(argv, env=env, check=True, capture_output=True, timeout=10)
        for _ in range(100):
            if out.exists() and out.read_text().endswith("\n"):
                break
            subprocess.run(["sleep", "0.05"], check=True)
        assert out.read_text() == f"--session\n{file}\n"
    finally:
        subprocess.run(["tmux", "kill-server"], env=env, capture_output=True, timeout=10)


def service(home, path="/nonexistent", **config) -> Service:
    return Service(Config(host="127.0.0.1", **config), env={"HOME": str(home), "PATH": path})


async def refused(svc: Service, params: dict) -> RpcFailure:
    with pytest.raises(RpcFailure) as e:
        await svc.dispatch("spawn_agent", params, "conn", "127.0.0.1")
    return e.value


async def test_spawn_agent_refuses_bad_session_files_with_clear_errors_and_starts_nothing(home):
    svc = service(home)
    ok = str(home / ".pi" / "agent" / "sessions" / "ok.jsonl")
    e = await refused(svc, {"path": str(home / "other"), "session_file": ok})
    assert e.code == ErrorCode.INVALID_PATH and "another folder" in e.message
    e = await refused(svc, {"path": str(home), "new_folder": "proj", "session_file": ok})
    assert e.code == ErrorCode.INVALID_PARAMS and "new_folder" in e.message
    e = await refused(svc, {"path": str(home / "proj"), "session_file": "/etc/passwd"})
    assert e.code == ErrorCode.PATH_OUTSIDE_HOME
    e = await refused(svc, {"path": str(home / "proj"), "session_file": 42})
    assert e.code == ErrorCode.INVALID_PARAMS
    assert svc.spawner.active == 0  # refused before admission: no spawn budget spent
    # a valid file gets as far as starting pi (no tmux in this PATH: a spawn error, not a path error)
    e = await refused(svc, {"path": str(home / "proj"), "session_file": ok})
    assert e.code == ErrorCode.SPAWN_FAILED and "tmux" in e.message


async def test_a_template_that_cannot_resume_is_refused_one_that_can_gets_the_file(home, tmp_path):
    ok = str(home / ".pi" / "agent" / "sessions" / "ok.jsonl")
    e = await refused(
        service(home, spawn_command="pi-launcher {path}"), {"path": str(home / "proj"), "session_file": ok}
    )
    assert e.code == ErrorCode.SPAWN_FAILED and "HYPI_SPAWN_SESSION_FILE" in e.message
    out = tmp_path / "seen"
    template = f'printf "%s" "$HYPI_SPAWN_SESSION_FILE" > {out}; sleep 30'
    svc = service(home, path=os.environ["PATH"], spawn_command=template, spawn_timeout=1.0)
    e = await refused(svc, {"path": str(home / "proj"), "session_file": "~/.pi/agent/sessions/ok.jsonl"})
    assert e.code == ErrorCode.SPAWN_TIMEOUT  # nothing registers; what the template saw is the resolved file
    assert out.read_text() == ok
