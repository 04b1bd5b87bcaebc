"""Partial-message reconstruction from the shim's slim message_update events (recorded shapes)."""

from __future__ import annotations

from pi_socket.bridge.partial import PartialMessage

from .fake_shim import sample_events


def replay(events, stop_before: int | None = None) -> PartialMessage:
    partial = PartialMessage()
    for n, e in enumerate(events):
        if stop_before is not None and n == stop_before:
            break
        if e["type"] == "message_start":
            partial.start(e["message"])
        elif e["type"] == "message_update":
            partial.update(e)
        elif e["type"] == "message_end":
            partial.end()
    return partial


def index_of(events, pred) -> int:
    return next(i for i, e in enumerate(events) if pred(e))


def test_text_deltas_rebuild_the_text_mid_stream():
    events = sample_events()
    # stop just before the 4th text_delta of the first reply: "Hello from fake LL"
    deltas = [
        i
        for i, e in enumerate(events)
        if e["type"] == "message_update" and e["assistantMessageEvent"]["type"] == "text_delta"
    ]
    snap = replay(events, deltas[3]).snapshot()
    assert snap["role"] == "assistant" and snap["model"] == "fake-model"
    assert snap["content"] == [{"type": "text", "text": "Hello from fake LL"}]


def test_text_end_sets_final_text_and_message_end_clears():
    events = sample_events()
    end = index_of(events, lambda e: e["type"] == "message_end" and e["message"]["role"] == "assistant")
    assert replay(events, end).snapshot()["content"][0]["text"] == "Hello from fake LLM. You said: hello"
    assert replay(events, end + 1).snapshot() is None


def test_toolcall_is_rebuilt_from_start_deltas_and_end():
    events = sample_events()
    start = index_of(
        events, lambda e: e["type"] == "message_update" and e["assistantMessageEvent"]["type"] == "toolcall_start"
    )
    mid = replay(events, start + 3).snapshot()  # after start, '' and '{"command": '
    assert mid["content"][0]["type"] == "toolCall" and mid["content"][0]["id"] == "call_9b6e18a5"
    assert mid["content"][0]["arguments"] == {}
    done = replay(events, start + 5).snapshot()  # after toolcall_end
    assert done["content"][0] == {
        "type": "toolCall",
        "id": "call_9b6e18a5",
        "name": "bash",
        "arguments": {"command": "echo hi"},
    }


def test_thinking_and_gaps_and_garbage():
    p = PartialMessage()
    p.start({"role": "assistant", "content": []})
    p.update({"type": "message_update", "assistantMessageEvent": {"type": "thinking_start", "contentIndex": 0}})
    p.update(
        {
            "type": "message_update",
            "assistantMessageEvent": {"type": "thinking_delta", "contentIndex": 0, "delta": "hmm"},
        }
    )
    p.update(
        {"type": "message_update", "assistantMessageEvent": {"type": "text_delta", "contentIndex": 2, "delta": "x"}}
    )
    for bad in (
        {},
        {"assistantMessageEvent": "x"},
        {"assistantMessageEvent": {"type": "text_block", "contentIndex": 0}},
        {"assistantMessageEvent": {"type": "text_delta", "contentIndex": -1}},
        {"assistantMessageEvent": {"type": "text_delta", "contentIndex": 10**9, "delta": "x"}},
    ):
        p.update(bad)
    assert p.snapshot()["content"] == [{"type": "thinking", "thinking": "hmm"}, {"type": "text", "text": "x"}]


def test_user_message_start_is_not_partial_and_snapshot_replaces():
    p = PartialMessage()
    p.start({"role": "user", "content": []})
    assert p.snapshot() is None
    p.start({"role": "assistant", "content": []})
    assert p.update(
        {"type": "message_update", "message": {"role": "assistant", "content": [{"type": "text", "text": "S"}]}}
    )
    assert p.snapshot()["content"] == [{"type": "text", "text": "S"}]
    assert not p.update(
        {"type": "message_update", "assistantMessageEvent": {"type": "text_delta", "contentIndex": 0, "delta": "T"}}
    )
    assert p.snapshot()["content"] == [{"type": "text", "text": "ST"}]


def test_long_stream_is_linear_and_exact():
    p = PartialMessage()
    p.start({"role": "assistant", "content": []})
    p.update({"assistantMessageEvent": {"type": "text_start", "contentIndex": 0}})
    for i in range(20_000):
        p.update({"assistantMessageEvent": {"type": "text_delta", "contentIndex": 0, "delta": f"{i} "}})
        if i == 10_000:
            assert p.snapshot()["content"][0]["text"].endswith("9999 10000 ")
    assert p.snapshot()["content"][0]["text"] == "".join(f"{i} " for i in range(20_000))
    p.update({"assistantMessageEvent": {"type": "thinking_delta", "contentIndex": 0, "delta": "kind changed"}})
    assert p.snapshot()["content"][0] == {"type": "thinking", "thinking": "kind changed"}
