"""Own agents' quiet changes held for the cluster's tick (hypivisor/cluster/quiet.py)."""

from __future__ import annotations

from hypivisor.cluster.quiet import QuietHold
from pi_socket.protocol import NodeInfo, NodeJoinedEvent, NodeOfflineEvent, NodeRemovedEvent, NodeUpdatedEvent


def node(node_id: str, session: str = "s") -> NodeInfo:
    return NodeInfo(id=node_id, machine="m", cwd="/p", port=1, status="active", last_seen=0.0, session_name=session)


def updated(node_id: str, session: str) -> NodeUpdatedEvent:
    return NodeUpdatedEvent(node=node(node_id, session))


def test_updates_are_held_until_the_tick_and_only_the_latest_of_a_node_goes_out() -> None:
    q = QuietHold()
    assert q.hold([updated("a", "one"), updated("b", "x")]) == []
    assert q.hold([updated("a", "two")]) == []
    assert len(q) == 2
    out = q.release()
    assert [(e.node.id, e.node.session_name) for e in out] == [("b", "x"), ("a", "two")]  # in the latest's order
    assert q.release() == [] and len(q) == 0


def test_other_events_go_out_at_once_after_the_held_update_of_their_node() -> None:
    q = QuietHold()
    q.hold([updated("a", "renamed"), updated("b", "x")])
    joined = NodeJoinedEvent(node=node("c"))
    offline = NodeOfflineEvent(id="a")
    out = q.hold([joined, offline])
    assert out[0] is joined  # another node: nothing released for it
    assert [type(e).__name__ for e in out[1:]] == ["NodeUpdatedEvent", "NodeOfflineEvent"]
    assert out[1].node.session_name == "renamed"  # the rename is shown before the node goes offline
    assert [e.node.id for e in q.release()] == ["b"]  # b is still held until the tick


def test_a_removal_or_a_join_of_a_held_node_releases_it_first() -> None:
    q = QuietHold()
    q.hold([updated("a", "one")])
    out = q.hold([NodeRemovedEvent(id="a", reason="deregistered"), NodeJoinedEvent(node=node("a", "two"))])
    assert [e.event for e in out] == ["node_updated", "node_removed", "node_joined"]
    assert q.release() == []


def test_an_update_the_caller_does_not_call_quiet_goes_out_at_once_after_the_held_one() -> None:
    q = QuietHold()
    q.hold([updated("a", "one")])
    moved = updated("a", "one")  # e.g. another hypivisor now owns it: shown at once
    out = q.hold([moved], quiet=False)
    assert [e.node.session_name for e in out] == ["one", "one"] and out[1] is moved
    assert q.release() == []
