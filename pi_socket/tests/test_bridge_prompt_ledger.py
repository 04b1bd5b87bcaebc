"""Prompt ledger: each id reaches pi once; every frame carrying it is answered."""

from __future__ import annotations

from pi_socket.bridge.prompt_ledger import Decision, PromptLedger


def test_new_then_repeat_while_pending_then_after_ack():
    ledger: PromptLedger[str] = PromptLedger()
    assert ledger.submit("p1", "a") is Decision.SEND
    assert ledger.submit("p1", "b") is Decision.WAIT
    assert ledger.confirm("p1") == ["a", "b"]
    assert ledger.submit("p1", "c") is Decision.ACK_DUPLICATE
    assert ledger.is_done("p1") and not ledger.is_pending("p1")


def test_failure_forgets_so_a_retry_is_sent():
    ledger: PromptLedger[str] = PromptLedger()
    ledger.submit("p1", "a")
    ledger.submit("p1", "b")
    assert ledger.fail("p1") == ["a", "b"]
    assert ledger.submit("p1", "a") is Decision.SEND


def test_memory_is_bounded_oldest_forgotten_first():
    ledger: PromptLedger[str] = PromptLedger(capacity=3)
    for i in range(5):
        ledger.submit(f"p{i}", "a")
        ledger.confirm(f"p{i}")
    assert not ledger.is_done("p0") and not ledger.is_done("p1")
    assert all(ledger.is_done(f"p{i}") for i in (2, 3, 4))
    assert ledger.submit("p2", "a") is Decision.ACK_DUPLICATE  # touching refreshes
    ledger.submit("p5", "a")
    ledger.confirm("p5")
    assert ledger.is_done("p2") and not ledger.is_done("p3")


def test_independent_ids():
    ledger: PromptLedger[str] = PromptLedger()
    assert ledger.submit("a", "x") is Decision.SEND
    assert ledger.submit("b", "x") is Decision.SEND
    assert ledger.confirm("b") == ["x"] and ledger.is_pending("a")
