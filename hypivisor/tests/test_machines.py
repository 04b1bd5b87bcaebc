"""The machine book (hypivisor/machines.py): who is listed, online/offline, agent counts, name ownership."""

from __future__ import annotations

import pytest

from hypivisor.machines import MachineBook, MachineError
from pi_socket.protocol import (
    MachineFacts,
    MachineJoinedEvent,
    MachineLeftEvent,
    MachineUpdatedEvent,
    NodeInfo,
    NodeJoinedEvent,
    NodeOfflineEvent,
    NodeRemovedEvent,
    NodeUpdatedEvent,
)

SECRET = "s" * 32


def node(nid: str, machine: str, status: str = "active") -> NodeInfo:
    return NodeInfo(id=nid, machine=machine, cwd="/w", port=8080, status=status)  # type: ignore[arg-type]


def facts(home: str = "/home/b") -> MachineFacts:
    return MachineFacts(os="Linux", pi_versions=["0.74.0"], tmux=True, home=home)


def test_own_machine_is_always_listed_and_online():
    book = MachineBook("hub", facts("/home/h"))
    [own] = book.machines()
    assert (own.name, own.online, own.own, own.agents, own.service) == ("hub", True, True, 0, False)
    assert book.is_own(None) and book.is_own("hub") and not book.is_own("b")


def test_register_lists_an_online_machine_and_issues_a_secret():
    book = MachineBook("hub")
    info, issued, events = book.register("b", facts(), None, "c1", 10.0, SECRET)
    assert issued == SECRET and info.online and info.service and info.home == "/home/b" and info.tmux
    assert [type(e) for e in events] == [MachineJoinedEvent]
    assert [m.name for m in book.machines()] == ["hub", "b"]
    assert book.connection_of("b") == "c1" and book.name_of("c1") == "b"


def test_same_connection_updates_facts_once_and_quietly_when_unchanged():
    book = MachineBook("hub")
    book.register("b", facts(), None, "c1", 1.0, SECRET)
    _, issued, events = book.register("b", facts(), None, "c1", 2.0, "other" * 5)
    assert issued is None and events == []
    _, _, events = book.register("b", facts("/home/other"), None, "c1", 3.0, "x" * 20)
    assert [type(e) for e in events] == [MachineUpdatedEvent] and events[0].machine.home == "/home/other"


def test_closing_the_connection_marks_offline_and_keeps_the_machine_listed():
    book = MachineBook("hub")
    book.register("b", facts(), None, "c1", 1.0, SECRET)
    assert book.connection_closed("dashboard", 2.0) == []
    [left] = book.connection_closed("c1", 5.0)
    assert isinstance(left, MachineLeftEvent) and left.name == "b" and left.machine is not None
    b = book.machines()[1]
    assert (b.name, b.online, b.service, b.since) == ("b", False, False, 5.0)
    assert book.connection_of("b") is None and book.name_of("c1") is None


def test_an_online_name_is_never_taken_by_another_connection():
    book = MachineBook("hub")
    book.register("b", facts(), None, "c1", 1.0, SECRET)
    with pytest.raises(MachineError) as err:
        book.register("b", facts(), SECRET, "c2", 2.0, "y" * 32)  # even with the secret: one service per machine
    assert err.value.code == 1002 and book.connection_of("b") == "c1"


def test_an_offline_name_needs_its_secret():
    book = MachineBook("hub")
    book.register("b", facts(), None, "c1", 1.0, SECRET)
    book.connection_closed("c1", 2.0)
    with pytest.raises(MachineError):
        book.register("b", facts(), None, "c2", 3.0, "y" * 32)
    with pytest.raises(MachineError):
        book.register("b", facts(), "w" * 32, "c2", 3.0, "y" * 32)
    info, issued, events = book.register("b", facts(), SECRET, "c2", 4.0, "y" * 32)
    assert info.online and issued is None and [type(e) for e in events] == [MachineUpdatedEvent]


def test_a_restarted_hypivisor_accepts_the_secret_the_service_kept():
    book = MachineBook("hub")
    _, issued, _ = book.register("b", facts(), SECRET, "c1", 1.0, "new" * 8)
    assert issued is None  # the presented secret is now the name's
    book.connection_closed("c1", 2.0)
    book.register("b", facts(), SECRET, "c2", 3.0, "new" * 8)


def test_one_connection_answers_for_one_machine():
    book = MachineBook("hub")
    book.register("b", facts(), None, "c1", 1.0, SECRET)
    with pytest.raises(MachineError):
        book.register("c", facts(), None, "c1", 2.0, SECRET)


def test_agents_follow_the_roster_events():
    book = MachineBook("hub")
    book.register("b", facts(), None, "c1", 1.0, SECRET)
    out = book.node_events([NodeJoinedEvent(node=node("n1", "b")), NodeJoinedEvent(node=node("n2", "b"))])
    assert [type(e) for e in out] == [MachineUpdatedEvent] and out[0].machine.agents == 2
    assert book.node_events([NodeUpdatedEvent(node=node("n1", "b"))]) == []  # a heartbeat: nothing to say
    out = book.node_events([NodeOfflineEvent(id="n1")])
    assert out[0].machine.agents == 1
    book.node_events([NodeRemovedEvent(id="n1")])  # already offline: no change
    assert book.info("b").agents == 1  # type: ignore[union-attr]
    out = book.node_events([NodeJoinedEvent(node=node("n1", "b"))])  # back (re-register after offline)
    assert out[0].machine.agents == 2


def test_a_machine_known_only_from_agents_comes_and_goes_with_them():
    book = MachineBook("hub")
    out = book.node_events([NodeJoinedEvent(node=node("n1", "old"))])
    assert [type(e) for e in out] == [MachineJoinedEvent]
    old = out[0].machine
    assert (old.name, old.online, old.service, old.agents) == ("old", True, False, 1)
    out = book.node_events([NodeRemovedEvent(id="n1", reason="deregistered")])
    assert [type(e) for e in out] == [MachineLeftEvent] and out[0].machine is None
    assert [m.name for m in book.machines()] == ["hub"]


def test_own_machine_counts_its_agents():
    book = MachineBook("hub")
    out = book.node_events([NodeJoinedEvent(node=node("n1", "hub"))])
    assert [type(e) for e in out] == [MachineUpdatedEvent] and out[0].machine.agents == 1


def test_a_node_moving_machine_moves_its_count():
    book = MachineBook("hub")
    book.node_events([NodeJoinedEvent(node=node("n1", "a"))])
    out = book.node_events([NodeJoinedEvent(node=node("n1", "b"))])
    assert {type(e) for e in out} == {MachineJoinedEvent, MachineLeftEvent}
    assert [m.name for m in book.machines()] == ["hub", "b"]


def test_the_book_is_bounded_and_drops_the_oldest_offline_machine():
    book = MachineBook("hub", max_machines=3)
    book.register("a", facts(), None, "ca", 1.0, SECRET)
    book.register("b", facts(), None, "cb", 2.0, SECRET)
    with pytest.raises(MachineError) as err:  # full of online machines
        book.register("c", facts(), None, "cc", 3.0, SECRET)
    assert err.value.code == 1008
    book.connection_closed("ca", 4.0)
    book.register("c", facts(), None, "cc", 5.0, SECRET)
    assert [m.name for m in book.machines()] == ["hub", "b", "c"]
