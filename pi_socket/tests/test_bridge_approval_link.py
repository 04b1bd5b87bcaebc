"""The approval gate on a real bridge process (driven by the fake shim): who may decide, and bad decisions.

Nothing a client sends without the token, from a foreign Origin, or in a malformed frame reaches pi as a
decision; each bad frame gets an error and the question stays open for a person.
"""

from __future__ import annotations

import asyncio
import random

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from .bridge_helpers import init_when, open_client, recv_until, send_json
from .fake_shim import FakeShim

pytestmark = pytest.mark.asyncio

QUESTION = {
    "t": "approval",
    "id": "a1-feed",
    "tool_call_id": "call_1",
    "tool_name": "bash",
    "input": {"command": "rm -rf build"},
    "policy": "writes",
    "why": "bash",
    "queued_at": 1_700_000_000.0,
}


async def started(tmp_path, **env: str) -> FakeShim:
    fake = FakeShim(tmp_path, env=dict(env))
    await fake.start()
    await fake.write({"t": "policy", "policy": "writes", "rules": []})
    await fake.write(QUESTION)
    return fake


async def test_without_the_token_or_from_a_foreign_origin_nobody_decides(tmp_path):
    fake = await started(tmp_path, HYPI_TOKEN="s3cret-token")
    try:
        for headers in ({}, {"Authorization": "Bearer wrong"}):
            with pytest.raises(InvalidStatus) as exc:
                await connect(fake.url, additional_headers=headers, open_timeout=5)
            assert exc.value.response.status_code == 401
        with pytest.raises(InvalidStatus) as exc:
            await connect(
                fake.url,
                additional_headers={"Authorization": "Bearer s3cret-token"},
                origin="https://evil.example",  # type: ignore[arg-type]
                open_timeout=5,
            )
        assert exc.value.response.status_code == 403
        assert not fake.sent("approval_decision")
        # the owner, with the token, sees the open question and decides it
        ws, init = await init_when(fake, lambda i: len(i.get("pending_approvals") or []) == 1)
        assert init["pending_approvals"][0]["input"] == {"command": "rm -rf build"}
        assert init["pending_approvals"][0]["preview"] == {
            "kind": "command",
            "command": "rm -rf build",
            "path": None,
            "diff": None,
            "new_file": False,
            "truncated": False,
            "error": None,
        }
        await send_json(ws, {"type": "approval_decision", "id": "a1-feed", "decision": "deny", "reason": "not now"})
        (req,) = await fake.wait_for_request("approval_decision")
        assert (req["approval_id"], req["decision"], req["reason"]) == ("a1-feed", "deny", "not now")
        await ws.close()
    finally:
        await fake.stop()


def malformed(rng: random.Random) -> dict:
    """An approval_decision that the protocol refuses (each differs from a valid one in one way or more; an
    unknown extra field alone is not refused: a newer client may send one)."""
    base = {"type": "approval_decision", "id": "a1-feed", "decision": "allow"}
    kind = rng.randrange(9)
    if kind == 0:
        base["decision"] = rng.choice(["yes", "ALLOW", "", None, 1, True, ["allow"]])
    elif kind == 1:
        base["id"] = rng.choice([None, 1, "", "x" * 200, {"id": "a1-feed"}])
    elif kind == 2:
        del base[rng.choice(["id", "decision"])]
    elif kind == 3:
        base["reason"] = rng.choice([1, ["r"], {"r": 1}, "r" * 2001])
    elif kind == 4:
        base["input"] = rng.choice(["touch x", 3, ["touch x"]])
    elif kind == 5:
        base["remember"] = rng.choice(["yes", 2, {"x": 1}])
    elif kind == 6:
        base["reason"] = rng.choice([None, "ok"])
        base["remember"] = rng.choice(["true", 1.5, []])
    elif kind == 7:
        base["input"] = rng.choice([{"command": ""}, {"command": 5}, {"cmd": "ls"}, {"command": "ls", "cwd": "/"}])
    else:
        base["decision"] = "deny"
        base["input"] = {"command": "touch x"}
    return base


async def test_malformed_decisions_are_answered_with_errors_and_change_nothing(tmp_path):
    fake = await started(tmp_path)
    try:
        ws, _ = await init_when(fake, lambda i: len(i.get("pending_approvals") or []) == 1)
        rng = random.Random(1813)
        frames = [malformed(rng) for _ in range(150)]
        for f in frames:  # one at a time: a burst would meet the in-flight limit instead
            await send_json(ws, f)
            err, _seen = await recv_until(ws, lambda m: m.get("type") == "error", timeout=10)
            assert err["code"] in (-32602, -32600), (f, err)
        await asyncio.sleep(0.3)
        assert not fake.sent("approval_decision"), "a malformed decision reached pi"
        # the question is still open for a person; a decision for an unknown id is a conflict
        late = await open_client(fake)
        init, _ = await recv_until(late, lambda m: m.get("type") == "init_state")
        assert [p["id"] for p in init["pending_approvals"]] == ["a1-feed"]
        await send_json(late, {"type": "approval_decision", "id": "a9-none", "decision": "allow"})
        err, _ = await recv_until(late, lambda m: m.get("type") == "error")
        assert err["code"] == 1013 and err["id"] == "a9-none"
        assert not fake.sent("approval_decision")
        # once settled (the shim's approval_end), a decision for it is a conflict too, and every client hears it
        await fake.write(
            {"t": "approval_end", "id": "a1-feed", "decision": "allow", "by": "terminal", "tool_name": "bash"}
        )
        resolved, _ = await recv_until(ws, lambda m: m.get("type") == "approval_resolved")
        assert (resolved["by"], resolved["record"]["by"]) == ("terminal", "terminal")
        await send_json(ws, {"type": "approval_decision", "id": "a1-feed", "decision": "deny"})
        err, _ = await recv_until(ws, lambda m: m.get("type") == "error")
        assert err["code"] == 1013
        assert not fake.sent("approval_decision")
        await ws.close()
        await late.close()
    finally:
        await fake.stop()
