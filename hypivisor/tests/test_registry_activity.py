"""What a roster card shows besides the id: the git branch, and since when the agent works or idles."""

from __future__ import annotations

from hypivisor.registry import Registry
from pi_socket.protocol import HeartbeatParams, RegisterParams


def reg(**kw) -> RegisterParams:
    return RegisterParams(id="a", machine="m1", cwd="/home/u/p", port=8080, node_secret="k" * 32, **kw)


def test_activity_since_is_registration_then_each_change_of_activity():
    r = Registry(30.0)
    node, _, _ = r.register(reg(), "c1", "127.0.0.1", now=100.0)
    assert node.activity_since == 100.0
    assert r.heartbeat(HeartbeatParams(id="a"), "c1", now=105.0) == []  # nothing changed: no event
    [ev] = r.heartbeat(HeartbeatParams(id="a", activity="working"), "c1", now=110.0)
    assert ev.node.activity == "working" and ev.node.activity_since == 110.0
    [ev] = r.heartbeat(HeartbeatParams(id="a", session_name="x", activity="working"), "c1", now=120.0)
    assert ev.node.activity_since == 110.0  # still the same run
    [ev] = r.heartbeat(HeartbeatParams(id="a", activity="idle"), "c1", now=130.0)
    assert ev.node.activity_since == 130.0


def test_a_reconnect_in_the_same_activity_keeps_its_start():
    r = Registry(30.0)
    r.register(reg(activity="working"), "c1", "127.0.0.1", now=100.0)
    r.connection_closed("c1", now=101.0)
    node, _, _ = r.register(reg(activity="working"), "c2", "127.0.0.1", now=105.0)
    assert node.activity_since == 100.0
    node, _, _ = r.register(reg(activity="idle"), "c2", "127.0.0.1", now=106.0)
    assert node.activity_since == 106.0


def test_git_branch_is_stored_and_updated_by_heartbeat():
    r = Registry(30.0)
    node, _, _ = r.register(reg(git_branch="main"), "c1", "127.0.0.1", now=1.0)
    assert node.git_branch == "main"
    [ev] = r.heartbeat(HeartbeatParams(id="a", git_branch="feature/x"), "c1", now=2.0)
    assert ev.node.git_branch == "feature/x"
