"""A spawned agent's tmux session on its roster card: set by the spawn that started it, kept across
re-registrations of the same id, and reported by the bridge from its spawn's environment (PI_SOCKET_TMUX_SESSION),
so a hypivisor that restarted (and forgot its spawns) still shows it; only a name a spawn makes is taken."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from hypivisor.registry import Registry
from pi_socket.bridge.config import _tmux_session
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


def test_a_bridge_reports_its_spawns_tmux_session_and_old_peers_see_no_new_field():
    r = Registry(30.0)
    node, _, _ = r.register(reg(), "c1", "127.0.0.1", now=1.0)
    assert "tmux_session" not in node.model_dump(mode="json")  # absent, not null: additive on the wire
    assert "tmux_session" not in reg().model_dump(mode="json")  # a bridge started by hand sends nothing new
    # a hypivisor that restarted knows no spawn: the bridge's report names the session
    fresh = Registry(30.0)
    node, _, _ = fresh.register(reg(tmux_session="hypi-p-1a2b3c"), "c1", "127.0.0.1", now=1.0)
    assert node.tmux_session == "hypi-p-1a2b3c"
    # what the spawn set stays what it is
    r.set_tmux_session("a", "hypi-p-000000")
    node, _, _ = r.register(reg(tmux_session="hypi-p-1a2b3c"), "c2", "127.0.0.1", now=2.0)
    assert node.tmux_session == "hypi-p-000000"
    assert NodeInfo.model_validate({**node.model_dump(mode="json"), "tmux_session": "s"}).tmux_session == "s"


@pytest.mark.parametrize("bad", ["", "-x", "a b", "a;rm -rf ~", "a\nb", "x" * 65, "é"])
def test_only_a_name_a_spawn_makes_is_taken(bad: str) -> None:
    with pytest.raises(ValidationError):
        reg(tmux_session=bad)
    assert _tmux_session(bad) is None
    assert _tmux_session("hypi-p-1a2b3c") == "hypi-p-1a2b3c"
