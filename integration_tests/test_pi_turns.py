"""turn_end reaches clients on every pi version. On pi >= 1 the shim rebuilds it from the turn's events
instead of subscribing to pi's turn_end boundary (pi_socket/extension/src/turns.ts: a handler there makes
pi project the whole transcript twice per turn); clients must not see a difference in order or content."""

from __future__ import annotations

import pytest

from integration_tests.test_pi_link import connect, prompt, run_done

pytestmark = [pytest.mark.pi]


@pytest.mark.pi_smoke
def test_each_turn_ends_with_turn_end_in_pi_order_with_its_messages(start_pi, pi_version, agent_client):
    pi = start_pi(pi_version, mode="rpc")
    c, _ = connect(agent_client, pi)
    prompt(c, "TOOLCALL: echo turn-one")
    c.wait_for(run_done(pi_version))
    seq = [f for f in c.frames if f.get("type") in ("turn_start", "turn_end", "message_end", "agent_end")]
    kinds = [f["type"] if f["type"] != "message_end" else f"message_end:{f['message']['role']}" for f in seq]
    # tool-call turn, then the reply turn; each turn_end right after the turn's last message
    assert kinds == [
        "turn_start",
        "message_end:user",
        "message_end:assistant",
        "message_end:toolResult",
        "turn_end",
        "turn_start",
        "message_end:assistant",
        "turn_end",
        "agent_end",
    ], kinds
    first, second = [f for f in seq if f["type"] == "turn_end"]
    assert first["message"]["role"] == "assistant" and first["message"]["stopReason"] == "toolUse"
    assert [m["role"] for m in first["toolResults"]] == ["toolResult"]
    assert "turn-one" in str(first["toolResults"][0]["content"])
    assert second["message"]["stopReason"] == "stop" and second["toolResults"] == []
    assert "context" not in first and "context" not in second
    if not pi_version.startswith("0."):
        assert first["turnIndex"] == 0 and second["turnIndex"] == 1 and first["outcome"] == "completed"
        assert "messageEntryId" not in first, "pi's turn_end boundary is subscribed to again (costly on pi >= 1)"
    # context_usage follows each turn_end (when pi has numbers)
    types = [f.get("type") for f in c.frames]
    for i, t in enumerate(types):
        if t == "turn_end" and "context_usage" in types:
            assert types[i + 1] == "context_usage", types[i : i + 3]
