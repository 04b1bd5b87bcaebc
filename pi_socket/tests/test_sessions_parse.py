"""The session parser on files written by real pi 0.73.1, 1.5.2 and 1.6.0 (tests/fixtures/sessions, made with the
fake LLM over RPC: prompts, a tool call, thinking, an image, a custom entry and message from an extension, a
/tree branch, a name, a compaction, and an RPC fork), and on a v1 file before and after pi 1.6.0 migrated it."""

from __future__ import annotations

from pathlib import Path

import pytest

from pi_socket.sessions import parse

FIXTURES = Path(__file__).parent / "fixtures" / "sessions"
VERSIONS = ("0.73.1", "1.5.2", "1.6.0")


def files(version: str) -> tuple[Path, Path]:
    """(the main session, its fork), by name (timestamps: the fork is newer)."""
    main, fork = sorted((FIXTURES / version).glob("*.jsonl"))
    return main, fork


@pytest.mark.parametrize("version", VERSIONS)
def test_header_meta_and_active_branch(version):
    main, _ = files(version)
    s = parse.parse(main.read_bytes())
    assert s.header.version == 3 and s.header.cwd == "/home/user/project" and s.header.parent_session is None
    meta = parse.meta_of(s)
    assert meta.name == "Fixture session"
    assert meta.first_prompt == "hello world from the fixture"
    assert meta.model == "fake/fake-vision"
    assert meta.cost > 0
    assert meta.created is not None and meta.modified is not None and meta.modified >= meta.created
    # the active branch is the path from the last entry: it went back to the first answer (/tree) and on
    messages, ids = parse.branch_messages(s)
    texts = [parse.content_text(m.get("content")) or m.get("summary", "") for m in messages]
    assert texts[0] == "hello world from the fixture"
    assert texts[2] == "a branch prompt about zebras"
    assert "elephants" not in " ".join(texts)  # on the other branch
    assert [m["role"] for m in messages][-3:] == ["compactionSummary", "user", "assistant"]
    assert "system" not in {m["role"] for m in messages}
    assert len(ids) == len(messages) and all(i in s.by_id for i in ids)


@pytest.mark.parametrize("version", VERSIONS)
def test_other_branch_custom_entries_and_images(version):
    main, _ = files(version)
    s = parse.parse(main.read_bytes())
    custom = next(e for e in s.entries if e["type"] == "custom_message")
    leaf = parse.leaf_through(s, custom["id"])
    assert leaf == custom["id"]  # the end of the first branch
    messages, _ = parse.branch_messages(s, leaf)
    roles = [m["role"] for m in messages]
    assert roles[:2] == ["user", "assistant"] and "toolResult" in roles and roles[-1] == "custom"
    assert messages[-1]["customType"] == "gen-msg" and messages[-1]["content"].startswith("a custom message")
    thinking = [b for m in messages if m["role"] == "assistant" for b in m["content"] if b.get("type") == "thinking"]
    assert thinking
    user_image = [m for m in messages if m["role"] == "user" and "image" in parse.content_text(m["content"])]
    assert user_image  # "describe this image please"
    if version == "0.73.1":  # 0.73 keeps the image block; 1.5+ replaced the tiny test image with a note
        assert any(b.get("type") == "image" for m in user_image for b in m["content"])
    assert any(e["type"] == "custom" and e["customType"] == "gen-note" for e in s.entries)
    # the tree: two children under the first answer
    nodes = parse.tree_nodes(s)
    first_answer = messages[1]
    children = [n for n in nodes if n["parent_id"] == s.entries[s.by_id[_id_of(s, first_answer)]]["id"]]
    assert len(children) == 2


def _id_of(s: parse.Session, message: dict) -> str:
    return next(e["id"] for e in s.entries if e.get("message") is message)


@pytest.mark.parametrize("version", VERSIONS)
def test_fork_names_its_parent(version):
    main, fork = files(version)
    f = parse.parse(fork.read_bytes())
    assert f.header.parent_session is not None and f.header.parent_session.endswith(main.name)
    messages, _ = parse.branch_messages(f)
    assert parse.content_text(messages[-2]["content"]) == "in the fork about penguins"


def test_v1_file_migrates_like_pi():
    """A v1 file (no ids) reads as pi reads it: a chain, hookMessage → custom, firstKeptEntryIndex → id; pi
    1.6.0's rewrite of the same file gives the same conversation."""
    old = parse.parse((FIXTURES / "v1" / "v1-original.jsonl").read_bytes())
    assert old.migrated and old.header.version == 1
    messages, ids = parse.branch_messages(old)
    assert [m["role"] for m in messages] == ["user", "assistant", "custom", "compactionSummary", "user", "assistant"]
    comp = next(e for e in old.entries if e["type"] == "compaction")
    assert comp["firstKeptEntryId"] == old.entries[1]["id"]
    new = parse.parse((FIXTURES / "v1" / "v1-migrated-by-1.6.0.jsonl").read_bytes())
    assert not new.migrated
    new_messages, _ = parse.branch_messages(new)
    assert [m["role"] for m in new_messages][:6] == [m["role"] for m in messages]
    assert new_messages[2]["role"] == "custom"
    new_comp = next(e for e in new.entries if e["type"] == "compaction")
    assert new.entries[new.by_id[new_comp["firstKeptEntryId"]]]["message"]["role"] == "assistant"
    # the same entries reparse to the same ids (search hits point at them)
    again = parse.parse((FIXTURES / "v1" / "v1-original.jsonl").read_bytes())
    assert parse.branch_messages(again)[1] == ids


def test_unterminated_line_and_garbage_are_skipped():
    main, _ = files("1.6.0")
    data = main.read_bytes()
    whole = parse.parse(data)
    cut = parse.parse(data + b'{"type":"message","id":"zz","parentId":null,"message":{"role":"user","con')
    assert len(cut.entries) == len(whole.entries) and cut.size == len(data)
    noisy = parse.parse(data.replace(b"\n", b"\nnot json\n[1,2]\n", 1))
    assert len(noisy.entries) == len(whole.entries)
    with pytest.raises(parse.SessionFormatError):
        parse.parse(b'{"type":"message"}\n')
    with pytest.raises(parse.SessionFormatError):
        parse.parse(b"")


def test_parent_cycle_is_bounded():
    data = (b'{"type":"session","version":3,"id":"s","timestamp":"2026-01-01T00:00:00Z","cwd":"/p"}\n'
            b'{"type":"message","id":"a","parentId":"b","timestamp":"2026-01-01T00:00:01Z","message":{"role":"user","content":"x"}}\n'
            b'{"type":"message","id":"b","parentId":"a","timestamp":"2026-01-01T00:00:02Z","message":{"role":"user","content":"y"}}\n')  # fmt: skip
    s = parse.parse(data)
    assert parse.branch(s) == [0, 1]
    assert parse.leaf_through(s, "a") in ("a", "b")


def test_entry_text_roles():
    assert parse.entry_text(
        {"type": "message", "message": {"role": "toolResult", "content": [{"type": "text", "text": "out"}]}}
    ) == ("tool", "out")
    assert parse.entry_text({"type": "message", "message": {"role": "system", "content": "x"}}) is None
    assert parse.entry_text({"type": "compaction", "summary": "sum"}) == ("summary", "sum")
    assert parse.entry_text({"type": "label", "targetId": "a"}) is None
    call = parse.entry_text({"type": "message", "message": {"role": "assistant", "content": [
        {"type": "toolCall", "name": "bash", "arguments": {"command": "ls -la"}}]}})  # fmt: skip
    assert call is not None and call[0] == "assistant" and "ls -la" in call[1]


@pytest.mark.parametrize("version", VERSIONS)
def test_branch_points_switch_between_the_tree_branches(version):
    """The /tree split of a real file: one point after the first answer, both branches offered with where each
    ends; opening the other branch's leaf gives a branch whose point marks that one current."""
    main, _ = files(version)
    s = parse.parse(main.read_bytes())
    points = parse.branch_points(s)
    assert len(points) == 1
    point = points[0]
    messages, ids = parse.branch_messages(s)
    assert point["at"] == 2 and ids[1] == point["entry_id"]  # after the first prompt and its answer
    first, second = point["options"]
    assert (first["current"], second["current"]) == (False, True)
    assert second["leaf_id"] == s.leaf_id and second["preview"] == "a branch prompt about zebras"
    other, other_ids = parse.branch_messages(s, first["leaf_id"])
    assert other_ids[:2] == ids[:2] and other_ids[2] == first["entry_id"]
    assert other[-1]["role"] == "custom"  # the first branch ends with the extension's message
    again = parse.branch_points(s, first["leaf_id"])
    assert [o["current"] for o in again[0]["options"]] == [True, False]
    assert again[0]["at"] == 2


def test_branch_points_none_on_a_straight_session_and_bounded():
    _, fork = files("1.6.0")
    assert parse.branch_points(parse.parse(fork.read_bytes())) == []
    # a root with many children (each a /tree restart): options are bounded, the newest kept
    head = b'{"type":"session","version":3,"id":"s","timestamp":"2026-01-01T00:00:00Z","cwd":"/p"}\n'
    root = b'{"type":"message","id":"r","parentId":null,"message":{"role":"user","content":"root"}}\n'
    kids = b"".join(
        b'{"type":"message","id":"k%d","parentId":"r","message":{"role":"user","content":"kid %d"}}\n' % (i, i)
        for i in range(parse.MAX_BRANCH_OPTIONS + 5)
    )
    s = parse.parse(head + root + kids)
    (point,) = parse.branch_points(s)
    assert len(point["options"]) == parse.MAX_BRANCH_OPTIONS and point["options"][-1]["current"]
    assert point["at"] == 1


def test_branch_points_ignore_odd_parent_ids():
    head = b'{"type":"session","version":3,"id":"s","timestamp":"2026-01-01T00:00:00Z","cwd":"/p"}\n'
    odd = b'{"type":"message","id":"a","parentId":[1],"message":{"role":"user","content":"x"}}\n'
    assert parse.branch_points(parse.parse(head + odd + odd.replace(b'"a"', b'"b"'))) == []
