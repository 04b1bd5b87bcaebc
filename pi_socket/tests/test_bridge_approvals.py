"""The bridge's approval book and previews (no I/O beyond temp files): what clients see of the gate."""

from __future__ import annotations

from pathlib import Path

import pytest

from pi_socket.bridge.approvals import RECENT_MAX, ApprovalBook, clean_rules
from pi_socket.bridge.preview import MAX_FILE_BYTES, build_preview, resolve_path
from pi_socket.protocol import ApprovalRule, dump
from pi_socket.shimwire import ApprovalEndLine, ApprovalLine, ShimLineError, parse_shim_line


def ask_line(n: int, tool: str = "bash", **extra) -> ApprovalLine:
    return ApprovalLine(
        t="approval",
        id=f"a{n}",
        tool_call_id=f"c{n}",
        tool_name=tool,
        input=extra.pop("input", {"command": f"touch f{n}"}),
        policy="writes",
        queued_at=1_700_000_000.0 + n,
        **extra,
    )


def end_line(n: int, decision: str = "allow", by: str = "dashboard", **extra) -> ApprovalEndLine:
    return ApprovalEndLine(
        t="approval_end", id=f"a{n}", tool_call_id=f"c{n}", tool_name="bash", decision=decision, by=by, **extra
    )


def test_questions_stay_in_order_until_each_is_settled():
    book = ApprovalBook()
    for n in (1, 2, 3):
        book.ask(ask_line(n), None)
    assert [m.id for m in book.pending_list()] == ["a1", "a2", "a3"]
    resolved = book.end(end_line(2, "deny", reason="no"), now=5.0)
    assert (resolved.id, resolved.decision, resolved.by, resolved.reason) == ("a2", "deny", "dashboard", "no")
    assert resolved.record is not None and resolved.record.decided_at == 5.0
    assert [m.id for m in book.pending_list()] == ["a1", "a3"]
    assert [r.id for r in book.recent] == ["a2"]


def test_a_rule_decision_is_recorded_without_a_question():
    book = ApprovalBook()
    book.end(end_line(9, by="rule", summary="git status", decided_at=7.0), now=1.0)
    assert not book.pending and book.recent[-1].by == "rule" and book.recent[-1].decided_at == 7.0


def test_recent_decisions_are_bounded():
    book = ApprovalBook()
    for n in range(RECENT_MAX + 20):
        book.end(end_line(n), now=float(n))
    assert len(book.recent) == RECENT_MAX and book.recent[-1].id == f"a{RECENT_MAX + 19}"


def test_a_decision_that_cannot_apply_is_refused_before_it_reaches_pi():
    book = ApprovalBook()
    book.ask(ask_line(1), None)
    book.ask(ask_line(2, tool="write", input={"path": "/x", "content": ""}), None)
    assert book.check_decision("a1", "allow", None) is None
    assert book.check_decision("a1", "allow", {"command": "ls"}) is None
    assert (book.check_decision("nope", "allow", None) or "").startswith("conflict")
    assert (book.check_decision("a1", "deny", {"command": "ls"}) or "").startswith("invalid")
    assert (book.check_decision("a2", "allow", {"command": "ls"}) or "").startswith("invalid")
    for bad in ({"command": ""}, {"command": "  "}, {"command": 3}, {"command": "ls", "x": 1}, {}):
        assert (book.check_decision("a1", "allow", bad) or "").startswith("invalid"), bad
    book.end(end_line(1), now=1.0)
    assert (book.check_decision("a1", "allow", None) or "").startswith("conflict")


def test_policy_and_rules_as_clients_see_them():
    book = ApprovalBook()
    msg = book.set_policy("all", [{"tool": "read"}, {"tool": "bash", "prefix": "ls"}, {"tool": ""}, "junk", {"x": 1}])
    assert dump(msg) == {
        "type": "approval_policy",
        "policy": "all",
        "rules": [{"tool": "read"}, {"tool": "bash", "prefix": "ls"}],
    }
    assert clean_rules("nope") == [] and clean_rules([{"tool": "a", "prefix": "x" * 600}]) == []
    assert dump(ApprovalRule(tool="bash")) == {"tool": "bash"}


def test_a_restarted_bridge_learns_open_questions_from_hello():
    book = ApprovalBook()
    raw = [dump_line(ask_line(1)), {"t": "approval", "id": "broken"}, dump_line(ask_line(2))]
    book.snapshot("writes", [{"tool": "ls"}], raw, "/w", lambda r, cwd: None)
    assert book.policy == "writes" and [r.tool for r in book.rules] == ["ls"]
    assert [m.id for m in book.pending_list()] == ["a1", "a2"]


def dump_line(line: ApprovalLine) -> dict:
    return line.model_dump(exclude_none=True)


def test_shim_lines_with_bad_envelopes_are_refused():
    for bad in (
        {"t": "approval", "id": "a", "tool_call_id": "c", "tool_name": "bash", "policy": "sometimes", "queued_at": 1},
        {"t": "approval", "id": 3, "tool_call_id": "c", "tool_name": "bash", "policy": "all", "queued_at": 1},
        {"t": "approval_end", "id": "a", "decision": "maybe", "by": "dashboard"},
        {"t": "approval_end", "id": "a", "decision": "allow", "by": "someone"},
        {"t": "policy", "policy": "on"},
    ):
        with pytest.raises(ShimLineError):
            parse_shim_line(bad)


# ------------------------------------------------------------------------------------------------ previews
def test_bash_preview_is_the_command():
    pv = build_preview("bash", {"command": "rm -rf build"}, "/w")
    assert pv.kind == "command" and pv.command == "rm -rf build"
    assert build_preview("read", {"path": "x"}, "/w").kind == "none"
    assert build_preview("bash", "not a dict", "/w").kind == "none"


def test_edit_preview_is_a_diff_against_the_file_as_it_is_now(tmp_path: Path):
    f = tmp_path / "a.txt"
    f.write_text("one\ntwo\nthree\n")
    pv = build_preview("edit", {"path": "a.txt", "edits": [{"oldText": "two", "newText": "TWO"}]}, str(tmp_path))
    assert pv.kind == "diff" and pv.error is None and pv.path == str(f)
    assert "--- a/a.txt" in (pv.diff or "") and "-two\n" in (pv.diff or "") and "+TWO\n" in (pv.diff or "")
    # the legacy single-edit shape too
    pv = build_preview("edit", {"path": str(f), "oldText": "one", "newText": "1"}, "/elsewhere")
    assert "-one\n" in (pv.diff or "") and "+1\n" in (pv.diff or "")
    # the model's idea of the file is wrong: said, not guessed
    pv = build_preview("edit", {"path": "a.txt", "edits": [{"oldText": "four", "newText": "4"}]}, str(tmp_path))
    assert pv.error and "not in the file" in pv.error
    assert build_preview("edit", {"path": "missing.txt", "edits": []}, str(tmp_path)).error == "the file does not exist"
    assert build_preview("edit", {"path": "a.txt"}, str(tmp_path)).error == "no edits in the call"


def test_write_preview_shows_a_new_file_or_the_whole_change(tmp_path: Path):
    pv = build_preview("write", {"path": "new.txt", "content": "hello\n"}, str(tmp_path))
    assert pv.new_file and "+hello\n" in (pv.diff or "")
    (tmp_path / "old.txt").write_text("a\n")
    pv = build_preview("write", {"path": "old.txt", "content": "b\n"}, str(tmp_path))
    assert not pv.new_file and "-a\n" in (pv.diff or "") and "+b\n" in (pv.diff or "")


def test_previews_are_bounded_and_never_fail(tmp_path: Path):
    big = tmp_path / "big.txt"
    big.write_bytes(b"x" * (MAX_FILE_BYTES + 1))
    assert "over" in (build_preview("write", {"path": str(big), "content": ""}, "/").error or "")
    binary = tmp_path / "b.bin"
    binary.write_bytes(b"\xff\xfe\x00")
    assert "not UTF-8" in (build_preview("write", {"path": str(binary), "content": ""}, "/").error or "")
    pv = build_preview("write", {"path": "long.txt", "content": "line\n" * 50_000}, str(tmp_path))
    assert pv.truncated and len(pv.diff or "") <= 100_000
    for bad in ({"path": 3}, {"path": ""}, {"path": "a\0b"}, {}):
        assert build_preview("write", bad, str(tmp_path)).error
    assert build_preview("edit", {"path": str(tmp_path)}, "/").error  # a folder


def test_paths_resolve_as_pi_resolves_them():
    assert resolve_path("@src/a.ts", "/w", "/h") == "/w/src/a.ts"
    assert resolve_path("~/x", "/w", "/h") == "/h/x"
    assert resolve_path("../x", "/w/p", "/h") == "/w/x"
    assert resolve_path("/abs", "/w", "/h") == "/abs"
