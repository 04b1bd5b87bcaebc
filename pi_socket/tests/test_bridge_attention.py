"""What the bridge reports as needing a person, from pi's events (pure)."""

from __future__ import annotations

from pi_socket.bridge.approvals import ApprovalBook
from pi_socket.bridge.attention import AttentionTracker, approval_summary, plain_line
from pi_socket.shimwire import ApprovalLine


def assistant(text: str, stop: str = "stop", error: str | None = None) -> dict:
    msg = {"role": "assistant", "content": [{"type": "text", "text": text}], "stopReason": stop}
    if error:
        msg["errorMessage"] = error
    return {"type": "message_end", "message": msg}


def feed(t: AttentionTracker, events: list[dict], settled: bool = True) -> list[bool]:
    return [t.observe(e, settled, 100.0) for e in events]


def test_a_settled_run_is_reported_once_with_its_last_words_in_plain_text():
    t = AttentionTracker()
    changed = feed(t, [{"type": "agent_start"}, assistant("## Done\n\n**Tests pass** (3 files changed)"),
                       {"type": "agent_settled"}])  # fmt: skip
    assert changed == [False, False, True]
    run = t.last_run
    assert run is not None and run.outcome == "finished" and run.summary == "Done" and run.new_messages == 1
    first = run.key
    feed(t, [{"type": "agent_start"}, assistant("ok"), {"type": "agent_settled"}])
    assert t.last_run is not None and t.last_run.key != first


def test_errors_retries_and_aborts():
    t = AttentionTracker()
    feed(t, [{"type": "agent_start"}, assistant("", "error", "429 rate limited"), {"type": "agent_settled"}])
    assert t.last_run is not None and t.last_run.outcome == "error" and t.last_run.summary == "429 rate limited"
    # an error that a retry recovered from is a finished run
    feed(t, [assistant("", "error", "overloaded"), assistant("fine now"), {"type": "agent_settled"}])
    assert t.last_run.outcome == "finished" and t.last_run.summary == "fine now"
    # a person aborted: nothing to tell them
    before = t.last_run
    assert feed(t, [assistant("half", "aborted"), {"type": "agent_settled", "aborted": True}]) == [False, False]
    assert t.last_run is before


def test_pi_0_7x_ends_runs_with_agent_end():
    t = AttentionTracker()
    assert feed(t, [assistant("hi"), {"type": "agent_end"}], settled=False) == [False, True]
    assert feed(t, [assistant("hi"), {"type": "agent_end"}], settled=True) == [False, False]  # pi >= 1: not yet


def test_dialogs_are_questions_but_the_gate_s_own_is_not():
    t = AttentionTracker()
    book = ApprovalBook()
    assert feed(t, [{"type": "ui_prompt_start", "kind": "select", "title": "Which **branch**?"}]) == [True]
    assert feed(t, [{"type": "ui_prompt_start", "kind": "select", "title": "Hyper-Pi: allow bash? ls"}]) == [False]
    (q,) = t.report(book).live
    assert q.kind == "question" and q.summary == "Which branch?"
    assert feed(t, [{"type": "ui_prompt_end"}]) == [True]
    assert t.report(book).live == []


def test_open_approvals_are_live_items():
    book = ApprovalBook()
    book.ask(
        ApprovalLine(
            t="approval",
            id="a1",
            tool_call_id="c",
            tool_name="bash",
            input={"command": "rm -rf  build"},
            policy="writes",
            queued_at=5.0,
        ),  # fmt: skip
        None,
    )
    (item,) = AttentionTracker().report(book).live
    assert (item.kind, item.key, item.approval_id, item.summary) == ("approval", "a1", "a1", "bash `rm -rf build`")


def test_plain_line():
    assert plain_line("```py\nx=1\n```\n- [docs](http://x) are *here*") == "docs are here"
    assert plain_line("| a | b |\n|---|---|") == "| a | b |"
    assert plain_line("") == "" and len(plain_line("x" * 500)) == 200
    assert approval_summary("edit", {"path": "src/a.ts"}) == "edit src/a.ts" and approval_summary("x", 3) == "x"
