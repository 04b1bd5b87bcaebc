"""Small pure pieces: client-frame parsing, backoff, config, agent state."""

from __future__ import annotations

import re
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pi_socket.bridge.backoff import Backoff
from pi_socket.bridge.config import BridgeConfig
from pi_socket.bridge.frames import parse_client_frame
from pi_socket.bridge.state import FORWARDED_EVENTS, AgentState
from pi_socket.protocol import AgentNode, ErrorCode, ErrorMsg, FetchHistoryMsg, PromptMsg

from .fake_shim import assistant_message, sample_events, user_message


def err(raw) -> ErrorMsg:
    out = parse_client_frame(raw)
    assert isinstance(out, ErrorMsg), out
    return out


def test_frames_valid():
    assert isinstance(parse_client_frame('{"type":"prompt","id":"a","text":"hi"}'), PromptMsg)
    assert isinstance(parse_client_frame('{"type":"fetch_history","before":3}'), FetchHistoryMsg)


def test_frames_invalid_each_get_a_specific_error():
    assert err(b"\x00binary").code == ErrorCode.INVALID_REQUEST
    assert err("not json").code == ErrorCode.PARSE_ERROR
    assert err("[1,2]").code == ErrorCode.INVALID_REQUEST
    assert err('{"text":"hi"}').code == ErrorCode.INVALID_REQUEST
    assert err('{"type":"launch_missiles"}').code == ErrorCode.METHOD_NOT_FOUND
    e = err('{"type":"prompt","id":"p9","text":5}')
    assert (e.code, e.id) == (ErrorCode.INVALID_PARAMS, "p9") and "text" in e.message
    # a newer client's unknown field is ignored (version skew); the known ones are still checked
    assert isinstance(parse_client_frame('{"type":"prompt","id":"p","text":"x","extra":1}'), PromptMsg)
    assert err('{"type":"prompt","id":"p","text":5,"extra":1}').code == ErrorCode.INVALID_PARAMS
    assert err('{"type":"fetch_history","before":-1}').code == ErrorCode.INVALID_PARAMS
    assert err('{"type":"set_session_name","name":""}').code == ErrorCode.INVALID_PARAMS


def test_backoff_doubles_to_cap_and_resets():
    b = Backoff(1.0, 10.0)
    assert [b.next_delay() for _ in range(6)] == [1, 2, 4, 8, 10, 10]
    b.reset()
    assert b.next_delay() == 1
    fast = Backoff(0.1, 10.0)
    assert [round(fast.next_delay(), 2) for _ in range(3)] == [0.1, 0.2, 0.4]


def test_config_from_env():
    c = BridgeConfig.from_env(
        {
            "PI_SOCKET_PORT": "9000",
            "PI_SOCKET_PREFERRED_PORT": "9050",
            "PI_SOCKET_RECONNECT_MS": "250",
            "HYPI_ALLOWED_ORIGINS": "https://a.b, https://c.d/",
            "HYPIVISOR_WS": "ws://h:4000/ws",
        }
    )
    assert c.candidate_ports()[:3] == [9050, 9000, 9001] and len(c.candidate_ports()) == 101
    assert c.reconnect_first_s == 0.25 and c.host == "127.0.0.1"
    assert {"https://a.b", "https://c.d", "http://localhost:4000", "http://localhost:5180"} <= c.allowed_origins
    d = BridgeConfig.from_env({"PI_SOCKET_PORT": "junk", "HYPIVISOR_WS": "off"})
    assert d.port == 8080 and not d.registry_enabled and d.hypivisor_ws == "off"
    assert BridgeConfig.from_env({}).hypivisor_ws == "ws://localhost:31415/ws"


def node() -> AgentNode:
    return AgentNode(id="n", machine="m", cwd="/w", port=1)


def test_state_tracks_activity_partial_tokens_and_forwards_trimmed_events():
    state = AgentState()
    state.finish_history([user_message("old", 1), assistant_message("old reply", 2, tokens=5, cost=0.5)])
    assert state.tokens["total"] == 10 and state.cost == 0.5
    effects = [state.apply_event(e) for e in sample_events()[:8]]  # agent_start .. a few text deltas
    assert effects[0].heartbeat_now and state.working
    init = state.init_state(node())
    assert init.is_streaming and init.partial is not None and init.partial.content[0]["text"].startswith("Hello")
    for e in sample_events()[8:]:
        eff = state.apply_event(e)
        if e["type"] == "agent_end":
            assert eff.heartbeat_now and eff.refresh_state
    assert not state.working and state.partial.snapshot() is None
    roles = [m["role"] for m in state.history.messages]
    assert roles == ["user", "assistant", "user", "assistant", "user", "assistant", "toolResult", "assistant"]
    assert state.tokens["total"] == 10 + 616 + 658 + 712


def test_state_drops_extension_only_events_and_system_messages():
    state = AgentState()
    assert state.apply_event({"type": "context", "messages": []}).forward is None
    assert state.apply_event({"type": "message_end", "message": {"role": "system", "content": "x"}}).forward is None
    upd = state.apply_event(
        {
            "type": "message_update",
            "message": {"role": "assistant"},
            "assistantMessageEvent": {"type": "text_delta", "delta": "x", "partial": {}},
        }
    )
    assert upd.forward == {"type": "message_update", "assistantMessageEvent": {"type": "text_delta", "delta": "x"}}
    assert "context" not in state.apply_event({"type": "turn_end", "context": [1], "message": {}}).forward


def test_state_settled_semantics_for_pi_1x():
    state = AgentState(settled_supported=True)
    state.apply_event({"type": "agent_start"})
    assert not state.apply_event({"type": "agent_end"}).heartbeat_now and state.working  # maybe retrying
    assert state.apply_event({"type": "agent_settled", "aborted": False}).heartbeat_now and not state.working


def test_state_session_name_changes_forward_once():
    state = AgentState()
    first = state.apply_event({"type": "session_info_changed", "name": "x"})
    assert first.forward == {"type": "session_info_changed", "name": "x"} and first.heartbeat_now
    assert state.apply_event({"type": "session_info_changed", "name": "x"}).forward is None


def test_state_skips_malformed_tools_and_commands():
    state = AgentState()
    state.apply_state(
        {
            "tools": [{"name": "ok"}, {"name": 3}, "junk", {"description": "no name"}],
            "commands": [{"name": "c", "description": None}, {"name": "d", "description": "fine"}],
            "context_usage": {"tokens": "many"},
            "model": {"provider": "p", "id": "m"},
        }
    )
    assert [t.name for t in state.tools] == ["ok"] and [c.name for c in state.commands] == ["d"]
    assert state.context is None and state.model == "p/m"


def test_agent_settled_detection_by_version():
    from pi_socket.bridge.app import clip, has_agent_settled

    assert [has_agent_settled(v) for v in ("1.5.2", "1.x", "2.0.0", "0.73.1", "0.x", "unknown", "")] == [
        True,
        True,
        True,
        False,
        False,
        False,
        False,
    ]
    assert clip("abc", 2) == "ab" and clip(None, 2) is None


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=6,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.dictionaries(
        st.sampled_from(["type", "id", "text", "before", "limit", "prefix", "name", "attachments", "deliver_as", "x"]),
        json_values
        | st.sampled_from(["prompt", "abort", "fetch_history", "list_commands", "list_files", "set_session_name"]),
        max_size=6,
    )
)
def test_any_json_object_parses_to_a_model_or_an_error_never_raises(obj):
    import json as _json

    out = parse_client_frame(_json.dumps(obj))
    assert isinstance(out, ErrorMsg) or out.type == obj.get("type")


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(["text", "thinking"]), st.integers(0, 3), st.text(max_size=5)), max_size=60))
def test_delta_reconstruction_matches_naive_concatenation(ops):
    from pi_socket.bridge.partial import PartialMessage

    p = PartialMessage()
    p.start({"role": "assistant", "content": []})
    naive: dict[int, tuple[str, str]] = {}
    for kind, index, delta in ops:
        p.update({"assistantMessageEvent": {"type": f"{kind}_delta", "contentIndex": index, "delta": delta}})
        prev_kind, prev = naive.get(index, (kind, ""))
        naive[index] = (kind, (prev if prev_kind == kind else "") + delta)
    snap = p.snapshot()["content"]
    expected = [{"type": k, ("text" if k == "text" else "thinking"): v} for _, (k, v) in sorted(naive.items())]
    assert snap == expected


def test_roster_epoch_moves_on_event_driven_changes_only():
    state = AgentState()
    state.apply_state({"session_name": "a", "model": "p/m"})
    assert state.roster_epoch == 0
    state.apply_event({"type": "session_info_changed", "name": "b"})
    state.apply_event({"type": "model_select", "model": "p/n"})
    state.apply_event({"type": "model_select", "model": "p/n"})
    assert state.roster_epoch == 2


def test_default_keepalive_drops_a_dead_link_within_the_registry_heartbeat_interval():
    from pi_socket.bridge.config import HEARTBEAT_FALLBACK_S, BridgeConfig

    interval, timeout, close = BridgeConfig.from_env({}).keepalive()
    assert interval + timeout + close <= HEARTBEAT_FALLBACK_S
    assert BridgeConfig.from_env({"PI_SOCKET_KEEPALIVE": "1"}).keepalive() == (1.0, 2.0, 1.0)
    assert BridgeConfig.from_env({"PI_SOCKET_KEEPALIVE": "junk"}).keepalive()[0] == 4.0


def test_the_shim_subscribes_to_exactly_the_pi_events_the_bridge_forwards():
    """protocol.PI_FORWARDED_EVENTS is the list; the shim's copy (src/events.ts FORWARDED) is pinned to it here: an
    event only the shim sends would be dropped by the bridge, one only the bridge knows would never arrive.
    ``context_usage`` is not a pi event: the shim makes it at each turn_end (SHIM_EVENT_TYPES, src/events.ts)."""
    from pi_socket.protocol import PI_FORWARDED_EVENTS, SHIM_EVENT_TYPES

    events_ts = (Path(__file__).resolve().parents[1] / "extension" / "src" / "events.ts").read_text()
    block = re.search(r"export const FORWARDED = \[(.*?)\];", events_ts, re.DOTALL)
    assert block, "FORWARDED not found in src/events.ts"
    shim = re.findall(r'"([a-z_]+)"', block[1])
    assert shim == list(PI_FORWARDED_EVENTS)
    made = re.search(r'export const CONTEXT_USAGE = "([a-z_]+)";', events_ts)
    assert made and (made[1],) == SHIM_EVENT_TYPES
    assert FORWARDED_EVENTS == set(PI_FORWARDED_EVENTS) | set(SHIM_EVENT_TYPES)
