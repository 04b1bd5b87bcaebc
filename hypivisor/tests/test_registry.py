"""The roster state machine, driven without sockets or clocks."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hypivisor.registry import Registry, RegistryError
from pi_socket.protocol import HeartbeatParams, RegisterParams, TokenTotals

TTL = 30.0
SECRET = "k" * 32


def reg(node_id="a", machine="m1", port=8080, cwd="/home/u/p", **kw) -> RegisterParams:
    return RegisterParams(id=node_id, machine=machine, cwd=cwd, port=port, **kw)


def kinds(events):
    return [(e.event, getattr(e, "id", None) or e.node.id) for e in events]


@pytest.fixture
def r() -> Registry:
    return Registry(TTL)


def test_register_adds_an_active_node_owned_by_the_connection(r):
    node, _, events = r.register(reg(pid=42), "c1", "10.0.0.5", now=100.0)
    assert node.status == "active" and node.last_seen == 100.0 and node.pid == 42
    assert kinds(events) == [("node_joined", "a")]
    assert r.get("a").owner == "c1" and r.get("a").host == "10.0.0.5"


def test_the_proxy_dials_the_registering_peer_never_a_client_named_host(r):
    r.register(reg("a", port=1, host="192.168.1.9"), "c1", "10.0.0.5", now=1)
    assert r.get("a").host == "10.0.0.5"  # an open relay otherwise: the client would pick what the proxy dials
    r.register(reg("b", port=2, host="10.0.0.6"), "c2", "10.0.0.6", now=1)
    assert r.get("b").host == "10.0.0.6"
    r.register(reg("c", port=3, host="127.0.0.1"), "c3", "::1", now=1)
    assert r.get("c").host == "127.0.0.1"  # both loopback: the same machine
    r.register(reg("d", port=4, host="127.0.0.1"), "c4", "10.0.0.7", now=1)
    assert r.get("d").host == "10.0.0.7"  # a remote peer cannot aim the proxy at the hypivisor's own loopback


def test_reregister_same_id_replaces_without_eviction_event(r):
    r.register(reg(node_secret=SECRET), "c1", "h", now=1)
    r.connection_closed("c1", now=2)
    node, _, events = r.register(reg(session_name="s", node_secret=SECRET), "c2", "h", now=3)
    assert kinds(events) == [("node_joined", "a")]
    assert node.status == "active" and node.offline_since is None and node.session_name == "s"
    assert len(r) == 1 and r.get("a").owner == "c2"


def test_same_machine_and_port_evicts_the_old_id(r):
    r.register(reg("old"), "c1", "h", now=1)
    _, _, events = r.register(reg("new"), "c2", "h", now=2)
    assert kinds(events) == [("node_removed", "old"), ("node_joined", "new")]
    assert events[0].reason == "evicted"
    assert [n.id for n in r.nodes()] == ["new"]


def test_many_agents_in_one_folder_are_never_evicted_by_cwd(r):
    for i in range(5):
        _, _, events = r.register(reg(f"n{i}", port=8080 + i, cwd="/same"), f"c{i}", "h", now=i)
        assert [e.event for e in events] == ["node_joined"]
    assert len(r) == 5


def test_same_port_on_another_machine_is_a_different_agent(r):
    r.register(reg("a", machine="m1"), "c1", "h", now=1)
    _, _, events = r.register(reg("b", machine="m2"), "c2", "h", now=1)
    assert [e.event for e in events] == ["node_joined"] and len(r) == 2


def test_owner_closing_marks_offline(r):
    r.register(reg(), "c1", "h", now=1)
    assert kinds(r.connection_closed("c1", now=5)) == [("node_offline", "a")]
    assert r.get("a").node.status == "offline" and r.get("a").node.offline_since == 5


def test_stale_socket_closing_late_does_not_mark_new_registration_offline(r):
    r.register(reg(node_secret=SECRET), "old-socket", "h", now=1)
    r.register(reg(node_secret=SECRET), "new-socket", "h", now=2)
    assert r.connection_closed("old-socket", now=3) == []
    assert r.get("a").node.status == "active"


def test_closing_a_dashboard_changes_nothing(r):
    r.register(reg(), "c1", "h", now=1)
    assert r.connection_closed("dashboard", now=2) == []


def test_offline_node_removed_after_ttl_not_before(r):
    r.register(reg(), "c1", "h", now=0)
    r.connection_closed("c1", now=10)
    assert r.sweep(now=10 + TTL) == []
    events = r.sweep(now=10 + TTL + 0.1)
    assert kinds(events) == [("node_removed", "a")] and events[0].reason == "ttl"
    assert len(r) == 0


def test_active_ghost_removed_after_three_ttl_of_silence(r):
    r.register(reg(), "c1", "h", now=0)
    assert r.sweep(now=3 * TTL) == []
    events = r.sweep(now=3 * TTL + 0.1)
    assert kinds(events) == [("node_removed", "a")] and events[0].reason == "ghost"


def test_heartbeat_keeps_an_active_node_alive(r):
    r.register(reg(), "c1", "h", now=0)
    assert r.heartbeat(HeartbeatParams(id="a"), "c1", now=80) == []
    assert r.sweep(now=80 + 3 * TTL - 1) == []


def test_any_frame_from_the_owner_counts_as_alive(r):
    r.register(reg(), "c1", "h", now=0)
    r.touch("c1", now=50)
    assert r.nodes()[0].last_seen == 50
    assert r.sweep(now=50 + 3 * TTL - 1) == []
    r.touch("dashboard", now=60)  # a connection that owns nothing costs nothing and changes nothing
    assert len(r) == 1


def test_heartbeat_with_changes_emits_one_node_updated(r):
    r.register(reg(), "c1", "h", now=0)
    events = r.heartbeat(HeartbeatParams(id="a", activity="working", tokens=TokenTotals(total=7)), "c1", now=1)
    assert kinds(events) == [("node_updated", "a")]
    assert events[0].node.activity == "working" and events[0].node.tokens.total == 7


def test_heartbeat_repeating_same_values_is_silent(r):
    r.register(reg(model="x"), "c1", "h", now=0)
    assert r.heartbeat(HeartbeatParams(id="a", model="x", activity="idle"), "c1", now=1) == []
    assert r.get("a").node.last_seen == 1


def test_heartbeat_from_unknown_or_foreign_connection_asks_to_reregister(r):
    with pytest.raises(RegistryError) as e:
        r.heartbeat(HeartbeatParams(id="zz"), "c1", now=0)
    assert e.value.code == 1006
    r.register(reg(), "c1", "h", now=0)
    with pytest.raises(RegistryError):
        r.heartbeat(HeartbeatParams(id="a"), "c2", now=1)


def test_deregister_removes_and_reports(r):
    r.register(reg(), "c1", "h", now=0)
    events = r.deregister("a", "c1", now=1)
    assert kinds(events) == [("node_removed", "a")] and events[0].reason == "deregistered"
    with pytest.raises(RegistryError) as e:
        r.deregister("a", "c1", now=2)
    assert e.value.code == 1006


def test_only_the_owning_connection_may_deregister(r):
    r.register(reg("a", port=1), "c1", "h", now=0)
    r.register(reg("b", port=2), "c2", "h", now=0)
    for stranger in ("c1", "dashboard"):
        with pytest.raises(RegistryError) as e:
            r.deregister("b", stranger, now=1)
        assert e.value.code == 1002 and len(r) == 2
    r.deregister("b", "c2", now=1)
    assert [n.id for n in r.nodes()] == ["a"]


# --------------------------------------------------------------------------- ownership (takeover)


def test_the_first_registration_is_issued_a_secret_and_a_known_id_needs_it(r):
    _, issued, _ = r.register(reg(), "c1", "10.0.0.5", now=0, new_secret="s" * 43)
    assert issued == "s" * 43
    for conn, params in (("evil", reg()), ("evil", reg(node_secret="x" * 20)), ("evil", reg(port=9, cwd="/x"))):
        with pytest.raises(RegistryError) as e:
            r.register(params, conn, "10.0.0.66", now=1)
        assert e.value.code == 1002 and "belongs to another agent" in e.value.message
    assert r.get("a").owner == "c1" and r.get("a").host == "10.0.0.5"
    r.connection_closed("c1", now=2)  # offline: the id still belongs to its secret
    with pytest.raises(RegistryError):
        r.register(reg(), "evil", "10.0.0.66", now=3)
    node, again, _ = r.register(reg(node_secret="s" * 43), "c2", "10.0.0.5", now=4)
    assert node.status == "active" and again is None and r.get("a").owner == "c2"


def test_the_owning_connection_may_register_its_id_again_without_the_secret(r):
    r.register(reg(), "c1", "h", now=0, new_secret="s" * 43)
    _, issued, _ = r.register(reg(session_name="x"), "c1", "h", now=1)
    assert issued is None and r.get("a").node.session_name == "x"


def test_after_a_restart_the_first_registration_adopts_the_secret_it_presents(r):
    _, issued, _ = r.register(reg(node_secret=SECRET), "c1", "h", now=0, new_secret="new" * 11)
    assert issued is None  # it keeps the secret it had; nothing new to hand out
    with pytest.raises(RegistryError):
        r.register(reg(node_secret="y" * 32), "c2", "h2", now=1)


def test_a_nodes_address_is_not_evicted_from_another_peer_active_or_offline(r):
    r.register(reg("victim", port=8080), "c1", "10.0.0.5", now=0)
    with pytest.raises(RegistryError) as e:
        r.register(reg("intruder", port=8080), "c2", "10.0.0.66", now=1)
    assert e.value.code == 1002 and [n.id for n in r.nodes()] == ["victim"]
    _, _, events = r.register(reg("restarted", port=8080), "c3", "10.0.0.5", now=2)  # pi restarted on that machine
    assert kinds(events) == [("node_removed", "victim"), ("node_joined", "restarted")]
    r.connection_closed("c3", now=3)
    with pytest.raises(RegistryError):  # offline too: evicting it would free its id for the stranger to claim
        r.register(reg("other", port=8080), "c4", "10.0.0.66", now=4)
    r.sweep(now=3 + TTL + 1)
    _, _, events = r.register(reg("other", port=8080), "c4", "10.0.0.66", now=TTL + 5)  # swept: the address is free
    assert kinds(events) == [("node_joined", "other")]


def test_heartbeat_and_deregister_of_a_foreign_node_change_nothing(r):
    r.register(reg(), "c1", "h", now=0)
    with pytest.raises(RegistryError):
        r.heartbeat(HeartbeatParams(id="a", session_name="pwned"), "evil", now=1)
    with pytest.raises(RegistryError):
        r.deregister("a", "evil", now=1)
    assert r.get("a").node.session_name is None and r.get("a").owner == "c1"


def test_nodes_per_connection_and_in_total_are_capped():
    r = Registry(TTL, max_nodes=5, max_per_connection=3)
    for i in range(3):
        r.register(reg(f"n{i}", port=i + 1), "c1", "h", now=0)
    with pytest.raises(RegistryError) as e:
        r.register(reg("n3", port=4), "c1", "h", now=0)
    assert e.value.code == 1008 and "at most 3" in e.value.message
    r.register(reg("n3", port=4), "c2", "h", now=0)
    r.register(reg("n4", port=5), "c2", "h", now=0)
    with pytest.raises(RegistryError) as e:
        r.register(reg("n5", port=6), "c3", "h", now=0)
    assert e.value.code == 1008 and "full" in e.value.message
    r.register(reg("n0", port=1, session_name="again"), "c1", "h", now=1)  # re-registering is not a new node
    _, _, events = r.register(reg("n9", port=5), "c2", "h", now=2)  # replacing an evicted one is allowed
    assert kinds(events) == [("node_removed", "n4"), ("node_joined", "n9")]


def test_touch_is_constant_time_whatever_a_connection_owns():
    """A frame from a connection owning 1,000 nodes must not walk them (it walked every node before)."""
    import time

    small, big = Registry(TTL), Registry(TTL)
    small.register(reg("x", port=1), "c", "h", now=0)
    for i in range(1000):
        big.register(reg(f"n{i}", port=i + 1), "c", "h", now=0)

    def cost(reg_: Registry) -> float:
        t = time.perf_counter()
        for k in range(2000):
            reg_.touch("c", now=float(k))
        return time.perf_counter() - t

    cost(small), cost(big)
    assert min(cost(big) for _ in range(3)) < 5 * min(cost(small) for _ in range(3))


def test_snapshot_is_a_copy(r):
    r.register(reg(), "c1", "h", now=0)
    r.nodes()[0].status = "offline"
    assert r.get("a").node.status == "active"


def test_an_id_that_moves_to_another_port_frees_its_old_address(r):
    r.register(reg("a", port=1), "c1", "h", now=0)
    r.register(reg("a", port=2), "c1", "h", now=1)
    _, _, events = r.register(reg("b", port=1), "c2", "h", now=2)
    assert kinds(events) == [("node_joined", "b")]  # nobody is evicted from the freed port
    _, _, events = r.register(reg("c", port=2), "c3", "h", now=3)
    assert kinds(events) == [("node_removed", "a"), ("node_joined", "c")]


def test_events_and_snapshots_do_not_change_when_the_node_does(r):
    node, _, events = r.register(reg(), "c1", "h", now=0)
    snap = r.nodes()[0]
    r.heartbeat(HeartbeatParams(id="a", activity="working", session_name="renamed"), "c1", now=5)
    r.connection_closed("c1", now=6)
    for copy in (node, events[0].node, snap):
        assert (copy.status, copy.activity, copy.session_name, copy.last_seen) == ("active", node.activity, None, 0)


def test_heartbeat_interval_is_a_third_of_ttl():
    assert Registry(30).heartbeat_interval == 10
    with pytest.raises(ValueError):
        Registry(0)


# --------------------------------------------------------------------------- properties

ops = st.lists(
    st.one_of(
        st.tuples(st.just("register"), st.sampled_from("abcd"), st.sampled_from([1, 2, 3]), st.sampled_from("xyz")),
        st.tuples(st.just("close"), st.sampled_from("xyz")),
        st.tuples(st.just("deregister"), st.sampled_from("abcd"), st.sampled_from("xyz")),
        st.tuples(st.just("heartbeat"), st.sampled_from("abcd"), st.sampled_from("xyz")),
        st.tuples(st.just("tick"), st.floats(min_value=0, max_value=100)),
    ),
    max_size=40,
)


@settings(max_examples=300, deadline=None)
@given(ops)
def test_invariants_hold_for_any_sequence(sequence):
    r = Registry(TTL)
    now = 0.0
    for op in sequence:
        kind = op[0]
        try:
            if kind == "register":
                r.register(reg(op[1], port=op[2]), op[3], "h", now)
            elif kind == "close":
                events = r.connection_closed(op[1], now)
                assert all(e.event == "node_offline" for e in events)
            elif kind == "deregister":
                r.deregister(op[1], op[2], now)
            elif kind == "heartbeat":
                r.heartbeat(HeartbeatParams(id=op[1]), op[2], now)
            else:
                now += op[1]
                r.sweep(now)
        except RegistryError:
            pass
        nodes = r.nodes()
        keys = [(n.machine, n.port) for n in nodes]
        assert len(keys) == len(set(keys)), "machine:port is unique"
        assert r._by_addr == {(n.machine, n.port): n.id for n in nodes}, "the address index matches the roster"
        for n in nodes:
            entry = r.get(n.id)
            assert (n.status == "offline") == (entry.owner is None), "offline exactly when nobody owns it"
            assert (n.offline_since is not None) == (n.status == "offline")
            if kind == "tick":  # right after a sweep nothing expired is left
                if n.status == "offline":
                    assert now - n.offline_since <= TTL
                else:
                    assert now - n.last_seen <= 3 * TTL


def test_release_lets_an_offline_node_go_at_once_and_never_a_live_one(r):
    """Cluster mode: an agent whose connection here closed registered with another hypivisor; its offline entry
    here goes now (one node_removed without a reason: it neither deregistered nor timed out)."""
    r.register(reg("live"), "c1", "127.0.0.1", now=1.0)
    r.register(reg("moved", port=8081), "c2", "127.0.0.1", now=1.0)
    assert r.release("live") == [] and r.get("live") is not None
    r.connection_closed("c2", now=2.0)
    assert r.get("moved").node.status == "offline"
    (removed,) = r.release("moved")
    assert removed.id == "moved" and removed.reason is None
    assert r.get("moved") is None and r.release("moved") == []
    # its address is free again
    r.register(reg("other", port=8081), "c3", "127.0.0.1", now=3.0)
