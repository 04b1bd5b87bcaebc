"""Spend ledger and budget state (hypivisor/budget.py, pure) and the registry's budget methods (specs/budgets.md)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from hypivisor.budget import Amount, Budgets, Ledger, evaluate, local_day
from hypivisor.config import Config
from hypivisor.service import RpcFailure, Service
from pi_socket.protocol import NodeInfo, SpendCounter

DAY = 86400.0
T0 = time.mktime((2026, 3, 10, 12, 0, 0, 0, 0, -1))  # noon, local time


def node(nid: str = "a", machine: str = "m1", cwd: str = "/p", name: str | None = None) -> NodeInfo:
    return NodeInfo(id=nid, machine=machine, cwd=cwd, port=1, session_name=name)


def counter(boot: str, cost: float, tokens: int) -> SpendCounter:
    return SpendCounter(boot=boot, cost=cost, tokens=tokens)


# ------------------------------------------------------------------ ledger
def test_growth_is_counted_once_per_counter_and_a_new_boot_starts_from_zero():
    led = Ledger()
    assert led.record(node(), counter("b1", 0.5, 100), T0)
    assert not led.record(node(), counter("b1", 0.5, 100), T0 + 1)  # a repeated heartbeat
    assert led.record(node(), counter("b1", 0.75, 150), T0 + 2)
    assert led.node_today("a", local_day(T0)) == Amount(0.75, 150)
    # the bridge restarted (new boot): its counter starts at zero again; only growth counts
    assert led.record(node(), counter("b2", 0.25, 10), T0 + 3)
    assert led.node_today("a", local_day(T0)) == Amount(1.0, 160)
    # a counter below its baseline (cannot happen for one boot) counts nothing, ever again
    assert not led.record(node(), counter("b2", 0.1, 5), T0 + 4)
    assert led.record(node(), counter("b2", 0.2, 8), T0 + 5)
    assert led.node_today("a", local_day(T0)) == Amount(1.1, 163)


def test_spend_goes_to_the_day_it_was_seen_and_groups_by_agent_folder_machine_day():
    led = Ledger()
    led.record(node("a", "m1", "/p", "alpha"), counter("a1", 1.0, 100), T0 - DAY)
    led.record(node("a", "m1", "/p", "alpha"), counter("a1", 1.5, 150), T0)
    led.record(node("b", "m2", "/p"), counter("b1", 2.0, 10), T0)
    led.record(node("c", "m2", "/q"), counter("c1", 0.25, 5), T0)
    since, today, rows = led.spend("agent", 1, T0)
    assert since == today == local_day(T0)
    assert [(r["key"], r["cost"], r["tokens"], r["label"], r["machine"]) for r in rows] == [
        ("b", 2.0, 10, None, "m2"), ("a", 0.5, 50, "alpha", "m1"), ("c", 0.25, 5, None, "m2")]  # fmt: skip
    assert [(r["key"], r["cost"]) for r in led.spend("folder", 2, T0)[2]] == [("/p", 3.5), ("/q", 0.25)]
    assert [(r["key"], r["cost"]) for r in led.spend("machine", 2, T0)[2]] == [("m2", 2.25), ("m1", 1.5)]
    days = led.spend("day", 3, T0)[2]
    assert [r["cost"] for r in days] == [0.0, 1.0, 2.75] and days[-1]["key"] == local_day(T0)
    totals = led.totals(T0)
    assert totals["today"] == {"cost": 2.75, "tokens": 65} and totals["all_time"] == {"cost": 3.75, "tokens": 165}
    assert totals["by_machine"] == [  # most spent first
        {"key": "m2", "today": {"cost": 2.25, "tokens": 15}, "all_time": {"cost": 2.25, "tokens": 15}},
        {"key": "m1", "today": {"cost": 0.5, "tokens": 50}, "all_time": {"cost": 1.5, "tokens": 150}},
    ]
    assert [f["key"] for f in totals["by_folder"]] == ["/p", "/q"]


def test_restore_rebuilds_rows_and_baselines_so_a_re_register_counts_nothing():
    a = Ledger()
    a.record(node(), counter("b1", 0.5, 100), T0)
    rows = [(r.day, r.machine, r.cwd, r.node_id, None, r.amount.cost, r.amount.tokens) for r in a.rows.values()]
    seen = [(n, b, c, t) for (n, b), (c, t) in a.seen.items()]
    b = Ledger()
    b.restore(rows, seen)
    assert not b.record(node(), counter("b1", 0.5, 100), T0 + 60)
    assert b.totals(T0)["all_time"] == {"cost": 0.5, "tokens": 100}


# ------------------------------------------------------------------ budget state
def test_levels_near_held_and_an_override_covers_only_its_crossings():
    day = "2026-03-10"
    lim = [("day", "", Amount(0.79, 0), (1.0, None))]
    assert evaluate(lim, day, frozenset()).level is None
    near = evaluate([("day", "", Amount(0.8, 0), (1.0, None))], day, frozenset())
    assert near.level == "near" and near.percent == 80.0 and near.hold is None
    assert near.note == "the day's budget (all agents) of $1"
    held = evaluate([("agent", "a", Amount(0.2, 120), (1.0, 100))], day, frozenset())
    assert held.level == "held" and held.percent == 120.0 and held.note == "this agent's budget of 100 tokens"
    assert (
        held.hold is not None
        and held.hold.reason == "this agent's budget of 100 tokens reached: raise it or override once"
    )
    over = evaluate([("agent", "a", Amount(0.2, 130), (1.0, 100))], day, held.crossings)
    assert over.level == "over" and over.overridden and over.hold is None
    # the limit raised and reached again, another scope crossed, or the next day: held again
    assert evaluate([("agent", "a", Amount(0.2, 210), (1.0, 200))], day, held.crossings).level == "held"
    both = [("agent", "a", Amount(0.2, 130), (1.0, 100)), ("folder", "/p", Amount(2.0, 0), (2.0, None))]
    assert evaluate(both, day, held.crossings).level == "held"
    assert evaluate([("agent", "a", Amount(0.2, 130), (1.0, 100))], "2026-03-11", held.crossings).level == "held"


def test_live_items_near_and_held_only():
    near = evaluate([("day", "", Amount(0.9, 0), (1.0, None))], "d", frozenset())
    assert [(x.kind, x.key) for x in near.live(T0)] == [("budget", "near")]
    held = evaluate([("day", "", Amount(1.0, 0), (1.0, None))], "d", frozenset())
    assert [(x.kind, x.key) for x in held.live(T0)] == [("budget", "held")]
    assert evaluate([("day", "", Amount(1.0, 0), (1.0, None))], "d", held.crossings).live(T0) == []


def test_budgets_defaults_and_explicit_ones():
    b = Budgets({"day": (5.0, None), "agent": (None, None)})
    assert b.limits("day", "") == (5.0, None) and b.limits("agent", "a") is None
    b.set("agent", "a", None, 1000)
    b.set("day", "", 1.0, None)
    assert b.limits("agent", "a") == (None, 1000) and b.limits("day", "") == (1.0, None)
    b.set("day", "", None, None)  # removed: the default applies again
    assert b.limits("day", "") == (5.0, None)
    mine, defaults = b.listing()
    assert [(x.scope, x.key, x.tokens) for x in mine] == [("agent", "a", 1000)]
    assert [(x.scope, x.cost, x.default) for x in defaults] == [("day", 5.0, True)]


# ------------------------------------------------------------------ the registry's side
def _service(tmp_path: Path, **budget_defaults) -> Service:
    cfg = Config(host="127.0.0.1", port=1, dashboard_dir=tmp_path / "none", state_dir=tmp_path / "state",
                 budget_defaults=budget_defaults)  # fmt: skip
    return Service(cfg, env={"HOME": str(tmp_path)})


def _reg(nid: str, boot: str, cost: float, tokens: int, cwd: str = "/p") -> dict:
    return {"id": nid, "machine": "m1", "cwd": cwd, "port": 1000 + len(nid), "host": "127.0.0.1",
            "spend": {"boot": boot, "cost": cost, "tokens": tokens}}  # fmt: skip


def _hb(nid: str, boot: str, cost: float, tokens: int) -> dict:
    return {"id": nid, "spend": {"boot": boot, "cost": cost, "tokens": tokens}}


def _events(svc: Service) -> list:
    out: list = []
    svc.hub.taps.append(lambda events: out.extend(events))
    return out


async def test_a_heartbeat_past_the_budget_holds_and_override_lifts_it_once(tmp_path):
    svc = _service(tmp_path, agent=(None, 100))
    seen = _events(svc)
    reply = await svc.dispatch("register", _reg("a", "b1", 0.0, 10), "c1", "127.0.0.1")
    assert "hold" not in reply
    assert await svc.dispatch("heartbeat", _hb("a", "b1", 0.0, 50), "c1", "127.0.0.1") == {"status": "ok"}
    await svc.dispatch("heartbeat", _hb("a", "b1", 0.0, 85), "c1", "127.0.0.1")
    near = [e for e in seen if getattr(e, "event", "") == "attention_added" and e.item.kind == "budget"]
    assert len(near) == 1 and "85 % used" in near[0].item.summary
    assert svc.registry.get("a").node.budget_level == "near"
    reply = await svc.dispatch("heartbeat", _hb("a", "b1", 0.0, 120), "c1", "127.0.0.1")
    assert reply["hold"]["scope"] == "agent" and "raise it or override once" in reply["hold"]["reason"]
    again = await svc.dispatch("heartbeat", _hb("a", "b1", 0.0, 120), "c1", "127.0.0.1")
    assert again["hold"] == reply["hold"]
    budget_items = [e.item for e in seen if getattr(e, "event", "") == "attention_added" and e.item.kind == "budget"]
    assert [i.summary.split(" reached")[0] for i in budget_items[1:]] == ["this agent's budget of 100 tokens"]
    assert len(budget_items) == 2  # near, then held: each once
    resolved = [e.id for e in seen if getattr(e, "event", "") == "attention_resolved"]
    assert near[0].item.id in resolved
    node_a = svc.registry.get("a").node
    assert (node_a.budget_level, node_a.budget_pct) == ("held", 120.0)

    with pytest.raises(RpcFailure) as err:
        await svc.dispatch("override_budget", {"node_id": "nope"}, "d", "h")
    assert err.value.code == 1006
    out = await svc.dispatch("override_budget", {"node_id": "a"}, "d", "h")
    assert out["status"] == "overridden" and out["state"]["level"] == "over"
    assert "hold" not in await svc.dispatch("heartbeat", _hb("a", "b1", 0.0, 150), "c1", "127.0.0.1")
    assert budget_items[1].id in [e.id for e in seen if getattr(e, "event", "") == "attention_resolved"]
    # raised, and reached again: held again
    await svc.dispatch("set_budget", {"scope": "agent", "key": "a", "tokens": 200}, "d", "h")
    assert "hold" not in await svc.dispatch("heartbeat", _hb("a", "b1", 0.0, 160), "c1", "127.0.0.1")
    assert svc.registry.get("a").node.budget_level == "near"
    assert "hold" in await svc.dispatch("heartbeat", _hb("a", "b1", 0.0, 200), "c1", "127.0.0.1")
    listed = await svc.dispatch("list_budgets", {}, "d", "h")
    assert listed["budgets"] == [{"scope": "agent", "key": "a", "cost": None, "tokens": 200, "default": False}]
    assert listed["defaults"][0]["tokens"] == 100 and listed["states"]["a"]["level"] == "held"
    assert any(getattr(e, "event", "") == "budget_changed" for e in seen)


async def test_a_day_budget_counts_every_agent_and_holds_them_all(tmp_path):
    svc = _service(tmp_path)
    await svc.dispatch("set_budget", {"scope": "day", "cost": 1.0}, "d", "h")
    await svc.dispatch("register", _reg("a", "ba", 0.0, 0), "c1", "127.0.0.1")
    await svc.dispatch("register", _reg("bb", "bb", 0.0, 0, cwd="/q"), "c2", "127.0.0.1")
    assert "hold" not in await svc.dispatch("heartbeat", _hb("a", "ba", 0.6, 10), "c1", "127.0.0.1")
    assert svc.registry.get("a").node.budget_level is None
    assert "hold" in await svc.dispatch("heartbeat", _hb("bb", "bb", 0.5, 10), "c2", "127.0.0.1")
    assert svc.registry.get("a").node.budget_level == "held"  # b's spend moved a's state too
    assert "hold" in await svc.dispatch("heartbeat", {"id": "a"}, "c1", "127.0.0.1")
    totals = await svc.dispatch("get_totals", {}, "d", "h")
    assert totals["today"] == {"cost": 1.1, "tokens": 20}
    assert [(r["key"], r["today"]["cost"]) for r in totals["by_folder"]] == [("/p", 0.6), ("/q", 0.5)]


async def test_bad_budget_params_are_refused_and_change_nothing(tmp_path):
    svc = _service(tmp_path)
    for params in ({"scope": "day", "key": "x", "cost": 1}, {"scope": "agent", "cost": 1},
                   {"scope": "folder", "key": "/p", "cost": -1}, {"scope": "week", "cost": 1},
                   {"scope": "day", "cost": float("inf")}):  # fmt: skip
        with pytest.raises(RpcFailure) as err:
            await svc.dispatch("set_budget", params, "d", "h")
        assert err.value.code == -32602
    assert (await svc.dispatch("list_budgets", {}, "d", "h"))["budgets"] == []
    with pytest.raises(RpcFailure):
        await svc.dispatch("get_spend", {"group_by": "agent", "days": 0}, "d", "h")


async def test_spend_and_budgets_survive_a_restart_without_counting_twice(tmp_path):
    svc = _service(tmp_path)
    await svc.dispatch("register", _reg("a", "b1", 0.25, 40), "c1", "127.0.0.1")
    await svc.dispatch("set_budget", {"scope": "folder", "key": "/p", "tokens": 50}, "d", "h")
    svc.store.close()
    again = _service(tmp_path)  # the bridge re-registers with the same counter: nothing new
    reply = await again.dispatch("register", _reg("a", "b1", 0.25, 40), "c1", "127.0.0.1")
    assert "hold" not in reply
    assert (await again.dispatch("get_totals", {}, "d", "h"))["all_time"] == {"cost": 0.25, "tokens": 40}
    assert "hold" in await again.dispatch("heartbeat", _hb("a", "b1", 0.3, 55), "c1", "127.0.0.1")
    rows = (await again.dispatch("get_spend", {"group_by": "agent"}, "d", "h"))["rows"]
    assert [(r["key"], r["cost"], r["tokens"]) for r in rows] == [("a", 0.3, 55)]


async def test_a_restart_keeps_the_budget_item_without_doubling_it_and_keeps_the_hold(tmp_path):
    svc = _service(tmp_path, agent=(None, 100))
    report = {"live": [], "last_run": None}
    await svc.dispatch("register", {**_reg("a", "b1", 0.0, 150), "attention": report}, "c1", "127.0.0.1")
    held = [i for i in svc.attention.open_items() if i.kind == "budget"]
    assert [i.summary.split(" (")[0] for i in held] == ["this agent's budget of 100 tokens reached"]
    svc.store.close()
    again = _service(tmp_path, agent=(None, 100))
    seen = _events(again)
    reply = await again.dispatch("register", {**_reg("a", "b1", 0.0, 150), "attention": report}, "c1", "127.0.0.1")
    assert reply["hold"]["scope"] == "agent"
    assert [i.id for i in again.attention.open_items() if i.kind == "budget"] == [held[0].id]
    assert not [e for e in seen if getattr(e, "event", "") in ("attention_added", "attention_resolved")]
