"""The agent link of a real pi (0.73.1, 1.5.2, 1.6.0) through the shim and the real bridge.

Each test starts pi in RPC mode (the fastest real pi; the shim behaves the same in the TUI, see
test_pi_tui.py), connects to the bridge's port as a client would, and drives pi through the link.
The fake LLM decides what the model says (integration_tests/harness/fake_llm.py).
"""

from __future__ import annotations

import time
import uuid

import pytest

pytestmark = [pytest.mark.pi]


def is_type(t: str, **match):
    return lambda f: f.get("type") == t and all(f.get(k) == v for k, v in match.items())


def assistant_end(f: dict) -> bool:
    return f.get("type") == "message_end" and (f.get("message") or {}).get("role") == "assistant"


def run_done(version: str):
    """`agent_settled` on pi >= 1, `agent_end` on 0.7x: the run is over."""
    return is_type("agent_end" if version.startswith("0.") else "agent_settled")


def text_of(message: dict) -> str:
    return "".join(c.get("text", "") for c in message.get("content") or [] if c.get("type") == "text")


def prompt(client, text: str, **extra) -> str:
    pid = extra.pop("id", None) or f"p-{uuid.uuid4().hex[:8]}"
    client.send({"type": "prompt", "id": pid, "text": text, **extra})
    return pid


def connect(agent_client, pi):
    c = agent_client(pi.url)
    init = c.wait_for(is_type("init_state"))
    return c, init


@pytest.mark.pi_smoke
def test_plain_reply_streams_and_is_acknowledged(start_pi, pi_version, agent_client):
    pi = start_pi(pi_version, mode="rpc")
    c, init = connect(agent_client, pi)
    assert init["node"]["id"] == pi.node_id and init["node"]["port"] == pi.port
    assert init["node"]["pi_version"] == pi_version
    assert init["is_streaming"] is False and init["messages"] == []
    assert {t["name"] for t in init["tools"]} >= {"read", "bash", "edit", "write"}
    pid = prompt(c, "hello there")
    ack = c.wait_for(is_type("ack", id=pid))
    assert ack["duplicate"] is False
    end = c.wait_for(assistant_end)
    assert text_of(end["message"]) == "Hello from fake LLM. You said: hello there"
    deltas = [f for f in c.of_type("message_update") if f["assistantMessageEvent"]["type"] == "text_delta"]
    assert deltas, "no streamed text deltas"
    # trimmed: no snapshots of the partial message (O(n^2) traffic)
    assert all("message" not in f and "partial" not in f["assistantMessageEvent"] for f in deltas)
    c.wait_for(run_done(pi_version))
    # no system prompt message ever reaches a client (pi 1.5 emits one)
    assert not [f for f in c.frames if (f.get("message") or {}).get("role") == "system"]


def test_thinking_is_streamed(start_pi, pi_version, agent_client):
    pi = start_pi(pi_version, mode="rpc")
    c, _ = connect(agent_client, pi)
    prompt(c, "THINK about it")
    end = c.wait_for(assistant_end)
    kinds = [f["assistantMessageEvent"]["type"] for f in c.of_type("message_update")]
    assert "thinking_start" in kinds and "thinking_delta" in kinds and "thinking_end" in kinds
    thinking = [p for p in end["message"]["content"] if p["type"] == "thinking"]
    assert thinking and "think about this carefully" in thinking[0]["thinking"]


@pytest.mark.pi_smoke
def test_tool_call_really_runs_bash(start_pi, pi_version, agent_client, pi_home):
    pi = start_pi(pi_version, mode="rpc")
    c, _ = connect(agent_client, pi)
    marker = pi_home.cwd / "made-by-tool.txt"
    prompt(c, "TOOLCALL: echo from-the-tool > made-by-tool.txt; echo done")
    start = c.wait_for(is_type("tool_execution_start"))
    assert start["toolName"] == "bash"
    tool_start = c.wait_for(
        lambda f: f.get("type") == "message_update" and f["assistantMessageEvent"]["type"] == "toolcall_start"
    )
    assert tool_start["assistantMessageEvent"]["toolCall"]["name"] == "bash"  # labelled before toolcall_end
    end = c.wait_for(is_type("tool_execution_end"))
    assert end["isError"] is False
    c.wait_for(run_done(pi_version))
    assert marker.read_text().strip() == "from-the-tool"
    finals = [f for f in c.frames if assistant_end(f)]
    assert text_of(finals[-1]["message"]).startswith("Tool result received: done")


def test_follow_up_while_streaming_is_delivered_in_the_same_run(start_pi, pi_version, agent_client, fake_llm):
    pi = start_pi(pi_version, mode="rpc")
    c, _ = connect(agent_client, pi)
    fake_llm.slow(words=30, delay=0.12)
    prompt(c, "slow one")
    c.wait_for(lambda f: f.get("type") == "message_update" and f["assistantMessageEvent"]["type"] == "text_delta")
    pid = prompt(c, "and then this", deliver_as="followUp")
    c.wait_for(is_type("ack", id=pid), timeout=10)
    c.wait_for(lambda f: assistant_end(f) and "You said: and then this" in text_of(f["message"]), timeout=30)
    starts = c.of_type("agent_start")
    assert len(starts) == 1, "the follow-up started a second run instead of joining the first"
    assert fake_llm.user_texts()[-1] == "and then this"


def test_steer_while_streaming_becomes_the_next_turn_of_the_same_run(start_pi, pi_version, agent_client, fake_llm):
    pi = start_pi(pi_version, mode="rpc")
    c, _ = connect(agent_client, pi)
    fake_llm.script([{"text": "", "tool_calls": [{"name": "bash", "arguments": {"command": "sleep 2; echo slept"}}]}])
    prompt(c, "run a slow tool")
    c.wait_for(is_type("tool_execution_start"))
    pid = prompt(c, "change of plan", deliver_as="steer")
    c.wait_for(is_type("ack", id=pid), timeout=10)
    c.wait_for(run_done(pi_version), timeout=30)
    assert len(c.of_type("agent_start")) == 1
    # the steer reached the model right after the tool result, in the same run
    last = fake_llm.requests()[-1]["messages"]
    roles = [m["role"] for m in last if m["role"] != "system"]
    assert roles[-2:] == ["tool", "user"] and fake_llm.user_texts()[-1] == "change of plan"


@pytest.mark.pi_smoke
def test_abort_ends_the_run(start_pi, pi_version, agent_client, fake_llm):
    pi = start_pi(pi_version, mode="rpc")
    c, _ = connect(agent_client, pi)
    fake_llm.slow(words=60, delay=0.25)
    prompt(c, "slow story")
    c.wait_for(lambda f: f.get("type") == "message_update" and f["assistantMessageEvent"]["type"] == "text_delta")
    t0 = time.monotonic()
    c.send({"type": "abort"})
    end = c.wait_for(assistant_end, timeout=10)
    assert end["message"]["stopReason"] == "aborted"
    c.wait_for(run_done(pi_version), timeout=10)
    assert time.monotonic() - t0 < 5, "abort took as long as the reply"


def test_a_client_joining_mid_stream_gets_the_partial(start_pi, pi_version, agent_client, fake_llm):
    pi = start_pi(pi_version, mode="rpc")
    first, _ = connect(agent_client, pi)
    fake_llm.slow(words=40, delay=0.12)
    prompt(first, "slow reply please")

    def wait_deltas():
        deltas = [f for f in first.of_type("message_update") if f["assistantMessageEvent"]["type"] == "text_delta"]
        return len(deltas) >= 3

    deadline = time.monotonic() + 20
    while not wait_deltas() and time.monotonic() < deadline:
        time.sleep(0.05)
    second, init = connect(agent_client, pi)
    assert init["is_streaming"] is True
    partial = init["partial"]
    assert partial and partial["role"] == "assistant"
    so_far = text_of(partial)
    assert so_far.startswith("w0 w1"), so_far
    # the joiner can complete the message from the partial plus the deltas that follow
    idx = second.frames.index(init)
    end = second.wait_for(assistant_end, timeout=30)
    later = "".join(
        f["assistantMessageEvent"].get("delta", "")
        for f in second.frames[idx + 1 :]
        if f.get("type") == "message_update" and f["assistantMessageEvent"]["type"] == "text_delta"
    )
    assert so_far + later == text_of(end["message"])


def test_deltas_pause_while_nobody_watches_and_a_joiner_is_resynced(start_pi, pi_version, agent_client, fake_llm):
    """pi streams deltas to the bridge only while it has a client (shim deltas.ts, protocol §4.1/§4.2):
    a client joining after an unwatched stretch first gets the bridge's stale partial, then, from the
    shim's one-off snapshot, a fresh init_state from which the rest of the deltas complete the message."""
    pi = start_pi(pi_version, mode="rpc")
    first, _ = connect(agent_client, pi)
    fake_llm.slow(words=60, delay=0.1)
    prompt(first, "slow reply please")
    deadline = time.monotonic() + 20
    while (
        time.monotonic() < deadline
        and len([f for f in first.of_type("message_update") if f["assistantMessageEvent"]["type"] == "text_delta"]) < 3
    ):
        time.sleep(0.05)
    first.close()
    time.sleep(1.0)  # ~10 words stream while nobody watches
    second, stale = connect(agent_client, pi)
    assert stale["is_streaming"] is True
    end = second.wait_for(assistant_end, timeout=30)
    inits = [i for i, f in enumerate(second.frames) if f.get("type") == "init_state"]
    assert len(inits) == 2, [f.get("type") for f in second.frames][:20]
    fresh = second.frames[inits[-1]]
    so_far = text_of(fresh["partial"])
    assert len(text_of(stale["partial"])) < len(so_far), "the first init_state lacked the unwatched words"
    later = "".join(
        f["assistantMessageEvent"].get("delta", "")
        for f in second.frames[inits[-1] + 1 :]
        if f.get("type") == "message_update" and f["assistantMessageEvent"]["type"] == "text_delta"
    )
    assert so_far + later == text_of(end["message"])


def test_two_clients_see_the_same_stream(start_pi, pi_version, agent_client):
    pi = start_pi(pi_version, mode="rpc")
    a, _ = connect(agent_client, pi)
    b, _ = connect(agent_client, pi)
    prompt(a, "TOOLCALL: echo shared")
    a.wait_for(run_done(pi_version), timeout=30)
    b.wait_for(run_done(pi_version), timeout=30)
    strip = lambda c: [f for f in c.frames if f.get("type") not in ("init_state", "ack")]  # noqa: E731
    assert strip(a) == strip(b)
    assert len(strip(a)) > 10


def test_prompt_id_is_delivered_once_across_a_reconnect(start_pi, pi_version, agent_client, fake_llm):
    pi = start_pi(pi_version, mode="rpc")
    c, _ = connect(agent_client, pi)
    prompt(c, "only once please", id="same-id-1")
    c.wait_for(is_type("ack", id="same-id-1"))
    c.wait_for(run_done(pi_version))
    c.close()
    again, init = connect(agent_client, pi)  # the client reconnects and resends what it had pending
    assert [text_of(m) for m in init["messages"] if m["role"] == "user"] == ["only once please"]
    prompt(again, "only once please", id="same-id-1")
    ack = again.wait_for(is_type("ack", id="same-id-1"))
    assert ack["duplicate"] is True
    prompt(again, "a new one", id="other-id")
    again.wait_for(is_type("ack", id="other-id"))
    again.wait_for(lambda f: assistant_end(f) and "a new one" in text_of(f["message"]))
    assert fake_llm.user_texts() == ["only once please", "a new one"]


def test_list_commands_and_session_name(start_pi, pi_version, agent_client, fake_llm):
    pi = start_pi(pi_version, mode="rpc")
    c, _ = connect(agent_client, pi)
    c.send({"type": "list_commands"})
    cmds = c.wait_for(is_type("commands_list"))["commands"]
    assert "skill:harden-pi-socket" in {x["name"] for x in cmds}  # the package ships the repo's skills
    # ... as a command only: its description is not in the system prompt of every request (specs/hardening.md)
    fake_llm.script([{"text": "hi"}])
    prompt(c, "hello")
    c.wait_for(assistant_end)
    systems = [m.get("content") for m in fake_llm.requests()[-1]["messages"] if m.get("role") == "system"]
    assert systems and "Closes gaps found" not in str(systems) and "harden-pi-socket" not in str(systems)
    c.send({"type": "set_session_name", "name": "renamed by test"})
    c.wait_for(is_type("session_info_changed", name="renamed by test"))
    state = pi.call({"type": "get_state"})
    assert state["data"].get("sessionName") == "renamed by test"
