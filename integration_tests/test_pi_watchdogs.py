"""Watchdogs on real pi (specs/watchdogs.md): a loop, a stall and a retry storm each reach the inbox once, as
`stalled` items, and end when their condition does. Nobody watches the agents (the lean path), as overnight."""

from __future__ import annotations

import pytest

from integration_tests.test_pi_attention import added, call, resolved
from integration_tests.test_pi_link import connect, prompt, run_done
from integration_tests.test_pi_resilience import node_event, registry

pytestmark = [pytest.mark.pi]


def stalled(node_id: str, words: str):
    return lambda f: (
        f.get("event") == "attention_added"
        and f["item"]["node_id"] == node_id
        and f["item"]["kind"] == "stalled"
        and words in f["item"]["summary"]
    )


def test_looping_on_a_failing_tool_is_told_once(start_pi, pi_version, agent_client, hypivisor, fake_llm):
    dash = registry(agent_client, hypivisor)
    pi = start_pi(pi_version, mode="rpc", env={"HYPIVISOR_WS": hypivisor.ws_url})
    dash.wait_for(node_event("node_joined", pi.node_id))
    failing = {"tool_calls": [{"name": "bash", "arguments": {"command": "ls /no/such/dir"}}]}
    fake_llm.script([failing, failing, failing, {"text": "I give up."}])
    c, _ = connect(agent_client, pi)
    c.close()  # nobody watches: the lean path must carry what the watchdog needs
    pi.call({"type": "prompt", "message": "try it"})
    item = dash.wait_for(stalled(pi.node_id, "looping: bash failed 3 times"), timeout=30)["item"]
    assert len([f for f in dash.frames if stalled(pi.node_id, "looping")(f)]) == 1
    # the first run ends ("I give up."): a prompt sent while it still runs would be refused as busy
    assert pi.until(lambda m: m.get("type") == "agent_end", timeout=30), "the first run did not end"
    # it moves on (the same command works now): the item ends by itself
    fake_llm.script([{"tool_calls": [{"name": "bash", "arguments": {"command": "ls /"}}]}, {"text": "ok"}])
    answer = pi.call({"type": "prompt", "message": "again"})
    assert answer and answer.get("success"), answer
    dash.wait_for(resolved(item["id"], "cause"), timeout=30)


def test_a_silent_command_past_the_stall_time_is_stalled_until_it_ends(
    start_pi, pi_version, agent_client, hypivisor, fake_llm
):
    dash = registry(agent_client, hypivisor)
    pi = start_pi(pi_version, mode="rpc", env={"HYPIVISOR_WS": hypivisor.ws_url, "PI_SOCKET_STALL_S": "3"})
    dash.wait_for(node_event("node_joined", pi.node_id))
    fake_llm.script([{"tool_calls": [{"name": "bash", "arguments": {"command": "sleep 16"}}]}, {"text": "slept"}])
    pi.call({"type": "prompt", "message": "sleep"})
    item = dash.wait_for(stalled(pi.node_id, "stalled:"), timeout=30)["item"]
    dash.wait_for(resolved(item["id"], "cause"), timeout=40)
    assert len([f for f in dash.frames if stalled(pi.node_id, "stalled:")(f)]) == 1


def test_a_retry_storm_is_told(start_pi, pi_version, agent_client, hypivisor, fake_llm):
    dash = registry(agent_client, hypivisor)
    pi = start_pi(pi_version, mode="rpc", env={"HYPIVISOR_WS": hypivisor.ws_url, "PI_SOCKET_RETRY_STORM": "2"})
    dash.wait_for(node_event("node_joined", pi.node_id))
    c, _ = connect(agent_client, pi)
    for n in range(3):
        mark = len(c.frames)
        prompt(c, f"FAIL500 #{n}")
        c.wait_for(run_done(pi_version), start=mark, timeout=30)
    dash.wait_for(stalled(pi.node_id, "retry storm: 3 provider errors"), timeout=20)
    assert [i["kind"] for i in call(dash, "list_attention")["items"] if i["node_id"] == pi.node_id].count("error") == 1
    assert dash.wait_for(added(pi.node_id, "error"))
