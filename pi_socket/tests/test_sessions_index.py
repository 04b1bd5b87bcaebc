"""The incremental session indexer (append, unterminated line, truncate, rewrite, migration, delete), search
(phrases, prefixes, filters, ranking, snippets from the file) and safe query building."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import orjson
import pytest

from pi_socket.sessions import dirs, index, query

FIXTURES = Path(__file__).parent / "fixtures" / "sessions"
HEADER = {"type": "session", "version": 3, "id": "s1", "timestamp": "2026-01-01T00:00:00.000Z", "cwd": "/home/user/p"}


def line(obj: dict) -> bytes:
    return orjson.dumps(obj) + b"\n"


def msg(eid: str, parent: str | None, role: str, text: str, second: int = 1) -> bytes:
    content = text if role == "user" else [{"type": "text", "text": text}]
    return line({"type": "message", "id": eid, "parentId": parent, "timestamp": f"2026-01-01T00:00:{second:02d}.000Z",
                 "message": {"role": role, "content": content, "timestamp": 0}})  # fmt: skip


@pytest.fixture
def root(tmp_path) -> Path:
    r = tmp_path / "sessions" / "--home-user-p--"
    r.mkdir(parents=True)
    return r


@pytest.fixture
def idx(tmp_path):
    i = index.Index(str(tmp_path / "state" / "sessions.sqlite3"))
    yield i
    i.close()


def sync(idx: index.Index, root: Path) -> index.Progress:
    return index.index_all(idx, list(dirs.scan([str(root.parent)])))


def ids(hits: list[dict]) -> list[str]:
    return [h["entry_id"] for h in hits]


def test_append_unterminated_line_and_offsets(idx, root):
    f = root / "a.jsonl"
    f.write_bytes(line(HEADER) + msg("u1", None, "user", "the walrus question"))
    sync(idx, root)
    assert ids(idx.search("walrus")) == ["u1"]
    # pi is mid-write: an unterminated line is not indexed, and is once it ends
    with f.open("ab") as fh:
        fh.write(msg("a1", "u1", "assistant", "a walrus answer")[:-10])
    sync(idx, root)
    assert ids(idx.search("answer")) == []
    with f.open("ab") as fh:
        fh.write(msg("a1", "u1", "assistant", "a walrus answer")[-10:])
    p = sync(idx, root)
    assert p.files_total == 1
    assert ids(idx.search("answer")) == ["a1"]
    assert sorted(ids(idx.search("walrus"))) == ["a1", "u1"]  # nothing indexed twice
    row = idx.list_sessions()[0]
    assert row["message_count"] == 2 and row["first_prompt"] == "the walrus question"
    assert sync(idx, root).files_total == 0  # unchanged: not read again


def test_truncate_rewrite_and_delete(idx, root):
    f = root / "a.jsonl"
    f.write_bytes(line(HEADER) + msg("u1", None, "user", "zebra one") + msg("u2", "u1", "user", "zebra two"))
    sync(idx, root)
    assert len(idx.search("zebra")) == 2
    f.write_bytes(line(HEADER) + msg("u1", None, "user", "zebra one"))  # shrank
    sync(idx, root)
    assert ids(idx.search("zebra")) == ["u1"]
    # rewritten in place with another header (what pi's migration does), same size or bigger
    new_header = {**HEADER, "id": "s2"}
    f.write_bytes(line(new_header) + msg("n1", None, "user", "penguin now") + msg("n2", "n1", "user", "penguin again"))
    sync(idx, root)
    assert ids(idx.search("zebra")) == []
    assert sorted(ids(idx.search("penguin"))) == ["n1", "n2"]
    assert idx.list_sessions()[0]["session_id"] == "s2"
    f.unlink()
    sync(idx, root)
    assert idx.search("penguin") == [] and idx.list_sessions() == []


def test_migration_of_a_v1_file_reindexes_it(idx, root):
    """pi rewrites a v1 file as v3 when it opens it: the index follows (new ids, new entries)."""
    f = root / "old.jsonl"
    shutil.copy(FIXTURES / "v1" / "v1-original.jsonl", f)
    sync(idx, root)
    old_hits = idx.search("walruses")
    assert old_hits and all(h["entry_id"].startswith("v1") for h in old_hits)
    data = (FIXTURES / "v1" / "v1-migrated-by-1.6.0.jsonl").read_bytes()
    f.write_bytes(data)
    sync(idx, root)
    hits = idx.search("walruses")
    assert hits and not any(h["entry_id"].startswith("v1") for h in hits)
    assert ids(idx.search('"continue the old walrus session"', roles=["user"]))


def test_real_pi_files_phrase_prefix_roles_and_snippets(idx, tmp_path):
    root = tmp_path / "sessions"
    for v in ("0.73.1", "1.5.2", "1.6.0"):
        (root / f"--{v}--").mkdir(parents=True)
        for src in (FIXTURES / v).glob("*.jsonl"):
            shutil.copy(src, root / f"--{v}--" / src.name)
    index.index_all(idx, list(dirs.scan([str(root)])))
    assert len(idx.list_sessions(limit=100)) == 6
    # a phrase matches only the words in that order
    assert len(idx.search('"quick brown fox"', roles=["user"])) == 3
    assert idx.search('"fox brown quick"') == []
    # a prefix
    assert len(idx.search("eleph*", roles=["user"])) == 3
    # roles: the tool's output, not the call
    tool = idx.search("fixture-tool-output", roles=["tool"])
    assert len(tool) == 3 and {h["role"] for h in tool} == {"tool"}
    # snippets come from the file, with the matching words' ranges
    hit = idx.search("penguins")[0]
    assert "penguins" in hit["snippet"].lower()
    a, b = hit["highlights"][0]
    assert hit["snippet"][a:b].lower() == "penguins"
    assert hit["path"].startswith(str(root)) and len(hit["session_id"]) == 24
    # cwd filter
    assert idx.search("penguins", cwd="/elsewhere") == []
    assert len(idx.search("penguins", cwd="/home/user/project")) >= 3


def test_ranking_prefers_denser_matches(idx, root):
    f = root / "r.jsonl"
    filler = " ".join(f"w{i}" for i in range(200))
    f.write_bytes(line(HEADER) + msg("weak", None, "user", f"otter {filler}", 1)
                  + msg("strong", "weak", "user", "otter otter otter", 2)
                  + b"".join(msg(f"o{i}", "strong", "user", f"other words {i}", 3) for i in range(10)))  # fmt: skip
    sync(idx, root)
    hits = idx.search("otter")
    assert ids(hits) == ["strong", "weak"] and hits[0]["score"] > hits[1]["score"]


@pytest.mark.parametrize("bad", ['"', "AND", "NEAR(a b)", "col:foo", "^x", "a OR", "*", "(((", 'x" OR "y', "-x"])
def test_queries_never_reach_fts5_as_syntax(idx, root, bad):
    f = root / "q.jsonl"
    f.write_bytes(line(HEADER) + msg("u1", None, "user", "and near col foo x y"))
    sync(idx, root)
    try:
        idx.search(bad)
    except query.QueryError as exc:
        assert "no words" in str(exc)  # "*", "(((" and '"' have no words; nothing else may fail


def test_query_building_and_snippets():
    g = query.parse_query('Café "brown fox" jump* x-ray')
    assert g == [query.Group(("cafe",)), query.Group(("brown", "fox")), query.Group(("jump",), True),
                 query.Group(("x", "ray"))]  # fmt: skip
    assert query.match_expression(g) == '"cafe" AND "brown fox" AND "jump"* AND "x ray"'
    with pytest.raises(query.QueryError):
        query.parse_query("   ")
    with pytest.raises(query.QueryError):
        query.parse_query("x" * 501)
    text = "one two three " * 20 + "the JUMPING   fox\n\nends here"
    snip, ranges = query.snippet(text, query.parse_query("jump*"))
    assert snip.startswith("… ") and [snip[a:b] for a, b in ranges] == ["JUMPING"]
    assert "\n" not in snip


def test_deleted_docs_are_rebuilt_away(idx, root):
    f = root / "d.jsonl"
    f.write_bytes(line(HEADER) + b"".join(msg(f"u{i}", None, "user", f"seal {i}") for i in range(30)))
    sync(idx, root)
    f.unlink()
    sync(idx, root)
    assert idx.rebuild_if_needed(min_dead=10)
    assert idx.counts() == {"files": 0, "docs": 0}
    f.write_bytes(line(HEADER) + msg("u1", None, "user", "seal again"))
    sync(idx, root)
    assert ids(idx.search("seal")) == ["u1"]


def test_verify_accepts_only_session_files_under_the_roots(tmp_path):
    root = tmp_path / "sessions"
    (root / "--p--").mkdir(parents=True)
    good = root / "--p--" / "a.jsonl"
    good.write_bytes(line(HEADER))
    outside = tmp_path / "secret.jsonl"
    outside.write_bytes(line(HEADER))
    (root / "--p--" / "link.jsonl").symlink_to(outside)
    roots = [str(root)]
    assert dirs.verify(str(good), roots) == str(good)
    for bad in (str(outside), str(root / "--p--" / "link.jsonl"), str(root / "--p--" / ".." / ".." / "secret.jsonl"),
                "relative.jsonl", str(root / "--p--" / "missing.jsonl"), str(root / "--p--")):  # fmt: skip
        with pytest.raises(dirs.SessionPathError):
            dirs.verify(bad, roots)
    assert [f.path for f in dirs.scan(roots)] == [str(good)]  # the escaping symlink is not listed


def test_session_roots_from_env_and_settings(tmp_path):
    home = tmp_path / "home"
    agent = home / ".pi" / "agent"
    (agent / "sessions").mkdir(parents=True)
    custom = tmp_path / "custom"
    custom.mkdir()
    setting = tmp_path / "setting"
    setting.mkdir()
    (agent / "settings.json").write_text(orjson.dumps({"sessionDir": str(setting)}).decode())
    roots = dirs.session_roots({"PI_CODING_AGENT_SESSION_DIR": str(custom)}, str(home))
    assert roots == [os.path.realpath(p) for p in (agent / "sessions", custom, setting)]
    other = tmp_path / "agent2"
    (other / "sessions").mkdir(parents=True)
    assert dirs.session_roots({"PI_CODING_AGENT_DIR": str(other)}, str(home)) == [str(other / "sessions")]


def test_shards_newest_first_and_every_shard_for_rare_words(tmp_path, root, monkeypatch):
    monkeypatch.setattr(index, "SHARD_TEXT_BYTES", 200)
    monkeypatch.setattr(index, "SHARDS_PER_STATEMENT", 2)  # several statements of a few shards each
    idx = index.Index(str(tmp_path / "sharded.sqlite3"))
    for i in range(6):
        f = root / f"s{i}.jsonl"
        words = " ".join(["common"] * 3 + [f"filler{i}"] * 40)
        f.write_bytes(line(HEADER) + msg(f"c{i}", None, "user", words) + msg(f"r{i}", f"c{i}", "user", f"rare{i} x"))
        os.utime(f, (1_000 + i, 1_000 + i))  # indexed oldest first
        sync(idx, root)
    assert idx.shards() >= 3
    assert ids(idx.search("rare0")) == ["r0"] and ids(idx.search("rare5")) == ["r5"]  # the oldest and newest shard
    assert sorted(ids(idx.search("common"))) == [f"c{i}" for i in range(6)]
    # the candidate window holds the newest matches: with room for two, the two newest files answer
    assert sorted(ids(idx.search("common", candidates=2))) == ["c4", "c5"]
    assert ids(idx.search("common", roles=["assistant"])) == []
    (root / "s5.jsonl").unlink()
    sync(idx, root)
    assert idx.search("rare5") == []
    idx.close()


def test_an_index_of_an_older_layout_starts_afresh(tmp_path, root):
    db = tmp_path / "old.sqlite3"
    idx = index.Index(str(db))
    (root / "a.jsonl").write_bytes(line(HEADER) + msg("u1", None, "user", "walrus"))
    sync(idx, root)
    idx._w.execute("UPDATE meta SET v='0' WHERE k='schema'")
    idx.close()
    again = index.Index(str(db))
    assert again.counts() == {"files": 0, "docs": 0}
    sync(again, root)
    assert ids(again.search("walrus")) == ["u1"]
    again.close()


def dated(eid: str, parent: str | None, text: str, when: str) -> bytes:
    return line({"type": "message", "id": eid, "parentId": parent, "timestamp": when,
                 "message": {"role": "user", "content": text, "timestamp": 0}})  # fmt: skip


def at(iso: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def test_date_filters_apply_before_the_page_and_the_candidate_window(idx, root):
    """A list filters on last activity and a search on the entry's own time, both in SQL before the page or the
    candidate window is taken: newer sessions outside the range never crowd older ones out of a page."""
    for day in range(1, 11):  # one session per day of January; each has an entry on its day and a later one
        f = root / f"d{day:02d}.jsonl"
        when = f"2026-01-{day:02d}T12:00:00.000Z"
        head = {**HEADER, "id": f"s{day}", "timestamp": when}
        f.write_bytes(line(head) + dated(f"e{day}", None, f"otter day{day}", when))
        os.utime(f, (at(when), at(when)))  # indexed oldest first, as pi would have left them
    # the 3rd's session was continued on the 20th: its last activity is then, its first entry stays on the 3rd
    with (root / "d03.jsonl").open("ab") as fh:
        fh.write(dated("late3", "e3", "otter later", "2026-01-20T08:00:00.000Z"))
    os.utime(root / "d03.jsonl", (at("2026-01-20T08:00:00Z"),) * 2)
    sync(idx, root)
    since, until = at("2026-01-04T00:00:00Z"), at("2026-01-07T00:00:00Z")
    # list: [since, until) on last activity, newest first, full pages and a cursor within the range
    first = idx.list_sessions(limit=2, since=since, until=until)
    assert [r["session_id"] for r in first] == ["s6", "s5"]
    more = idx.list_sessions(before=first[-1]["_cursor"], limit=2, since=since, until=until)
    assert [r["session_id"] for r in more] == ["s4"]
    assert [r["session_id"] for r in idx.list_sessions(limit=1, since=at("2026-01-15T00:00:00Z"))] == ["s3"]
    assert [r["session_id"] for r in idx.list_sessions(limit=20, until=at("2026-01-03T00:00:00Z"))] == ["s2", "s1"]
    assert idx.list_sessions(since=until, until=until) == []  # an empty range: nothing
    # search: on each entry's time; the window of the newest candidates is taken after the filter
    assert sorted(ids(idx.search("otter", since=since, until=until, candidates=2))) == ["e5", "e6"]
    assert sorted(ids(idx.search("otter", since=since, until=until))) == ["e4", "e5", "e6"]
    assert ids(idx.search("otter", since=at("2026-01-15T00:00:00Z"))) == ["late3"]
    assert sorted(ids(idx.search("otter", until=at("2026-01-02T00:00:00Z")))) == ["e1"]
    # with the other filters
    assert ids(idx.search("otter", since=since, until=until, cwd="/elsewhere")) == []
    assert ids(idx.search("otter", since=since, until=until, roles=["assistant"])) == []
