"""History through the link on a long real session: init_state is cut to the newest 500 KiB, older pages
come with fetch_history, and a pi resumed with `--session` serves the same history (read by the shim from
pi's session branch, system prompt messages dropped)."""

from __future__ import annotations

import pytest

from integration_tests.test_pi_link import connect, is_type, text_of

pytestmark = [pytest.mark.pi]

TURNS = 8
REPLY_BYTES = 80_000  # 8 x 80 KB > the 500 KiB init_state budget


def build_long_session(pi, fake_llm) -> list[str]:
    """TURNS prompts over RPC, each answered with a large scripted reply; returns every message's text."""
    texts = []
    # The toy context window (128k tokens) would fill and pi would compact the session away.
    assert pi.call({"type": "set_auto_compaction", "enabled": False})["success"]
    for i in range(TURNS):
        reply = f"reply-{i} " + ("x" * REPLY_BYTES)
        fake_llm.script([{"text": reply, "chunk": 16_000, "delay": 0}])
        mark = len(pi.events)
        ok = pi.call({"type": "prompt", "message": f"question {i}"})
        assert ok and ok["success"], ok
        assert pi.until(lambda e: e.get("type") == "agent_end", timeout=20), "run did not end"
        ends = [
            e
            for e in pi.events[mark:]
            if e.get("type") == "message_end" and (e.get("message") or {}).get("role") == "assistant"
        ]
        assert text_of(ends[-1]["message"]) == reply
        texts += [f"question {i}", reply]
    return texts


def walk_back(c, init, limit: int = 3) -> list[dict]:
    """Every message from init_state back to the first, one fetch_history page at a time (bounded)."""
    held = list(init["messages"])
    cursor = init["cursor"]
    for _ in range(100):
        if cursor == 0:
            return held
        mark = len(c.frames)
        c.send({"type": "fetch_history", "before": cursor, "limit": limit})
        page = c.wait_for(is_type("history_page"), start=mark)
        assert page["before"] == cursor and page["messages"], page.keys()
        assert page["cursor"] + len(page["messages"]) == cursor  # contiguous: no gap, no overlap
        assert page["has_more"] == (page["cursor"] > 0)
        held = page["messages"] + held
        cursor = page["cursor"]
    raise AssertionError("history walk did not reach the start")


@pytest.mark.pi_smoke
def test_long_history_is_cut_and_paged_then_served_again_after_resume(start_pi, pi_version, agent_client, fake_llm):
    pi = start_pi(pi_version, mode="rpc")
    texts = build_long_session(pi, fake_llm)
    c, init = connect(agent_client, pi)
    assert init["total_messages"] == 2 * TURNS
    assert init["truncated"] is True and init["cursor"] > 0
    assert 0 < len(init["messages"]) < 2 * TURNS
    assert [text_of(m) for m in walk_back(c, init)] == texts
    session_file = pi.call({"type": "get_state"})["data"]["sessionFile"]
    pi.stop()

    resumed = start_pi(pi_version, mode="rpc", args=["--session", session_file])
    c2, init2 = connect(agent_client, resumed)
    assert init2["total_messages"] == 2 * TURNS and init2["truncated"] is True
    assert all(m["role"] != "system" for m in init2["messages"])
    assert [text_of(m) for m in walk_back(c2, init2, limit=5)] == texts
