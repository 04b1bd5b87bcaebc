"""A spawned agent's tmux session on its roster card: set by the spawn that started it, kept across
re-registrations of the same id, never taken from what a bridge says about itself."""

from __future__ import annotations

from hypivisor.registry import Registry
from pi_socket.protocol import NodeInfo, RegisterParams


def reg(**kw) -> RegisterParams:
    return RegisterParams(id="a", machine="m1", cwd="/home/u/p", port=8080, node_secret="k" * 32, **kw)


def test_the_spawns_tmux_session_is_published_and_survives_a_reconnect():
    r = Registry(30.0)
    node, _, _ = r.register(reg(), "c1", "127.0.0.1", now=1.0)
    assert node.tmux_session is None
    [ev] = r.set_tmux_session("a", "hypi-p-1a2b3c")
    assert ev.node.tmux_session == "hypi-p-1a2b3c"
    assert r.set_tmux_session("a", "hypi-p-1a2b3c") == []  # unchanged: no event
    assert r.set_tmux_session("nobody", "x") == [] and r.set_tmux_session("a", None) == []
    r.connection_closed("c1", now=2.0)
    node, _, _ = r.register(reg(), "c2", "127.0.0.1", now=3.0)  # the bridge reconnects: still in that tmux
    assert node.tmux_session == "hypi-p-1a2b3c"
    assert r.nodes()[0].tmux_session == "hypi-p-1a2b3c"


def test_a_registration_cannot_name_a_tmux_session_and_old_peers_see_no_new_field():
    assert "tmux_session" not in RegisterParams.model_fields
    r = Registry(30.0)
    node, _, _ = r.register(reg(), "c1", "127.0.0.1", now=1.0)
    assert "tmux_session" not in node.model_dump(mode="json")  # absent, not null: additive on the wire
    assert NodeInfo.model_validate({**node.model_dump(mode="json"), "tmux_session": "s"}).tmux_session == "s"
