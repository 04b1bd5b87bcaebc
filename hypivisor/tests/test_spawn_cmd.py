"""Building the spawn command: names, explicit environment, argv, templates."""

from __future__ import annotations

import shlex

import pytest

from hypivisor import spawn_cmd
from hypivisor.spawner import Pending
from pi_socket.protocol import NodeInfo


@pytest.mark.parametrize(
    "folder,expected",
    [("my.project", "pi-my-project-ab12cd"), ("a:b c", "pi-a-b-c-ab12cd"), ("", "pi-home-ab12cd"),
     ("x" * 100, "pi-" + "x" * 40 + "-ab12cd"), ("..", "pi-home-ab12cd")],
)  # fmt: skip
def test_session_names_are_tmux_safe(folder, expected):
    name = spawn_cmd.session_name(folder, "ab12cd")
    assert name == expected and "." not in name and ":" not in name


def test_child_env_is_an_allow_list_plus_registration():
    parent = {"PATH": "/bin", "HOME": "/h", "PI_OFFLINE": "1", "PI_CODING_AGENT_DIR": "/a", "AWS_SECRET": "x",
              "HYPIVISOR_WS": "ws://wrong:1/ws", "HYPI_TOKEN": "stale", "TERM": "dumb"}  # fmt: skip
    env = spawn_cmd.child_env(parent, "ws://127.0.0.1:4000/ws", "tok")
    assert env == {"PATH": "/bin", "HOME": "/h", "PI_OFFLINE": "1", "PI_CODING_AGENT_DIR": "/a",
                   "HYPIVISOR_WS": "ws://127.0.0.1:4000/ws", "HYPI_TOKEN": "tok"}  # fmt: skip


def test_child_env_without_token_has_none():
    assert "HYPI_TOKEN" not in spawn_cmd.child_env({"HYPI_TOKEN": "x"}, "ws://h/ws", None)


def test_tmux_argv_detached_session_with_env_and_remain_on_exit():
    argv = spawn_cmd.tmux_argv("pi-p-1", "/h/p", {"B": "2", "A": "1 two"})
    assert argv[:7] == ["tmux", "new-session", "-d", "-s", "pi-p-1", "-c", "/"]
    i = argv.index("sh")
    env = ["-e", "A=1 two", "-e", "B=2", "-e", "HYPI_SPAWN_DIR=/h/p", "-e", "PI_SOCKET_TMUX_SESSION=pi-p-1"]
    assert argv[i - 8 : i] == env  # the bridge reports its tmux session (a restarted hypivisor knows no spawn)
    assert argv[i : i + 5] == ["sh", "-c", 'cd -- "$HYPI_SPAWN_DIR" && exec "$@"', "sh", "pi"]
    assert argv[i + 5 :] == [";", "set-option", "-t", "pi-p-1", "remain-on-exit", "on"]


@pytest.mark.parametrize("folder", ["/h/#(id>out)", "/h/#{pane_id}", "/h/-x", "/h/a\nb", "/h/$(id)", "/h/a;b"])
def test_the_folder_reaches_tmux_only_as_an_environment_value(folder):
    """tmux expands formats in -c and in option values, not in -e values or the command's arguments."""
    argv = spawn_cmd.tmux_argv("pi-x-1", folder, {"PATH": "/bin"})
    assert [a for a in argv if folder in a] == [f"HYPI_SPAWN_DIR={folder}"]
    assert argv[argv.index(f"HYPI_SPAWN_DIR={folder}") - 1] == "-e"


@pytest.mark.parametrize("session", ["pi-#(id)", "pi-a.b", "", "x" * 65, "-t"])
def test_an_unsafe_session_name_is_refused(session):
    with pytest.raises(ValueError):
        spawn_cmd.tmux_argv(session, "/h", {})


def test_printable_shows_control_and_bidi_characters_as_escapes():
    assert spawn_cmd.printable("a\u202eb\x1b[31mc\nd\te\u2066") == "a\\u202eb\\u001b[31mc\nd\te\\u2066"


def test_template_quotes_placeholders():
    argv = spawn_cmd.template_argv("cd {path} && exec pi --name {session}", "/h/it's here; rm -rf /", "s-1")
    assert argv[:2] == ["sh", "-c"]
    assert shlex.split(argv[2]) == ["cd", "/h/it's here; rm -rf /", "&&", "exec", "pi", "--name", "s-1"]


@pytest.mark.parametrize("template", ["cd {dir} && pi", "cd {path && pi", "{0}"])
def test_bad_templates_are_refused(template):
    with pytest.raises(spawn_cmd.TemplateError):
        spawn_cmd.template_argv(template, "/h", "s")


def node(pid=None, cwd="/h/p"):
    return NodeInfo(id="n", machine="m", cwd=cwd, port=1, pid=pid)


async def test_only_the_spawn_secret_resolves_a_spawn():
    import os

    from hypivisor.spawner import Spawner

    sp = Spawner(template=None, timeout=1)
    first = Pending(cwd="/h/p", started_at=1.0, pane_pid=os.getpid())
    mine = Pending(cwd="/h/p", started_at=1.0)
    sp.pending += [first, mine]
    assert first.spawn_id != mine.spawn_id and len(mine.spawn_id) >= 32
    assert not sp.node_registered(node(pid=os.getpid()), None)  # same folder, the pane's own pid: not enough
    assert not sp.node_registered(node(), "guess")
    assert sp.node_registered(node(), mine.spawn_id) and mine.future.done() and not first.future.done()
    assert not sp.node_registered(node(), mine.spawn_id)  # single use


async def test_spawn_admission_limits_concurrency_and_rate():
    from hypivisor.spawner import Spawner, SpawnError

    sp = Spawner(template=None, timeout=1, max_concurrent=2, rate_per_minute=3)
    sp.admit()
    sp.admit()
    with pytest.raises(SpawnError) as exc:
        sp.admit()
    assert exc.value.code == 1008 and "already starting" in exc.value.message
    sp.release()
    sp.release()
    sp.admit()
    with pytest.raises(SpawnError) as exc:  # the fourth within a minute
        sp.admit()
    assert exc.value.code == 1008 and "short time" in exc.value.message


def test_child_env_keeps_the_folders_that_locate_the_machine_service():
    parent = {"XDG_RUNTIME_DIR": "/run/user/1", "XDG_STATE_HOME": "/s", "XDG_CONFIG_HOME": "/c", "XDG_OTHER": "x"}
    env = spawn_cmd.child_env(parent, "ws://h/ws", None)
    assert (env["XDG_RUNTIME_DIR"], env["XDG_STATE_HOME"], env["XDG_CONFIG_HOME"]) == ("/run/user/1", "/s", "/c")
    assert "XDG_OTHER" not in env
