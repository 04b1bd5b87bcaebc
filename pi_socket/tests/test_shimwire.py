"""The shim<->bridge stdio line models: what the bridge accepts, drops and writes (specs/protocol.md §4)."""

from __future__ import annotations

import pytest

from pi_socket import shimwire as w
from pi_socket.bridge.state import AgentState

SESSION = {
    "session_id": "s1",
    "session_file": "/tmp/s.jsonl",
    "session_name": None,
    "model": "anthropic/claude",
    "tools": [{"name": "read", "description": "", "active": True}],
    "commands": [],
}


def test_a_hello_as_the_shim_writes_it() -> None:
    hello = w.parse_shim_line(
        {
            "t": "hello",
            "v": 1,
            "node_id": "n1",
            "pid": 42,
            "cwd": "/w",
            "pi_version": "1.5.2",
            "mode": "tui",
            "session": SESSION,
            "later": "ignored",
        }
    )
    assert isinstance(hello, w.HelloLine)
    assert (hello.node_id, hello.pid, hello.cwd, hello.pi_version) == ("n1", 42, "/w", "1.5.2")
    assert hello.session is not None and hello.session.facts() == SESSION


def test_session_facts_keep_only_what_the_line_carried() -> None:
    """An absent session_name leaves the name alone; a field the state also reads passes through."""
    line = w.parse_shim_line({"t": "session", "reason": "new", "session_id": "s2", "context_usage": {"tokens": 5}})
    assert isinstance(line, w.SessionLine) and line.reason == "new"
    assert line.facts() == {"session_id": "s2", "context_usage": {"tokens": 5}}
    state = AgentState(session_name="kept")
    state.begin_session(line.facts())
    assert state.session_name == "kept" and state.context is not None and state.context.tokens == 5


def test_res_log_and_bye_lines() -> None:
    res = w.parse_shim_line({"t": "res", "id": "b1", "ok": True, "data": {"messages": [1, 2]}})
    assert isinstance(res, w.ResLine) and res.data == {"messages": [1, 2]}
    log = w.parse_shim_line({"t": "log", "level": "warn", "msg": "hi", "boundary": "x", "stack": "s"})
    assert isinstance(log, w.LogLine) and log.model_extra == {"boundary": "x", "stack": "s"}
    bye = w.parse_shim_line({"t": "bye", "reason": "quit"})
    assert isinstance(bye, w.ByeLine) and bye.reason == "quit"


def test_an_event_body_is_passed_through_uncopied() -> None:
    body = {"type": "message_update", "assistantMessageEvent": {"type": "text_delta", "delta": "x"}}
    assert w.event_body({"t": "event", "e": body}) is body


@pytest.mark.parametrize("line", [{"t": "event"}, {"t": "event", "e": 5}, {"t": "event", "e": [1]}])
def test_an_event_without_an_object_is_a_bad_event_line(line: dict) -> None:
    with pytest.raises(w.ShimLineError) as err:
        w.event_body(line)
    assert err.value.kind == "event"


@pytest.mark.parametrize(
    ("line", "kind"),
    [
        ({"t": "hello", "node_id": 5}, "hello"),
        ({"t": "hello", "pid": "42"}, "hello"),  # strict: no coercion
        ({"t": "hello", "session": "s"}, "hello"),
        ({"t": "session", "tools": "x"}, "session"),
        ({"t": "session", "model": 7}, "session"),
        ({"t": "res", "id": 1, "ok": True}, "res"),
        ({"t": "res", "id": "b1"}, "res"),
        ({"t": "log", "msg": {"a": 1}}, "log"),
        ({"t": "bye", "reason": 3}, "bye"),
    ],
)
def test_a_known_kind_with_a_bad_envelope_raises_naming_the_kind(line: dict, kind: str) -> None:
    with pytest.raises(w.ShimLineError) as err:
        w.parse_shim_line(line)
    assert err.value.kind == kind and kind in str(err.value)


def test_the_error_never_echoes_the_input() -> None:
    with pytest.raises(w.ShimLineError) as err:
        w.parse_shim_line({"t": "hello", "node_id": ["x" * 10_000]})
    assert len(str(err.value)) < 300


@pytest.mark.parametrize("line", [{}, {"t": 5}, {"t": "future_kind", "x": 1}, {"t": "ready"}])
def test_unknown_kinds_are_ignored(line: dict) -> None:
    assert w.parse_shim_line(line) is None


def test_lines_the_bridge_writes_are_the_documented_objects() -> None:
    """Byte-for-byte the objects §4.2 shows (the shim reads ready/watch/req by these names)."""
    assert w.dump_line(w.ReadyLine(port=7000, url="ws://h:7000/", watch=True, watching=False)) == {
        "t": "ready",
        "port": 7000,
        "url": "ws://h:7000/",
        "watch": True,
        "watching": False,
    }
    assert w.dump_line(w.WatchLine(on=True)) == {"t": "watch", "on": True}
    assert w.dump_line(w.ReqLine(id="b1", op="history")) == {"t": "req", "id": "b1", "op": "history"}
    send = w.ReqLine(
        id="b2",
        op="send",
        text="hi",
        prompt_id="p1",
        images=[{"type": "image", "data": "AA==", "mimeType": "image/png"}],
        deliverAs="steer",
    )
    assert w.dump_line(send) == {
        "t": "req",
        "id": "b2",
        "op": "send",
        "text": "hi",
        "prompt_id": "p1",
        "images": [{"type": "image", "data": "AA==", "mimeType": "image/png"}],
        "deliverAs": "steer",
    }
    assert w.dump_line(w.ReqLine(id="b3", op="notify", message="m", level="info")) == {
        "t": "req",
        "id": "b3",
        "op": "notify",
        "message": "m",
        "level": "info",
    }


@pytest.mark.parametrize("fields", [{"op": "nope"}, {"op": "send", "txt": "typo"}, {"op": "notify", "level": "loud"}])
def test_a_request_the_shim_does_not_know_is_refused_before_it_is_written(fields: dict) -> None:
    with pytest.raises(ValueError):
        w.ReqLine(id="b1", **fields)


def test_a_rename_by_a_client_is_a_state_effect_not_a_pi_event() -> None:
    state = AgentState()
    effect = state.set_session_name("new name")
    assert effect.heartbeat_now and effect.forward == {"type": "session_info_changed", "name": "new name"}
    assert state.session_name == "new name"
    again = state.set_session_name("new name")  # pi's own session_info_changed may come first: nothing twice
    assert not again.heartbeat_now and again.forward is None


@pytest.mark.parametrize("e", [{"type": "x"}, {}, 5, "s", [1], None])
def test_the_event_fast_check_agrees_with_the_documented_model(e: object) -> None:
    line = {"t": "event", "e": e}
    try:
        w.EventLine.model_validate(line)
        model_ok = True
    except ValueError:
        model_ok = False
    try:
        w.event_body(line)
        fast_ok = True
    except w.ShimLineError:
        fast_ok = False
    assert fast_ok == model_ok
