"""Building the spawn command: names, explicit environment, argv, templates."""

from __future__ import annotations

import shlex

import pytest

from hypivisor import spawn_cmd
from hypivisor.spawner import Pending, matches
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
    assert argv[:7] == ["tmux", "new-session", "-d", "-s", "pi-p-1", "-c", "/h/p"]
    i = argv.index("pi")
    assert argv[i - 4 : i] == ["-e", "A=1 two", "-e", "B=2"]
    assert argv[i + 1 :] == [";", "set-option", "-t", "pi-p-1", "remain-on-exit", "on"]


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


async def test_spawn_matching_by_process_tree_or_cwd_after_start():
    p = Pending(cwd="/h/p", started_at=100.0, pane_pid=4242)
    assert matches(p, node(pid=99, cwd="/elsewhere"), 101.0, [99, 4242, 1])
    assert matches(p, node(pid=None), 100.5, [])
    assert not matches(p, node(pid=None), 99.0, [])  # registered before the spawn started
    assert not matches(p, node(pid=7, cwd="/h/other"), 101.0, [7, 3])


async def test_two_spawns_in_one_folder_get_their_own_nodes():
    import os

    from hypivisor.spawner import Spawner

    sp = Spawner(template=None, timeout=1)
    first = Pending(cwd="/h/p", started_at=1.0, pane_pid=999_999_001)
    mine = Pending(cwd="/h/p", started_at=1.0, pane_pid=os.getpid())
    sp.pending += [first, mine]
    sp.node_registered(node(pid=os.getpid()), 2.0)  # our own pid: its ancestry contains itself
    assert mine.future.done() and not first.future.done()
    sp.node_registered(node(pid=None), 3.0)  # no pid: falls back to cwd + time, first open spawn
    assert first.future.done()
