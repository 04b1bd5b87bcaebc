"""Watchdogs (pure): each detector on event sequences, the false positives included, and time."""

from __future__ import annotations

from pi_socket.bridge.watchdog import Thresholds, Watchdog

from .fake_shim import sample_events

T = Thresholds(stall_s=300, loop_n=3, retry_k=5, retry_window_s=600, context_pct=90)


def feed(w: Watchdog, events: list[dict], start: float = 1000.0, step: float = 1.0) -> float:
    now = start
    for e in events:
        w.observe(e, now)
        now += step
    return now


def call(n: int, name: str = "bash", args: dict | None = None) -> dict:
    part = {"type": "toolCall", "id": f"c{n}", "name": name, "arguments": args or {"command": "npm test"}}
    return {"type": "message_end", "message": {"role": "assistant", "content": [part], "stopReason": "toolUse"}}


def result(n: int, error: bool) -> dict:
    msg = {"role": "toolResult", "toolCallId": f"c{n}", "isError": error, "content": [{"type": "text", "text": "x"}]}
    return {"type": "message_end", "message": msg}


def say(text: str, stop: str = "stop") -> dict:
    return {"type": "message_end", "message": {"role": "assistant", "content": [{"type": "text", "text": text}],
                                               "stopReason": stop}}  # fmt: skip


def keys(w: Watchdog) -> list[str]:
    return sorted(f.key.rsplit("-", 1)[0] for f in w.live())


def test_a_recorded_normal_session_raises_nothing():
    w = Watchdog(T)
    now = feed(w, sample_events())
    assert w.live() == []
    w.tick(now + 3600)  # idle for an hour after the run ended: not stalled, it is done
    assert w.live() == []


def test_stalled_when_working_and_silent_and_not_when_waiting_or_a_tool_streams():
    w = Watchdog(T)
    now = feed(w, [{"type": "agent_start"}])
    assert not w.tick(now + 298) and w.live() == []
    assert w.tick(now + 301)
    (f,) = w.live()
    assert f.kind == "stalled" and f.summary.startswith("stalled: no event for 5 min")
    assert not w.tick(now + 500)  # still stalled: the same item, not news
    assert w.observe({"type": "message_update"}, now + 501)  # something happened: it ends
    assert w.live() == []
    # a long tool that keeps streaming output is not stalled
    w = Watchdog(T)
    now = feed(w, [{"type": "agent_start"}, {"type": "tool_execution_start", "toolCallId": "t", "args": {}}])
    for i in range(1, 20):
        w.observe({"type": "tool_execution_update", "toolCallId": "t"}, now + i * 60)
    assert w.live() == []
    # one with its own timeout hint may be silent up to that hint
    w = Watchdog(T)
    now = feed(w, [{"type": "agent_start"},
                   {"type": "tool_execution_start", "toolCallId": "t", "args": {"command": "make", "timeout": 900}}])  # fmt: skip
    assert not w.tick(now + 600) and w.tick(now + 940) and keys(w) == ["stall"]
    # waiting for a person (a pi dialog, an approval) is waiting, not stalled
    w = Watchdog(T)
    now = feed(w, [{"type": "agent_start"}, {"type": "ui_prompt_start", "title": "Pick"}])
    assert not w.tick(now + 3600)
    w = Watchdog(T)
    now = feed(w, [{"type": "agent_start"}])
    assert not w.tick(now + 3600, approvals_open=1)
    assert not w.tick(now + 3601, approvals_open=0)  # the decision restarts the clock
    assert w.tick(now + 3601 + 301)


def test_looping_on_the_same_failing_call_or_the_same_answer():
    w = Watchdog(T)
    feed(w, [call(1), result(1, True), call(2), result(2, True)])
    assert w.live() == []
    feed(w, [call(3), result(3, True)])
    (f,) = w.live()
    assert f.summary == "looping: bash failed 3 times in a row with the same arguments"
    feed(w, [call(4, args={"command": "npm test -- --fix"}), result(4, False)])  # it moved on: ends
    assert w.live() == []
    # different arguments each time is trying, not looping
    w = Watchdog(T)
    feed(w, [x for n in range(5) for x in (call(n, args={"command": f"try {n}"}), result(n, True))])
    assert w.live() == []
    # a success in between resets the count
    w = Watchdog(T)
    feed(w, [call(1), result(1, True), call(2), result(2, True), call(3), result(3, False), call(4), result(4, True)])
    assert w.live() == []
    w = Watchdog(T)
    feed(w, [say("I will fix it now."), say("I will fix it now."), say("I will fix it now.")])
    assert keys(w) == ["loop-text"]


def test_a_retry_storm_is_more_than_k_provider_errors_in_the_window():
    w = Watchdog(T)
    now = feed(w, [say("", "error")] * 5, step=10)
    assert w.live() == []
    w.observe(say("", "error"), now)
    assert keys(w) == ["retry"] and "6 provider errors" in w.live()[0].summary
    assert w.tick(now + 700)  # they age out of the window
    assert w.live() == []
    w = Watchdog(T)
    feed(w, [say("", "error")] * 6, step=200)  # spread over 20 minutes: no storm
    assert w.live() == []


def test_context_nearly_full_and_compaction_failing():
    w = Watchdog(T)
    assert not w.set_context(85.0, 1.0)
    assert w.set_context(93.0, 2.0) and "93%" in w.live()[0].summary
    assert w.set_context(40.0, 3.0) and w.live() == []  # compacted
    w.observe({"type": "session_compact_failed", "reason": "overflow"}, 4.0)
    assert w.set_context(82.0, 5.0) and "compaction failed" in w.live()[0].summary
    w.observe({"type": "session_compact"}, 6.0)
    assert w.live() == []
