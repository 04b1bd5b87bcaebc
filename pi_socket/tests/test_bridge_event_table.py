"""The agent mirror's event table: one explicit handler per pi event type it reacts to, no reflective lookup."""

from __future__ import annotations

import inspect

from pi_socket.bridge.state import EVENT_HANDLERS, AgentState


def test_every_event_handler_is_in_the_table_under_its_event_type():
    methods = {name[len("_on_") :]: fn for name, fn in vars(AgentState).items() if name.startswith("_on_")}
    assert EVENT_HANDLERS == methods


def test_apply_event_uses_the_table_not_getattr():
    src = inspect.getsource(AgentState.apply_event)
    assert "EVENT_HANDLERS" in src and "getattr(" not in src


def test_unknown_or_odd_event_types_do_nothing():
    state = AgentState()
    for event in ({"type": "__init__"}, {"type": "_set_working"}, {"type": None}, {"type": 3}, {}):
        assert state.apply_event(event).forward is None and not state.working
