"""init_state tells clients pi's session file, so a dashboard can resume it after pi exits."""

from __future__ import annotations

from pi_socket.bridge.state import AgentState
from pi_socket.protocol import AgentNode


def test_init_state_carries_the_session_file_of_the_current_session():
    state = AgentState()
    node = AgentNode(id="n", machine="m", cwd="/h/p", port=1)
    assert state.init_state(node).session_file is None
    state.begin_session({"session_id": "s1", "session_file": "/h/.pi/agent/sessions/a.jsonl"})
    assert state.init_state(node).session_file == "/h/.pi/agent/sessions/a.jsonl"
    state.begin_session({"session_id": "s2", "session_file": 42})  # not a string: not passed on
    assert state.init_state(node).session_file is None
