"""The inbox (pure book + SQLite store): one item per cause, ends with its cause, kept across restarts."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from hypivisor.attention import AttentionBook
from hypivisor.store import Store
from pi_socket.protocol import AttentionLive, AttentionReport, AttentionRun, NodeInfo


def node(node_id: str = "n1", name: str | None = "api") -> NodeInfo:
    return NodeInfo(id=node_id, machine="m", cwd="/w/" + node_id, port=9000, session_name=name)


def live(key: str, kind: str = "approval", summary: str = "bash `rm -rf build`") -> AttentionLive:
    return AttentionLive(
        kind=kind, key=key, summary=summary, created_at=10.0, approval_id=key if kind == "approval" else None
    )  # type: ignore[arg-type]


def run(key: str, outcome: str = "finished", summary: str = "Tests pass", n: int = 2) -> AttentionRun:
    return AttentionRun(key=key, outcome=outcome, summary=summary, at=20.0, new_messages=n)  # type: ignore[arg-type]


def kinds(events) -> list[str]:
    return [e.event for e in events]


def test_a_live_cause_is_one_item_until_it_ends():
    book = AttentionBook()
    ev = book.report(node(), AttentionReport(live=[live("a1")]), 11.0)
    assert kinds(ev) == ["attention_added"]
    item = ev[0].item
    assert (item.kind, item.node_id, item.approval_id, item.machine, item.cwd, item.session_name) == (
        "approval", "n1", "a1", "m", "/w/n1", "api",
    )  # fmt: skip
    # the same report again (every heartbeat, a re-register) adds nothing
    assert book.report(node(), AttentionReport(live=[live("a1")]), 12.0) == []
    # the cause ended (decided): resolved by cause
    ev = book.report(node(), AttentionReport(live=[]), 13.0)
    assert kinds(ev) == ["attention_resolved"] and ev[0].by == "cause" and ev[0].id == item.id
    assert book.open_items() == []


def test_each_new_run_is_one_item_and_counts_unread_until_read():
    book = AttentionBook()
    ev = book.report(node(), AttentionReport(last_run=run("r1")), 21.0)
    assert kinds(ev) == ["attention_added", "unread_changed"]
    assert ev[0].item.kind == "finished" and ev[0].item.summary == "Tests pass" and ev[1].unread == 2
    assert book.report(node(), AttentionReport(last_run=run("r1")), 22.0) == []  # same run: nothing new
    ev = book.report(node(), AttentionReport(last_run=run("r2", "error", "429 rate limited", 1)), 23.0)
    assert kinds(ev) == ["attention_resolved", "attention_added", "unread_changed"]
    assert ev[0].by == "superseded" and ev[1].item.kind == "error" and ev[2].unread == 3
    ev = book.mark_read("n1", 24.0)
    assert kinds(ev) == ["attention_resolved", "unread_changed"] and ev[0].by == "read" and ev[1].unread == 0
    assert book.mark_read("n1", 25.0) == []  # nothing left to read


def test_mark_read_leaves_a_waiting_approval_alone_and_dismiss_ends_anything_once():
    book = AttentionBook()
    book.report(node(), AttentionReport(live=[live("a1")], last_run=run("r1")), 1.0)
    book.mark_read("n1", 2.0)
    (left,) = book.open_items()
    assert left.kind == "approval"
    assert kinds(book.dismiss(left.id, 3.0) or []) == ["attention_resolved"]
    assert book.dismiss(left.id, 4.0) is None
    # a dismissed live cause is not re-added by the next heartbeat while the cause lasts
    assert book.report(node(), AttentionReport(live=[live("a1")]), 5.0) == []


def test_leaving_ends_live_items_and_keeps_unread_output_as_exited():
    book = AttentionBook()
    book.report(node(), AttentionReport(live=[live("q1", "question", "Pick a branch")], last_run=run("r1")), 1.0)
    ev = book.node_left("n1", "deregistered", 2.0)
    assert [(e.event, getattr(e, "by", None)) for e in ev] == [
        ("attention_resolved", "exited"),
        ("attention_resolved", "superseded"),
        ("attention_added", None),
    ]
    assert ev[2].item.kind == "exited" and "2 unread messages" in ev[2].item.summary
    assert ev[2].item.cwd == "/w/n1"  # where it was, though it left the roster
    # read: nothing to say when it exits
    book2 = AttentionBook()
    book2.report(node(), AttentionReport(last_run=run("r1")), 1.0)
    book2.mark_read("n1", 2.0)
    assert book2.node_left("n1", "deregistered", 3.0) == []
    # swept without a goodbye: an error item
    ev = AttentionBook().node_left("n9", "ttl", 1.0)
    assert ev[0].item.kind == "error"


def test_agents_do_not_touch_each_others_items():
    book = AttentionBook()
    book.report(node("a"), AttentionReport(live=[live("x")]), 1.0)
    book.report(node("b"), AttentionReport(live=[live("x")]), 1.0)  # the same key in another agent
    assert len(book.open_items()) == 2
    book.report(node("a"), AttentionReport(live=[]), 2.0)
    assert [i.node_id for i in book.open_items()] == ["b"]
    assert kinds(book.forget_live_of_absent({"a"}, 3.0)) == ["attention_resolved"]


def test_the_store_keeps_items_read_markers_and_run_keys_across_a_restart(tmp_path: Path):
    path = tmp_path / "state" / "hypivisor.sqlite3"
    store = Store(path)
    book = AttentionBook(store)
    book.restore(*store.load(0.0))
    book.report(node(), AttentionReport(live=[live("a1")], last_run=run("r1")), 1.0)
    book.report(node("n2"), AttentionReport(last_run=run("r7")), 1.0)
    book.mark_read("n2", 2.0)
    ids = [i.id for i in book.open_items()]
    store.close()
    assert oct(path.stat().st_mode & 0o777) == "0o600"

    store = Store(path)
    again = AttentionBook(store)
    again.restore(*store.load(3.0))
    assert [i.id for i in again.open_items()] == ids
    assert again.unread == {"n1": 2}
    # the bridge re-sends the same report after re-registering: no duplicates
    assert again.report(node(), AttentionReport(live=[live("a1")], last_run=run("r1")), 4.0) == []
    assert again.report(node("n2"), AttentionReport(last_run=run("r7")), 4.0) == []
    # new items never reuse an id
    ev = again.report(node(), AttentionReport(live=[live("a2")], last_run=run("r1")), 5.0)
    assert kinds(ev) == ["attention_added", "attention_resolved"]
    assert ev[0].item.id not in ids and ev[1].id == ids[0]
    store.close()


def test_a_corrupt_database_is_moved_aside_not_fatal(tmp_path: Path):
    path = tmp_path / "hypivisor.sqlite3"
    path.write_bytes(b"this is not sqlite" * 100)
    store = Store(path)
    assert store.load(0.0)[0] == []
    assert list(tmp_path.glob("hypivisor.sqlite3.broken-*"))
    store.close()
    sqlite3.connect(path).execute("SELECT 1 FROM attention").fetchall()
