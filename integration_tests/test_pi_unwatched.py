"""While nobody watches an agent the shim sends its bridge only what the bridge's own state is built from
(protocol §4.2 "Lean while nobody watches", shim index.ts): the run's lifecycle and every ``message_end``,
not message starts, turns, tool executions or context usage, which are for clients only. Once a client
watches, everything flows again; when it leaves, the lean mode is back (pi >= 1 unsubscribes, pi 0.7x drops).

What the shim writes is recorded by putting ``tee`` between the shim and the real bridge
(``PI_SOCKET_PYTHON`` names the interpreter the shim starts the bridge with).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest

from integration_tests.harness.pi_proc import wait_until
from integration_tests.test_pi_link import connect, prompt, run_done

pytestmark = [pytest.mark.pi]

CLIENT_ONLY = {
    "message_start",
    "message_update",
    "turn_start",
    "turn_end",
    "context_usage",
    "agent_before_settle",
    "queue_update",
}
# Sent unwatched too, because the bridge's watchdogs need to know a tool runs (specs/watchdogs.md): start and
# end, and an update only as a bare progress mark (no output) at most every 10 s per call.
TOOL_EVENTS = {"tool_execution_start", "tool_execution_update", "tool_execution_end"}


def lean_tool_events(seen: list[dict]) -> None:
    """Unwatched tool events are there for the watchdogs, and carry no tool output."""
    kinds = [e["type"] for e in seen if e["type"] in TOOL_EVENTS]
    assert kinds[:1] == ["tool_execution_start"] and kinds[-1:] == ["tool_execution_end"], kinds
    for e in seen:
        if e["type"] == "tool_execution_update":
            assert set(e) <= {"type", "toolCallId", "toolName"}, e


RECORDER = '#!/bin/sh\ntee -a "$HYPI_TEST_RECORD" | exec "$HYPI_TEST_PYTHON" "$@"\n'


def recorded(path: Path) -> list[dict]:
    """The complete lines the shim has written so far (``tee`` may be in the middle of the last one)."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return []
    return [json.loads(line) for line in text.split("\n")[:-1] if line.strip()]


def events(lines: list[dict]) -> list[dict]:
    return [line["e"] for line in lines if line.get("t") == "event"]


def rpc_run(pi, version: str, text: str) -> None:
    """A prompt through pi's own RPC stdin (no client involved), waited for to the end of the run."""
    mark = len(pi.events)
    ok = pi.call({"type": "prompt", "message": text})
    assert ok and ok["success"], ok
    assert pi.until(run_done(version), timeout=30), "the run did not end"
    assert len(pi.events) > mark


def run_events(record: Path, mark: int) -> list[dict]:
    """The events the shim wrote from line ``mark`` on, once an unwatched tool-call run's four message_end lines
    are there (lazy lines wait at most 250 ms) and a little longer, so nothing of that run is still on its way."""
    wait_until(
        lambda: len([e for e in events(recorded(record)[mark:]) if e["type"] == "message_end"]) >= 4,
        5,
        "the run's message_end lines",
    )
    time.sleep(0.5)
    return events(recorded(record)[mark:])


def test_an_unwatched_agent_sends_its_bridge_only_what_the_bridge_needs(start_pi, pi_version, agent_client, tmp_path):
    record, recorder = tmp_path / "shim-to-bridge.jsonl", tmp_path / "recorder.sh"
    recorder.write_text(RECORDER)
    recorder.chmod(0o755)
    pi = start_pi(
        pi_version,
        mode="rpc",
        # the recorder sits on a bridge child's stdin: the per-pi bridge, pinned
        env={
            "PI_SOCKET_PYTHON": str(recorder),
            "HYPI_TEST_RECORD": str(record),
            "HYPI_TEST_PYTHON": sys.executable,
            "PI_SOCKET_MODE": "bridge",
        },
    )

    # 1. nobody watches: a run with a tool call
    rpc_run(pi, pi_version, "TOOLCALL: echo unwatched")
    seen = run_events(record, 0)
    types = [e["type"] for e in seen]
    assert not CLIENT_ONLY & set(types), types
    lean_tool_events(seen)
    assert "agent_start" in types and ("agent_end" in types or "agent_settled" in types), types
    roles = [e["message"]["role"] for e in seen if e["type"] == "message_end"]
    assert roles == ["user", "assistant", "toolResult", "assistant"], roles

    # 2. a client attaches: its init_state holds the whole unwatched run, tokens included
    c, init = connect(agent_client, pi)
    assert [m["role"] for m in init["messages"]] == roles
    assert init["tokens"]["output"] > 0 and init["context_usage"], init.get("context_usage")

    # 3. watched: tool executions, turns and deltas reach the client (and so went through the shim)
    mark = len(recorded(record))
    prompt(c, "TOOLCALL: echo watched")
    c.wait_for(run_done(pi_version), timeout=30)
    got = {f.get("type") for f in c.frames}
    assert {
        "message_start",
        "message_update",
        "turn_start",
        "turn_end",
        "tool_execution_start",
        "tool_execution_end",
    } <= got, got
    assert {"tool_execution_start", "turn_end"} <= {e["type"] for e in events(recorded(record)[mark:])}
    c.close()

    # 4. the client left: lean again (pi >= 1 unsubscribed the tool events, 0.7x drops them in the shim)
    wait_until(
        lambda: any(r.get("msg") == "client disconnected" and r.get("clients") == 0 for r in pi.bridge_log()),
        10,
        "the bridge to notice the client left (it tells the shim `watch off` just before logging it)",
    )
    time.sleep(0.3)  # the shim reads that line
    mark = len(recorded(record))
    rpc_run(pi, pi_version, "TOOLCALL: echo unwatched again")
    later_events = run_events(record, mark)
    later = [e["type"] for e in later_events]
    assert not CLIENT_ONLY & set(later), later
    lean_tool_events(later_events)

    # 5. and the next client sees all of it
    again, init2 = connect(agent_client, pi)
    assert [m["role"] for m in init2["messages"]] == roles * 3
    assert init2["messages"][-1]["content"] != init["messages"][-1]["content"]
    again.close()
