"""The shim coalesces its stdin writes to the bridge (one pipe write per event-loop turn,
pi_socket/extension/src/outq.ts). Nothing may be lost or reordered by it, least of all when pi exits
right after a burst of events: ``pi -p`` streams a long reply in many tiny deltas and quits at once;
a client connected to the bridge must still see every delta, in order, then the run's end, and the
bridge must have been told ``bye`` (flushed after the queued lines, before stdin is closed)."""

from __future__ import annotations

import pytest

from integration_tests.harness.pi_proc import wait_until
from integration_tests.test_pi_link import assistant_end, connect, run_done, text_of

pytestmark = [pytest.mark.pi]


def test_a_burst_of_events_right_before_pi_exits_reaches_clients_whole_and_in_order(
    start_pi, pi_version, agent_client, fake_llm
):
    text = "".join(f"w{i:04d} " for i in range(1500))  # 9,000 characters in 2,250 deltas of 4
    fake_llm.script(
        [
            {"tool_calls": [{"name": "bash", "arguments": {"command": "sleep 2"}}], "delay": 0},
            {"text": text, "chunk": 4, "delay": 0},
        ]
    )
    pi = start_pi(pi_version, mode="print", prompt="burst")
    pi.wait_bridge()
    c, _ = connect(agent_client, pi)  # during the tool call's sleep
    rc, _out, err, _seconds = pi.wait(timeout=60)
    assert rc == 0, err
    c.wait_for(run_done(pi_version), timeout=20)
    deltas = [
        f["assistantMessageEvent"]["delta"]
        for f in c.of_type("message_update")
        if f["assistantMessageEvent"]["type"] == "text_delta"
    ]
    assert "".join(deltas) == text, f"{len(deltas)} deltas did not add up to the reply"
    ends = [f for f in c.frames if assistant_end(f)]
    assert text_of(ends[-1]["message"]) == text
    types = [f.get("type") for f in c.frames]
    assert types.index("agent_end") > max(i for i, t in enumerate(types) if t == "message_update")
    wait_until(lambda: any(r.get("msg") == "shim said bye" for r in pi.bridge_log()), 10, "the bridge to get bye")
