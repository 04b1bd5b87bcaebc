"""Hostile folder names in the spawn path, pure parts: tmux's command line, messages, the spawn secret."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hypivisor import paths, spawn_cmd
from hypivisor.spawner import Pending, Spawner
from pi_socket.protocol import NodeInfo


def tmux_commands(argv: list[str]) -> list[list[str]]:
    """How tmux (3.x) cuts its command line into commands: an argument ending in ``;`` ends a command (the
    ``;`` dropped, the argument kept when anything is left), a trailing ``\\;`` is a literal ``;``."""
    commands: list[list[str]] = [[]]
    for arg in argv:
        if arg.endswith(";"):
            arg = arg[:-1]
            if arg.endswith("\\"):
                commands[-1].append(arg[:-1] + ";")
                continue
            if arg:
                commands[-1].append(arg)
            commands.append([])
        else:
            commands[-1].append(arg)
    return [c for c in commands if c]


HOSTILE = ["/h/x;", "/h/x\\;", "/h/x\\\\;", "/h/;", "/h/#(id>out)", "/h/#{pane_id}", "/h/-x", "/h/a\nb", "/h/$(id);"]


@pytest.mark.parametrize("folder", HOSTILE)
def test_tmux_reads_back_exactly_the_folder_and_two_commands(folder):
    """The folder cannot end new-session early or arrive as another folder (``x\\;`` read as ``x;``)."""
    argv = spawn_cmd.tmux_argv("pi-x-1", folder, {"PATH": "/bin", "PI_X": "ends;"})
    new_session, set_option = tmux_commands(argv[1:])
    env = new_session[new_session.index("sh") - 8 : new_session.index("sh")]
    assert env == [
        "-e",
        f"HYPI_SPAWN_DIR={folder}",
        "-e",
        "PATH=/bin",
        "-e",
        "PI_SOCKET_TMUX_SESSION=pi-x-1",
        "-e",
        "PI_X=ends;",
    ]
    assert new_session[-5:] == ["sh", "-c", 'cd -- "$HYPI_SPAWN_DIR" && exec "$@"', "sh", "pi"]
    assert set_option == ["set-option", "-t", "pi-x-1", "remain-on-exit", "on"]
    assert "-c" in new_session and new_session[new_session.index("-c") + 1] == "/"


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_tmux_literal_round_trips_any_argument(arg):
    assert tmux_commands(["cmd", spawn_cmd.tmux_literal(arg), "end"]) == [["cmd", arg, "end"]]


@pytest.mark.parametrize("name", ["a\u202eexe.txt", "a\nb", "\x1b[31mred", "tab\tx", "x\u2066y"])
def test_error_messages_repeat_a_name_without_control_or_bidi_characters(tmp_path, name):
    for call in (lambda: paths.resolve_dir(f"missing/{name}", str(tmp_path)),
                 lambda: paths.resolve_dir(f"/etc/{name}", str(tmp_path))):  # fmt: skip
        with pytest.raises(paths.PathError) as exc:
            call()
        message = exc.value.message
        assert not any(ord(c) < 32 or 0x7F <= ord(c) <= 0x9F or c in "\u202e\u2066" for c in message), message
    (tmp_path / name).write_text("a file")
    with pytest.raises(paths.PathError) as exc:
        paths.spawn_target("", name, str(tmp_path))
    assert exc.value.message.startswith(spawn_cmd.printable(name, lines=False)), exc.value.message


def test_a_long_name_is_cut_in_messages(tmp_path):
    with pytest.raises(paths.PathError) as exc:
        paths.resolve_dir("x" * 4000, str(tmp_path))
    assert len(exc.value.message) < 300 and exc.value.message.endswith("…")


def test_printable_keeps_lines_only_when_asked():
    assert spawn_cmd.printable("a\nb\tc\u2028d", lines=False) == "a\\u000ab\\u0009c\\u2028d"
    assert spawn_cmd.printable("a\nb\tc") == "a\nb\tc"


def node(cwd="/h/p"):
    return NodeInfo(id="n", machine="m", cwd=cwd, port=1, pid=1)


async def test_a_spawn_secret_is_random_single_use_and_never_matched_by_prefix():
    sp = Spawner(template=None, timeout=1)
    a, b = Pending(cwd="/h/p", started_at=1.0), Pending(cwd="/h/p", started_at=1.0)
    sp.pending += [a, b]
    assert a.spawn_id != b.spawn_id and len(a.spawn_id) >= 32
    for wrong in ("", a.spawn_id[:-1], a.spawn_id + "x", a.spawn_id.upper(), " " + a.spawn_id):
        assert not sp.node_registered(node(), wrong), wrong
    assert sp.node_registered(node(), a.spawn_id) and a.future.done() and not b.future.done()
    assert not sp.node_registered(node(), a.spawn_id)


@pytest.mark.parametrize("presented", ["é", "\ud800", "\u202e" * 3, "\x00", "x" * 128])
async def test_any_presented_secret_is_compared_without_error(presented):
    """A registration may carry any string as spawn_id; a wrong one is just no match (never an exception)."""
    sp = Spawner(template=None, timeout=1)
    sp.pending.append(Pending(cwd="/h/p", started_at=1.0))
    assert not sp.node_registered(node(), presented)


def test_the_bridge_reads_its_spawn_secret_from_the_environment_bounded():
    from pi_socket.bridge.config import BridgeConfig

    assert BridgeConfig.from_env({"PI_SOCKET_SPAWN_ID": "s3cret"}).spawn_id == "s3cret"
    assert BridgeConfig.from_env({"PI_SOCKET_SPAWN_ID": ""}).spawn_id is None
    assert BridgeConfig.from_env({}).spawn_id is None
    assert len(BridgeConfig.from_env({"PI_SOCKET_SPAWN_ID": "x" * 1000}).spawn_id or "") == 128
