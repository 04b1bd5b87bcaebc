"""RPC-mode session replacement on every pi version: clients get the new session's init_state.

pi 1.5.x fires `session_start` twice for an RPC `new_session`; the bridge's second history load used to replace
the first and forget that the session changed, so connected clients kept showing the old conversation.
"""

from __future__ import annotations

import pytest

from integration_tests.test_pi_link import connect, is_type, prompt, run_done

pytestmark = [pytest.mark.pi, pytest.mark.pi_smoke]


def test_rpc_new_session_gives_clients_a_fresh_init_state(start_pi, pi_version, agent_client):
    pi = start_pi(pi_version, mode="rpc")
    c, first = connect(agent_client, pi)
    prompt(c, "remember the first session")
    c.wait_for(run_done(pi_version))
    mark = len(c.frames)
    reply = pi.call({"type": "new_session"})
    assert reply is not None and reply.get("success") is not False, reply
    fresh = c.wait_for(is_type("init_state"), start=mark, timeout=20)
    assert fresh["messages"] == [] and fresh["node"]["id"] == first["node"]["id"]
    # the new session works, and a late joiner sees only it
    prompt(c, "in the new one")
    c.wait_for(run_done(pi_version), start=mark)
    _, late = connect(agent_client, pi)
    texts = [str(m.get("content")) for m in late["messages"]]
    assert any("in the new one" in t for t in texts) and not any("first session" in t for t in texts)
