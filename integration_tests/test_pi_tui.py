"""The shim in the real interactive TUI under tmux (pi 0.73.1, 1.5.2, 1.6.0).

One pi per version goes through the whole life of an interactive session: the agent URL is shown once,
the TUI is never scribbled on, a prompt from the link renders in the TUI, and `/reload` and `/new` (which
re-evaluate the shim's module) keep the same bridge, node id and port. `/quit` ends pi and its bridge.
"""

from __future__ import annotations

import time

import pytest

from integration_tests.harness.pi_proc import pid_alive, wait_until
from integration_tests.test_pi_link import assistant_end, connect, is_type, prompt, text_of

pytestmark = [pytest.mark.pi, pytest.mark.slow]


@pytest.mark.pi_smoke
def test_tui_reload_and_new_keep_node_id_and_port(start_pi, pi_version, agent_client, fake_llm):
    pi = start_pi(pi_version, mode="tui")
    node_id, port, bridge = pi.node_id, pi.port, pi.bridge_pid()
    screen = pi.wait_for(r"this agent is at ws://127\.0\.0\.1:\d+", timeout=15)
    assert f"ws://127.0.0.1:{port}" in screen
    assert "Extension" not in screen and "Traceback" not in screen  # nothing printed over the TUI

    # a prompt typed in the TUI reaches connected clients; a prompt from a client renders in the TUI
    c, _ = connect(agent_client, pi)
    pi.submit("typed in the tui")
    c.wait_for(lambda f: assistant_end(f) and "You said: typed in the tui" in text_of(f["message"]))
    prompt(c, "sent from the link")
    pi.wait_for(r"You said: sent from the link")

    # /reload: a fresh module instance takes over the same bridge
    pi.submit("/reload")
    after_reload, init = _reconnect(agent_client, pi, node_id, port)
    prompt_until_acked(after_reload, "after reload")
    pi.wait_for(r"You said: after reload")
    after_reload.wait_for(lambda f: assistant_end(f) and "after reload" in text_of(f["message"]))

    # /new: a new session; clients get a fresh init_state, same node and port
    mark = len(after_reload.frames)
    pi.submit("/new")
    fresh = after_reload.wait_for(is_type("init_state"), start=mark, timeout=15)
    assert fresh["node"]["id"] == node_id and fresh["messages"] == []
    prompt(after_reload, "in the new session")
    pi.wait_for(r"You said: in the new session")

    assert len(pi.listening()) == 1, "a second bridge was started"
    assert pi.bridge_pid() == bridge
    assert pi.screen().count("this agent is at") <= 1
    assert "Extension" not in pi.screen()

    # /quit: pi exits, and so does its bridge
    pi.submit("/quit")
    wait_until(lambda: not pi.pi_pid(), 15, "pi to quit")
    wait_until(lambda: not pid_alive(bridge), 10, "the bridge to exit after /quit")


def prompt_until_acked(c, text: str, timeout: float = 15) -> None:
    """Send a prompt; while the reloading pi refuses it (error 1012: old instance gone, new one not ready yet),
    resend the same id. Bounded; fails if pi never accepts it."""
    pid = f"p-{abs(hash(text))}"
    mark = len(c.frames)
    for _ in range(int(timeout / 0.3)):
        prompt(c, text, id=pid)
        reply = c.wait_for(lambda f: f.get("id") == pid and f.get("type") in ("ack", "error"), start=mark)
        if reply["type"] == "ack":
            return
        mark = len(c.frames)
        time.sleep(0.3)
    raise AssertionError(f"pi never accepted {text!r}")


def _reconnect(agent_client, pi, node_id, port):
    """A new client after /reload: same port, same node id; wait until the new instance answers."""
    c, init = connect(agent_client, pi)
    assert init["node"]["id"] == node_id and pi.port == port
    return c, init
