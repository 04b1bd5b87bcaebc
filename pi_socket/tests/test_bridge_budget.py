"""Budgets on the bridge (specs/budgets.md): the spend counter it reports, and what it does while a budget holds
its agent (the run aborted once, prompts refused with BUDGET_EXCEEDED, lifted when the hypivisor says so)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from pi_socket.bridge.budget import BudgetGuard, SpendMeter

from .bridge_helpers import open_client, recv_json, send_json
from .fake_shim import FakeShim, assistant_message, user_message
from .test_bridge_registry import RecordingRegistry, bridge_env


def end(message: dict[str, Any]) -> dict[str, Any]:
    return {"type": "message_end", "message": message}


def test_the_meter_counts_assistant_usage_only_and_a_new_meter_has_a_new_boot():
    meter = SpendMeter()
    assert not meter.observe(end(user_message("hi", 1)))
    assert not meter.observe({"type": "message_update", "message": assistant_message("x", 2)})
    assert meter.observe(end(assistant_message("a", 3, tokens=10, cost=0.001)))
    assert meter.observe(end(assistant_message("b", 4, tokens=5, cost=0.002)))
    no_usage = assistant_message("c", 5)
    no_usage.pop("usage")
    assert not meter.observe(end(no_usage))
    c = meter.counter()
    assert (c.tokens, round(c.cost, 6)) == (30, 0.003)  # totalTokens: 2 x tokens and c.boot == meter.boot
    assert SpendMeter().boot != meter.boot


def test_the_guard_aborts_a_working_run_once_and_each_run_started_while_held():
    guard = BudgetGuard()
    assert not guard.answer({"status": "ok"}, working=True) and not guard.held
    hold = {
        "status": "ok",
        "hold": {"reason": "the day's budget of $1 reached: raise it or override once", "scope": "day"},
    }
    assert not guard.answer(hold, working=False) and guard.held  # idle: nothing to abort
    assert guard.answer(hold, working=True)  # a run while held: abort it
    assert not guard.answer(hold, working=True)  # once per run
    assert guard.run_started()  # the next run (typed in pi's terminal) is aborted at its start
    assert not guard.answer({"status": "ok"}, working=True) and not guard.held  # lifted
    assert not guard.run_started()
    assert not guard.answer("garbage", working=True) and not guard.held


class HoldingRegistry(RecordingRegistry):
    """The stand-in registry, answering ``hold`` while ``self.hold`` is set."""

    hold: dict[str, Any] | None = None

    async def _handle(self, ws) -> None:
        async for raw in ws:
            msg = json.loads(raw)
            self.calls.append(msg)
            result: dict[str, Any] = {"status": "ok"}
            if msg["method"] == "register":
                result = {"status": "registered", "node": msg["params"], "heartbeat_interval": self.heartbeat_interval}
            if self.hold is not None and msg["method"] in ("register", "heartbeat"):
                result["hold"] = self.hold
            await ws.send(json.dumps({"id": msg["id"], "result": result}))


async def test_a_hold_aborts_the_run_once_holds_prompts_and_lifts_when_the_hypivisor_says_so(tmp_path):
    reg = HoldingRegistry(heartbeat_interval=30.0)  # no ticks: only pokes and the prompt's fresh ask
    await reg.start()
    fake = FakeShim(tmp_path, env=bridge_env(reg.url))
    try:
        await fake.start()
        await reg.wait_for(lambda: reg.params("register"))
        await fake.emit({"type": "agent_start"}, end(assistant_message("partial", 1, tokens=40, cost=0.5)))
        await reg.wait_for(lambda: any((h.get("spend") or {}).get("tokens") == 80 for h in reg.params("heartbeat")))
        spend = reg.params("heartbeat")[-1]["spend"]
        assert spend["cost"] == 0.5 and len(spend["boot"]) == 16
        assert fake.sent("abort") == []
        reg.hold = {"reason": "this agent's budget of 50 tokens reached: raise it or override once", "scope": "agent"}
        await fake.emit(end(assistant_message("more", 2, tokens=20, cost=0.1)))  # the heartbeat's answer holds
        await fake.wait_for_request("abort")
        await fake.emit(end(assistant_message("again", 3, tokens=1, cost=0.0)))
        await asyncio.sleep(0.3)
        assert len(fake.sent("abort")) == 1  # once per run
        await fake.emit({"type": "agent_end"})
        async with await open_client(fake) as ws:
            await recv_json(ws)
            await send_json(ws, {"type": "prompt", "id": "p1", "text": "go on"})
            err = await recv_json(ws)
            assert err == {"type": "error", "id": "p1", "code": 1015, "message": reg.hold["reason"]}
            assert fake.sent("send") == []
            reg.hold = None  # raised or overridden: the prompt asks afresh and goes through
            await send_json(ws, {"type": "prompt", "id": "p2", "text": "go on"})
            assert (await recv_json(ws))["type"] == "ack"
            assert [s["prompt_id"] for s in fake.sent("send")] == ["p2"]
    finally:
        await fake.stop()
        await reg.stop()
