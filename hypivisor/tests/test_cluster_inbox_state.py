"""The site's inbox and presence in cluster mode (hypivisor/cluster/inbox_state.py): stream records → what one
hypivisor shows, relays and ends in its own book."""

from __future__ import annotations

import pytest

from hypivisor.cluster import inbox_state
from hypivisor.cluster.inbox_state import (
    Added,
    PresenceTable,
    Read,
    RecordError,
    Resolved,
    SiteInbox,
    added_record,
    merge_presence,
    parse,
    parse_presence,
    presence_record,
    read_record,
    resolved_record,
)
from hypivisor.cluster.names import AgentKey
from hypivisor.push.policy import Presence
from pi_socket.protocol import AttentionItem

KEY = AgentKey("main", "build.example.com", "agent 1")


def item(item_id: str = "att-x-1", kind: str = "approval", node_id: str = "agent 1") -> AttentionItem:
    return AttentionItem(id=item_id, node_id=node_id, kind=kind, summary="s", created_at=1.0, machine="m")


def on_stream(record: dict, what: str, key: AgentKey = KEY) -> dict:
    """As the backplane hands a record back: with its subject."""
    return {**record, "_subject": key.attention_subject(what)}


def added(it: AttentionItem, hv: str = "hv-a", key: AgentKey = KEY) -> dict:
    return on_stream(added_record(it, hv), "added", key)


def resolved(item_id: str, by: str = "cause", hv: str = "hv-a") -> dict:
    return on_stream(resolved_record(item_id, by, 2.0, hv), "resolved")


def read(node_id: str = "agent 1", hv: str = "hv-b") -> dict:
    return on_stream(read_record(node_id, 3.0, hv), "read")


def names(events: list) -> list[tuple[str, str]]:
    return [(e.event, getattr(e, "item", None) and e.item.id or e.id) for e in events]


def test_records_round_trip_through_their_subjects() -> None:
    it = item()
    got = parse(added(it))
    assert isinstance(got, Added) and got.item == it and got.machine == "build.example.com" and got.hv == "hv-a"
    assert parse(resolved("att-x-1", "dismissed")) == Resolved("att-x-1", "dismissed", 2.0, "hv-a")
    assert parse(read()) == Read("agent 1", 3.0, "hv-b")


@pytest.mark.parametrize(
    "record",
    [
        {"id": "x"},  # no subject
        {**added_record(item(), "hv-a"), "_subject": "hp.evt.main.m.a.added"},  # not an attention subject
        on_stream({**added_record(item(), "hv-a"), "hv": ""}, "added"),  # no hypivisor
        on_stream(added_record(item(node_id="other"), "hv-a"), "added"),  # filed under another agent
        on_stream({"kind": "approval", "hv": "hv-a"}, "added"),  # not an item
        on_stream({"id": "x", "by": "magic", "at": 1.0, "hv": "h"}, "resolved"),  # unknown 'by'
        on_stream({"id": "x", "by": "read", "hv": "h"}, "resolved"),  # no time
        on_stream({"node_id": "someone else", "at": 1.0, "hv": "h"}, "read"),
        on_stream({"node_id": "agent 1", "at": True, "hv": "h"}, "read"),
    ],
)
def test_bad_records_are_refused_and_counted(record: dict) -> None:
    with pytest.raises(RecordError):
        parse(record)
    inbox = SiteInbox("hv-b")
    assert inbox.apply_raw(record, set()).events == [] and inbox.refused == 1


def test_another_books_item_is_relayed_listed_and_its_end_too() -> None:
    inbox = SiteInbox("hv-b")
    eff = inbox.apply_raw(added(item()), set())
    assert names(eff.events) == [("attention_added", "att-x-1")] and eff.book == []
    assert [i.id for i in inbox.items()] == ["att-x-1"] and inbox.get("att-x-1")[1] == "build.example.com"
    assert inbox.apply_raw(added(item()), set()).events == []  # a record seen twice: nothing twice
    eff = inbox.apply_raw(resolved("att-x-1"), set())
    assert [(e.event, e.id, e.by) for e in eff.events] == [("attention_resolved", "att-x-1", "cause")]
    assert len(inbox) == 0 and inbox.ended("att-x-1")
    assert inbox.apply_raw(resolved("att-x-1"), set()).events == []  # ended once


def test_own_items_are_listed_but_never_relayed_their_book_said_it_already() -> None:
    inbox = SiteInbox("hv-a")
    assert inbox.apply_raw(added(item("att-x-1")), set()).events == []  # made by this hypivisor
    assert inbox.apply_raw(added(item("att-y-2"), hv="hv-old"), {"att-y-2"}).events == []  # restored in its book
    assert len(inbox) == 2
    eff = inbox.apply_raw(resolved("att-x-1", hv="hv-a"), set())
    assert eff.events == [] and eff.book == []


def test_a_person_elsewhere_ends_an_item_of_this_book_through_the_book() -> None:
    inbox = SiteInbox("hv-a")
    inbox.apply_raw(added(item()), {"att-x-1"})
    eff = inbox.apply_raw(resolved("att-x-1", "dismissed", hv="hv-b"), {"att-x-1"})
    assert eff.book == [("att-x-1", "dismissed")] and eff.events == []  # the book's own event goes out
    # the same in a replay after the item left the view (e.g. the book re-published it): still ended in the book
    inbox2 = SiteInbox("hv-a")
    assert inbox2.apply_raw(resolved("att-z-9", "dismissed", hv="hv-b"), {"att-z-9"}).book == [("att-z-9", "dismissed")]


def test_an_end_that_overtook_its_item_keeps_it_out() -> None:
    inbox = SiteInbox("hv-b")
    inbox.apply_raw(resolved("att-x-1"), set())
    assert inbox.apply_raw(added(item()), set()).events == [] and len(inbox) == 0


def test_a_read_ends_that_agents_run_items_only_and_asks_its_holder_to_zero_the_count() -> None:
    inbox = SiteInbox("hv-a")
    for it in (item("r1", "finished"), item("r2", "error"), item("ap", "approval"), item("o", "finished", "other")):
        inbox.apply_raw(added(it, hv="hv-c", key=AgentKey("main", "m", it.node_id)), set())
    inbox.apply_raw(added(item("mine", "exited"), hv="hv-a"), {"mine"})
    eff = inbox.apply_raw(read(hv="hv-b"), {"mine"})
    assert sorted((e.id, e.by) for e in eff.events) == [("r1", "read"), ("r2", "read")]
    assert eff.book == [("mine", "read")] and eff.read_node == "agent 1"
    assert sorted(i.id for i in inbox.items()) == ["ap", "o"]
    own = inbox.apply_raw(read(hv="hv-a"), set())  # this hypivisor's own read: its book did its part already
    assert own.read_node is None and own.book == []


def test_the_inbox_and_its_memory_of_ends_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(inbox_state, "MAX_ITEMS", 3)
    monkeypatch.setattr(inbox_state, "MAX_RESOLVED", 4)
    inbox = SiteInbox("hv-b")
    for n in range(6):
        inbox.apply_raw(added(item(f"i{n}")), set())
    assert [i.id for i in inbox.items()] == ["i3", "i4", "i5"] and inbox.ended("i0")  # the oldest left
    inbox.apply_raw(resolved("i3"), set())
    inbox.apply_raw(resolved("i4"), set())
    assert not inbox.ended("i0") and all(inbox.ended(f"i{n}") for n in (1, 2, 3, 4))  # 4 ends remembered
    assert inbox.machine_of("agent 1") == "build.example.com" and inbox.machine_of("nobody") is None


def test_presence_of_other_hypivisors_counts_until_it_expires_or_ends() -> None:
    table = PresenceTable("hv-a")
    looking = [Presence("n1", True, True)]
    assert table.put("hv-b", "laptop", looking, now=10.0, ttl=15.0) is True  # newly looking: once-kinds re-arm
    assert table.put("hv-b", "laptop", looking, now=11.0, ttl=15.0) is False  # refreshed, nothing new
    assert table.put("hv-a", "phone", looking, now=11.0, ttl=15.0) is False and len(table) == 1  # own: ignored
    assert table.presence(20.0) == {"laptop": looking}
    assert table.presence(26.5) == {} and len(table) == 0  # not refreshed within the TTL
    table.put("hv-b", "laptop", looking, now=30.0, ttl=15.0)
    table.put("hv-b", "laptop", [], now=31.0, ttl=15.0)  # its last page closed
    assert table.presence(31.0) == {}
    table.put("hv-c", "tablet", looking, now=40.0, ttl=15.0)
    table.drop_hv("hv-c")
    assert table.presence(40.0) == {}
    merged = merge_presence({"laptop": [Presence(None, True, True)]}, {"laptop": looking, "tv": looking})
    assert merged == {"laptop": [Presence(None, True, True), *looking], "tv": looking}


def test_presence_records_round_trip_and_bad_ones_are_refused() -> None:
    pages = [Presence("n1", True, False), Presence(None, False, True)]
    assert parse_presence(presence_record("hv-b", "laptop", pages)) == ("hv-b", "laptop", pages)
    for bad in (
        [],
        {"hv": "h", "device": "d", "pages": [["n", "yes", True]]},
        {"hv": "h", "device": "", "pages": []},
        {"hv": "h", "device": "d", "pages": [["n", True]]},
        {"hv": "h", "device": "d", "pages": [[None, True, True]] * 33},
    ):
        with pytest.raises(RecordError):
            parse_presence(bad)


def test_a_book_taking_an_item_over_holds_it_and_only_its_holder_ends_it_by_itself() -> None:
    inbox = SiteInbox("hv-b")
    record = on_stream(added_record(item(), "hv-a", cause="ap-1"), "added")
    assert parse(record).cause == "ap-1" and not parse(record).moved
    inbox.apply_raw(record, set())
    assert inbox.adoptable("agent 1") == [(item(), "ap-1", None)] and inbox.adoptable("other") == []
    assert inbox.holder_of("att-x-1") == "hv-a" and [i.id for i in inbox.items(held_elsewhere=True)] == ["att-x-1"]
    inbox.adopted("att-x-1")  # its agent registered here: this book holds it now
    assert inbox.adoptable("agent 1") == [] and inbox.items(held_elsewhere=True) == []
    # the old book (its agent gone from it) says the item ended: not its to say
    assert inbox.apply_raw(resolved("att-x-1", "exited", hv="hv-a"), set()).events == [] and "att-x-1" in inbox
    # a person's end counts from anywhere; the holder's own end is this hypivisor's book's event
    assert inbox.apply_raw(resolved("att-x-1", "dismissed", hv="hv-a"), {"att-x-1"}).book == [("att-x-1", "dismissed")]


def test_a_take_over_elsewhere_moves_the_holder_without_a_second_event() -> None:
    inbox = SiteInbox("hv-c")
    inbox.apply_raw(added(item()), set())
    moved = on_stream(added_record(item(), "hv-b", cause="ap-1", moved=True), "added")
    assert parse(moved).moved
    assert inbox.apply_raw(moved, set()).events == [] and inbox.holder_of("att-x-1") == "hv-b"
    assert inbox.apply_raw(resolved("att-x-1", "cause", hv="hv-a"), set()).events == []  # the old holder: stale
    ended = inbox.apply_raw(resolved("att-x-1", "cause", hv="hv-b"), set())
    assert [(e.id, e.by) for e in ended.events] == [("att-x-1", "cause")]


def test_an_agents_items_are_found_through_its_own_index_whatever_was_added_ended_or_read() -> None:
    """``adoptable``, ``machine_of`` and a ``read`` look at the agent's own items (an index kept with every add and
    end), and give what a scan of every open item would: random adds, ends, reads and the MAX_ITEMS bound."""
    import random

    rng = random.Random(3)
    inbox = SiteInbox("hv-b")
    keys = {f"n{i}": AgentKey("main", f"m{i % 3}", f"n{i}") for i in range(8)}
    for step in range(3000):
        node = rng.choice(list(keys))
        what = rng.random()
        if what < 0.55:
            kind = rng.choice(["approval", "question", "finished", "error"])
            it = item(f"att-{step}", kind=kind, node_id=node)
            inbox.apply_raw(added(it, hv=rng.choice(["hv-a", "hv-b"]), key=keys[node]), set())
        elif what < 0.8 and len(inbox):
            victim = rng.choice(inbox.items())
            inbox.apply_raw(resolved(victim.id, by="dismissed"), set())
        else:
            inbox.apply_raw(read(node, hv=rng.choice(["hv-a", "hv-b"])), set())
        if step % 50 == 0:
            inbox_state.MAX_ITEMS, bound = rng.choice([5, 10_000]), inbox_state.MAX_ITEMS
            try:
                inbox.apply_raw(added(item(f"extra-{step}", node_id=node), key=keys[node]), set())
            finally:
                inbox_state.MAX_ITEMS = bound
        for n in keys:
            scan = [k for k in inbox._items.values() if k.item.node_id == n]
            assert inbox.adoptable(n) == [(k.item, k.cause, k.run) for k in scan if k.holder != "hv-b"]
            assert inbox.machine_of(n) == (scan[-1].machine if scan else None)
    assert sum(len(ids) for ids in inbox._by_node.values()) == len(inbox)
